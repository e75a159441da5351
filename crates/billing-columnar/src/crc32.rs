//! CRC-32 (the gzip and zlib polynomial, reflected) of inflated data.

/// A running CRC-32.
pub(crate) struct Crc32 {
    hasher: crc32fast::Hasher,
}

impl Crc32 {
    pub fn new() -> Self {
        Self {
            hasher: crc32fast::Hasher::new(),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The CRC-32 of everything given so far.
    pub fn value(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC-32 by its definition, a bit at a time.
    fn reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    #[test]
    fn matches_the_definition_over_any_split() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(Crc32::new().value(), 0);
        let mut whole = Crc32::new();
        whole.update(b"123456789");
        assert_eq!(whole.value(), 0xCBF4_3926, "the standard check value");
        for split in [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 4999] {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), reference(&data), "split at {split}");
        }
    }
}

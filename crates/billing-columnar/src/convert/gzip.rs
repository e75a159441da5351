//! Gzip members (RFC 1952) inflated a chunk at a time on the parser's thread: the member
//! headers and trailers are read here and the deflate data by zlib-rs in raw mode, so that
//! the CRC-32 of the output is computed by `crc32fast` rather than inside the inflater (in
//! cache, about four times as fast on this project's machine: docs/performance.md).

use std::io::Read;

use super::Error;

/// Decoded JSON is scanned this many bytes at a time (one buffer, reused).
const CHUNK: usize = 256 << 10;

/// Compressed input is read this many bytes at a time.
const INPUT: usize = 256 << 10;

/// RFC 1952 header flags.
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const RESERVED: u8 = 0b1110_0000;

/// Where the reader is in the current member.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Between members: the next byte, if any, starts a header.
    Between,
    Body,
}

/// Reads the input and inflates gzip members (concatenated members allowed), a chunk at a
/// time.
pub(super) struct Inflater<R: Read> {
    input: R,
    inf: zlib_rs::Inflate,
    inbuf: Vec<u8>,
    ipos: usize,
    ilen: usize,
    out: Vec<u8>,
    part: Part,
    /// The current member's output so far: its CRC-32 and its length (mod 2^32, as ISIZE).
    crc: crc32fast::Hasher,
    size: u32,
    eof: bool,
    pub(super) bytes_in: u64,
}

impl<R: Read> Inflater<R> {
    pub(super) fn new(input: R) -> Self {
        Self {
            input,
            inf: zlib_rs::Inflate::new(false, 15),
            inbuf: vec![0u8; INPUT],
            ipos: 0,
            ilen: 0,
            out: vec![0u8; CHUNK],
            part: Part::Between,
            crc: crc32fast::Hasher::new(),
            size: 0,
            eof: false,
            bytes_in: 0,
        }
    }

    /// Makes at least `n` (at most [`INPUT`]) unread bytes available; `false` when the input
    /// ends first.
    fn fill(&mut self, n: usize) -> Result<bool, Error> {
        if self.ilen - self.ipos >= n {
            return Ok(true);
        }
        self.inbuf.copy_within(self.ipos..self.ilen, 0);
        self.ilen -= self.ipos;
        self.ipos = 0;
        while self.ilen < n {
            let got = self
                .input
                .read(&mut self.inbuf[self.ilen..])
                .map_err(Error::Read)?;
            if got == 0 {
                return Ok(false);
            }
            self.ilen += got;
            self.bytes_in += got as u64;
        }
        Ok(true)
    }

    /// The next `n` header or trailer bytes (at most [`INPUT`]), consumed.
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        if !self.fill(n)? {
            return Err(gzip("truncated gzip stream"));
        }
        self.ipos += n;
        Ok(&self.inbuf[self.ipos - n..self.ipos])
    }

    /// Skips `n` bytes of the input.
    fn skip(&mut self, mut n: usize) -> Result<(), Error> {
        while n > 0 {
            let step = n.min(INPUT);
            self.take(step)?;
            n -= step;
        }
        Ok(())
    }

    /// Skips a zero-terminated header field (file name or comment), however long.
    fn skip_text(&mut self) -> Result<(), Error> {
        loop {
            if !self.fill(1)? {
                return Err(gzip("truncated gzip stream"));
            }
            let unread = &self.inbuf[self.ipos..self.ilen];
            if let Some(k) = memchr::memchr(0, unread) {
                self.ipos += k + 1;
                return Ok(());
            }
            self.ipos = self.ilen;
        }
    }

    /// Reads a member header; `false` at the end of the input (between members).
    fn header(&mut self) -> Result<bool, Error> {
        const MAGIC: [u8; 3] = [0x1f, 0x8b, 8];
        if !self.fill(1)? {
            return Ok(false);
        }
        // Bytes after a member that do not start another (a short tail included) are named as
        // such, not as a truncated member.
        let whole = self.fill(10)?;
        let unread = &self.inbuf[self.ipos..self.ilen];
        if !unread.iter().zip(MAGIC).all(|(&a, b)| a == b) {
            return Err(gzip("not a gzip member (bad magic or method)"));
        }
        if !whole {
            return Err(gzip("truncated gzip stream"));
        }
        let head: [u8; 10] = self.take(10)?.try_into().expect("10 bytes");
        let flags = head[3];
        if flags & RESERVED != 0 {
            return Err(gzip("reserved gzip header flags set"));
        }
        if flags & FEXTRA != 0 {
            let len = self.take(2)?;
            let len = u16::from_le_bytes([len[0], len[1]]);
            self.skip(usize::from(len))?;
        }
        if flags & FNAME != 0 {
            self.skip_text()?;
        }
        if flags & FCOMMENT != 0 {
            self.skip_text()?;
        }
        // The header's own CRC-16 is skipped, as zlib does unless asked to check it.
        if flags & FHCRC != 0 {
            self.skip(2)?;
        }
        self.inf.reset(false);
        self.crc = crc32fast::Hasher::new();
        self.size = 0;
        Ok(true)
    }

    /// Checks a member's trailer against the output: CRC-32, then length mod 2^32.
    fn trailer(&mut self) -> Result<(), Error> {
        let t: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.clone().finalize() {
            return Err(gzip("gzip CRC-32 mismatch: the data is corrupt"));
        }
        if size != self.size {
            return Err(gzip("gzip length mismatch: the data is corrupt"));
        }
        Ok(())
    }

    /// The next chunk of JSON, `None` at the end of the input.
    pub(super) fn next_chunk(&mut self) -> Result<Option<&[u8]>, Error> {
        let mut filled = 0;
        while filled < self.out.len() && !self.eof {
            if self.part == Part::Between {
                if !self.header()? {
                    self.eof = true;
                    break;
                }
                self.part = Part::Body;
            }
            if self.ipos == self.ilen && !self.fill(1)? {
                return Err(gzip("truncated gzip stream"));
            }
            let (in0, out0) = (self.inf.total_in(), self.inf.total_out());
            let status = self
                .inf
                .decompress(
                    &self.inbuf[self.ipos..self.ilen],
                    &mut self.out[filled..],
                    zlib_rs::InflateFlush::NoFlush,
                )
                .map_err(|e| Error::Gzip(e.as_str().to_string()))?;
            self.ipos += (self.inf.total_in() - in0) as usize;
            let produced = (self.inf.total_out() - out0) as usize;
            self.crc.update(&self.out[filled..filled + produced]);
            self.size = self.size.wrapping_add(produced as u32);
            filled += produced;
            if status == zlib_rs::Status::StreamEnd {
                self.trailer()?;
                self.part = Part::Between;
            }
        }
        Ok((filled > 0).then(|| &self.out[..filled]))
    }
}

fn gzip(reason: &str) -> Error {
    Error::Gzip(reason.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Text a member at a time (flate2, an independent writer, builds the headers).
    fn member(text: &[u8], builder: flate2::GzBuilder) -> Vec<u8> {
        let mut w = builder.write(Vec::new(), flate2::Compression::new(6));
        w.write_all(text).unwrap();
        w.finish().unwrap()
    }

    /// Everything the inflater gives for `input`, read through a reader that hands out at
    /// most `step` bytes per call (headers and trailers then straddle reads).
    fn inflate(input: &[u8], step: usize) -> Result<Vec<u8>, String> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut inf = Inflater::new(Trickle(input, step));
        let mut out = Vec::new();
        while let Some(chunk) = inf.next_chunk().map_err(|e| e.to_string())? {
            out.extend_from_slice(chunk);
        }
        assert_eq!(inf.bytes_in, input.len() as u64, "all of the input read");
        Ok(out)
    }

    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"{}\":,0123456789abcdef\n"[(x >> 32) as usize % 22]
            })
            .collect()
    }

    #[test]
    fn members_with_every_header_field_inflate_whole() {
        let (a, b, c) = (text(700_000, 1), text(3, 2), text(300_000, 3));
        let mut input = member(&a, flate2::GzBuilder::new());
        input.extend(member(
            &b,
            flate2::GzBuilder::new()
                .filename("billing.json")
                .comment("a comment")
                .extra(vec![7u8; 300])
                .mtime(1_700_000_000),
        ));
        input.extend(member(&[], flate2::GzBuilder::new().filename("empty")));
        input.extend(member(&c, flate2::GzBuilder::new()));
        let expected = [&a[..], &b, &c].concat();
        for step in [1, 7, 4096, usize::MAX] {
            assert_eq!(inflate(&input, step).unwrap(), expected, "step {step}");
        }
        assert_eq!(inflate(b"", 1).unwrap(), b"");
    }

    #[test]
    fn corrupt_truncated_and_foreign_input_are_errors() {
        let good = member(&text(100_000, 4), flate2::GzBuilder::new());
        let n = good.len();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // The stored CRC-32 and length altered, one bit each.
            (
                [&good[..n - 8], &[good[n - 8] ^ 1], &good[n - 7..]].concat(),
                "CRC-32",
            ),
            (
                [&good[..n - 4], &[good[n - 4] ^ 1], &good[n - 3..]].concat(),
                "length",
            ),
            (good[..n - 3].to_vec(), "truncated"),
            (good[..n / 2].to_vec(), "truncated"),
            (good[..5].to_vec(), "truncated"),
            ([&good[..], b"trailing"].concat(), "not a gzip member"),
            (b"not gzip at all".to_vec(), "not a gzip member"),
            ([&good[..3], &[0x80], &good[4..]].concat(), "reserved"),
        ];
        for (input, expected) in cases {
            let e = inflate(&input, 4096).unwrap_err();
            assert!(e.contains(expected), "{e} (expected {expected})");
        }
    }

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
    fn the_crc_checked_is_the_crc_32_over_any_split() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(crc32fast::Hasher::new().clone().finalize(), 0);
        let mut whole = crc32fast::Hasher::new();
        whole.update(b"123456789");
        assert_eq!(
            whole.clone().finalize(),
            0xCBF4_3926,
            "the standard check value"
        );
        for split in [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 4999] {
            let mut c = crc32fast::Hasher::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.clone().finalize(), reference(&data), "split at {split}");
        }
    }
}

//! Byte classes of 16 bytes at a time, for the JSON scanner's hottest loops (string ends and
//! digit runs): one bit per byte, bit `k` for byte `k`.
//!
//! On x86-64 these are SSE2 compares and a movemask, about a third of the instructions of the
//! word-at-a-time tricks they replaced (callgrind, docs/performance.md). SSE2 is part of the
//! x86-64 baseline, so no runtime detection is needed; elsewhere a plain loop gives the same
//! bits.

/// Bits set where the byte is `"` or `\`.
#[inline]
pub(crate) fn quote_or_backslash(w: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the function needs only SSE2, which every x86-64 CPU has.
        unsafe { sse2::quote_or_backslash(w) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bits(w, |c| c == b'"' || c == b'\\')
    }
}

/// Bits set where the byte is an ASCII digit.
#[inline]
pub(crate) fn digits(w: &[u8; 16]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as above, SSE2 only.
        unsafe { sse2::digits(w) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bits(w, |c| c.is_ascii_digit())
    }
}

/// The bits by a plain loop: the reference the tests hold the SIMD versions to.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn bits(w: &[u8; 16], f: impl Fn(u8) -> bool) -> u32 {
    w.iter()
        .enumerate()
        .fold(0, |m, (k, &c)| m | (u32::from(f(c)) << k))
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x, _mm_sub_epi8,
    };

    #[target_feature(enable = "sse2")]
    #[inline]
    fn load(w: &[u8; 16]) -> __m128i {
        // Two safe 8-byte reads; the compiler emits one unaligned 16-byte load.
        let lo = i64::from_le_bytes(w[..8].try_into().expect("8 bytes"));
        let hi = i64::from_le_bytes(w[8..].try_into().expect("8 bytes"));
        _mm_set_epi64x(hi, lo)
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    pub(super) fn quote_or_backslash(w: &[u8; 16]) -> u32 {
        let v = load(w);
        let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let b = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(q, b)) as u32
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    pub(super) fn digits(w: &[u8; 16]) -> u32 {
        // `c - '0'` (wrapping) is at most 9 exactly for digits: unsigned `min(x, 9) == x`.
        let x = _mm_sub_epi8(load(w), _mm_set1_epi8(b'0' as i8));
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(9)), x)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_a_byte_loop_for_every_byte_in_every_lane() {
        for lane in 0..16 {
            for c in 0..=255u8 {
                let mut w = [b'a'; 16];
                w[lane] = c;
                let want = |f: fn(u8) -> bool| bits(&w, f);
                assert_eq!(
                    quote_or_backslash(&w),
                    want(|c| c == b'"' || c == b'\\'),
                    "{lane} {c}"
                );
                assert_eq!(digits(&w), want(|c| c.is_ascii_digit()), "{lane} {c}");
            }
        }
    }
}

//! Byte classes of 16 bytes at a time, for the JSON scanner's hottest loops (string ends and
//! digit runs) and the FOCUS rules' word searches: one bit per byte, bit `k` for byte `k`.
//!
//! On x86-64 these are SSE2 compares and a movemask, about a third of the instructions of the
//! word-at-a-time tricks they replaced (callgrind, docs/performance.md). SSE2 is part of the
//! x86-64 baseline, so no runtime detection is needed; elsewhere a plain loop gives the same
//! bits.

/// Bits set where the byte is `"` or `\`.
#[inline]
pub(crate) fn quote_or_backslash(w: &[u8; 16]) -> u32 {
    either(w, b'"', b'\\')
}

/// Bits set where the byte is `a` or `b`.
#[inline]
pub(crate) fn either(w: &[u8; 16], a: u8, b: u8) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the function needs only SSE2, which every x86-64 CPU has.
        unsafe { sse2::either(w, a, b) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        bits(w, |c| c == a || c == b)
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

/// The first position in `s` of a byte of one class: `mask` gives the class's bits for 16
/// bytes at a time, `is` tells it for the bytes of a shorter tail.
#[inline]
pub(crate) fn first(
    s: &[u8],
    mask: impl Fn(&[u8; 16]) -> u32,
    is: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = 0;
    while i + 16 <= s.len() {
        let m = mask(s[i..i + 16].try_into().expect("16 bytes"));
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    s[i..].iter().position(|&c| is(c)).map(|k| i + k)
}

/// Number of ASCII digits at the start of `s` (.NET prints doubles with 17 significant
/// digits).
#[inline]
pub(crate) fn digit_run(s: &[u8]) -> usize {
    first(s, |w| !digits(w) & 0xFFFF, |c| !c.is_ascii_digit()).unwrap_or(s.len())
}

/// The first position of `b` in `s`: for short texts (segments of a resource id), where
/// `memchr`'s setup costs more than the search.
pub(crate) fn position(s: &[u8], b: u8) -> Option<usize> {
    first(s, |w| either(w, b, b), |c| c == b)
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
    pub(super) fn either(w: &[u8; 16], a: u8, b: u8) -> u32 {
        let v = load(w);
        let x = _mm_cmpeq_epi8(v, _mm_set1_epi8(a as i8));
        let y = _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
        _mm_movemask_epi8(_mm_or_si128(x, y)) as u32
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
    fn digit_runs_stop_at_the_first_other_byte() {
        for n in 0..40 {
            for end in [b"" as &[u8], b",", b".5", b"e", b"/", b":", b"\x00"] {
                let text = [
                    b"1234567890".repeat(4)[..n].to_vec(),
                    end.to_vec(),
                    b"99".to_vec(),
                ]
                .concat();
                let want = if end.is_empty() { n + 2 } else { n };
                assert_eq!(digit_run(&text), want, "{n} {end:?}");
            }
        }
    }

    #[test]
    fn position_matches_the_slice_search() {
        let text = b"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/app";
        for start in 0..text.len() {
            for end in start..=text.len() {
                let s = &text[start..end];
                assert_eq!(position(s, b'/'), s.iter().position(|&c| c == b'/'));
            }
        }
    }

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
                assert_eq!(either(&w, b's', b'S'), want(|c| c == b's' || c == b'S'));
            }
        }
    }
}

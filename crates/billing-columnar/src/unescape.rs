//! JSON string unescaping: the general path, for any escape (the scanner's fast path
//! takes strings whose escapes are all simple).

/// The byte a two-byte escape `\e` stands for (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`,
/// `\t`); `None` for `\u` and anything else.
#[inline(always)]
pub(crate) fn simple_escape(e: u8) -> Option<u8> {
    Some(match e {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 8,
        b'f' => 12,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

/// Appends the unescaped form of a string's content to `out`.
pub(crate) fn unescape(content: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    // Never longer than the escaped text: the output is sized once and written by index, and
    // the plain runs between escapes (a few bytes each) are copied a word at a time, cheaper
    // than a memcpy call or byte pushes (profiled). The excess is cut at the end.
    let base = out.len();
    out.resize(base + content.len(), 0);
    let result = unescape_into(content, &mut out[base..]);
    out.truncate(base + result.unwrap_or(0));
    result.map(|_| ())
}

/// Writes the unescaped `content` to the start of `dst` (as long as `content`): its length.
fn unescape_into(content: &[u8], dst: &mut [u8]) -> Result<usize, &'static str> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (mut i, mut o) = (0usize, 0usize);
    while i < content.len() {
        if i + 8 <= content.len() {
            let w = u64::from_le_bytes(content[i..i + 8].try_into().expect("8 bytes"));
            // `o <= i`, so `dst` has room for the whole word; bytes from a backslash on are
            // overwritten next.
            dst[o..o + 8].copy_from_slice(&w.to_le_bytes());
            let b = w ^ (LO * u64::from(b'\\'));
            let m = b.wrapping_sub(LO) & !b & HI;
            if m == 0 {
                i += 8;
                o += 8;
                continue;
            }
            // The lowest flagged byte is exactly the first backslash.
            let k = (m.trailing_zeros() / 8) as usize;
            i += k;
            o += k;
        } else if content[i] != b'\\' {
            dst[o] = content[i];
            i += 1;
            o += 1;
            continue;
        }
        let e = *content.get(i + 1).ok_or("dangling backslash")?;
        i += 2;
        if let Some(simple) = simple_escape(e) {
            dst[o] = simple;
            o += 1;
            continue;
        }
        if e != b'u' {
            return Err("invalid escape");
        }
        let hex4 = |at: usize| -> Result<u32, &'static str> {
            let h = content.get(at..at + 4).ok_or("short \\u escape")?;
            let s = std::str::from_utf8(h).map_err(|_| "invalid \\u escape")?;
            u32::from_str_radix(s, 16).map_err(|_| "invalid \\u escape")
        };
        let mut cp = hex4(i)?;
        i += 4;
        if (0xD800..0xDC00).contains(&cp) {
            if content.get(i..i + 2) != Some(b"\\u") {
                return Err("lone surrogate");
            }
            let lo = hex4(i + 2)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err("lone surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else if (0xDC00..0xE000).contains(&cp) {
            return Err("lone surrogate");
        }
        let ch = char::from_u32(cp).ok_or("invalid code point")?;
        // At most 4 bytes from a 6-byte escape (or 12 for a surrogate pair).
        o += ch.encode_utf8(&mut dst[o..]).len();
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_matches_serde_json_around_word_boundaries() {
        for escape in [
            r#"\""#,
            r"\\",
            r"\u00e9",
            r"\ud83d\ude00",
            r"\n",
            r#"\"\\\/x\t"#,
        ] {
            for n in 0..24 {
                for tail in [0, 3, 9] {
                    let text = format!("{}{escape}{}", &"ab".repeat(n)[..n], "z".repeat(tail));
                    let expected: String = serde_json::from_str(&format!("\"{text}\"")).unwrap();
                    let mut out = b"kept".to_vec();
                    unescape(text.as_bytes(), &mut out).unwrap();
                    assert_eq!(out, format!("kept{expected}").into_bytes(), "{text}");
                }
            }
        }
        let mut out = b"kept".to_vec();
        assert!(unescape(br"abcdefghij\q", &mut out).is_err());
        assert_eq!(out, b"kept", "nothing is left behind on an error");
    }

    #[test]
    fn unescapes_including_surrogate_pairs() {
        let mut out = Vec::new();
        unescape(br#"a\n\u00e9\ud83d\ude00\/"#, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\né😀/");
        assert!(unescape(br"\ud83d", &mut Vec::new()).is_err());
        assert!(unescape(br"\x", &mut Vec::new()).is_err());
    }
}

//! A scanner for one flat JSON object per line. It hands out borrowed key and value tokens
//! instead of building a tree, which is what makes the converter fast: no per-value allocation,
//! strings copied once (straight into the column buffer) and unescaped only when they contain
//! a backslash.

use std::fmt;

use crate::unescape::simple_escape;

/// One value, as it appears in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Null,
    Bool(bool),
    /// The number's text, unparsed.
    Number(&'a [u8]),
    /// A string's content between the quotes, still escaped when `escaped`.
    Str {
        content: &'a [u8],
        escaped: bool,
    },
    /// An object or array (kept as its JSON text in string columns).
    Nested,
}

/// Why a line is not a flat JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset + 1)
    }
}

/// Nesting deeper than this inside a value is refused (hostile input).
const MAX_DEPTH: usize = 64;

pub(crate) struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
    first: bool,
}

fn err<T>(offset: usize, what: &'static str) -> Result<T, SyntaxError> {
    Err(SyntaxError { offset, what })
}

impl<'a> Scanner<'a> {
    /// Starts on a line (without its newline); expects `{`.
    pub fn new(s: &'a [u8]) -> Result<Self, SyntaxError> {
        let mut sc = Scanner {
            s,
            pos: 0,
            first: true,
        };
        sc.ws();
        if sc.peek() != Some(b'{') {
            return err(sc.pos, "expected '{' (each line must be a JSON object)");
        }
        sc.pos += 1;
        Ok(sc)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next member as (key content, key escaped, value, raw value text), or `None` after
    /// the closing `}` (anything but whitespace after it is an error).
    #[allow(clippy::type_complexity, dead_code)]
    pub fn next_member(
        &mut self,
    ) -> Result<Option<(&'a [u8], bool, Token<'a>, &'a [u8])>, SyntaxError> {
        if !self.begin_member()? {
            return Ok(None);
        }
        let (key, key_escaped) = self.key()?;
        let (token, raw) = self.value_raw()?;
        Ok(Some((key, key_escaped, token, raw)))
    }

    /// Moves to the next member's key (past `,`); `false` after the closing `}` (anything but
    /// whitespace after it is an error).
    #[inline]
    pub fn begin_member(&mut self) -> Result<bool, SyntaxError> {
        self.ws();
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.ws();
                if self.pos != self.s.len() {
                    return err(self.pos, "trailing characters after the object");
                }
                return Ok(false);
            }
            Some(b',') if !self.first => {
                self.pos += 1;
                self.ws();
            }
            _ if self.first => {}
            None => return err(self.pos, "unterminated object"),
            _ => return err(self.pos, "expected ',' or '}'"),
        }
        self.first = false;
        Ok(true)
    }

    /// Consumes `pattern` (a key as `"Key":`) if the input continues with it: rows repeat
    /// their key order, so this one comparison usually replaces scanning the key.
    #[inline]
    pub fn eat(&mut self, pattern: &KeyPattern) -> bool {
        if pattern.starts(&self.s[self.pos..]) {
            self.pos += pattern.text.len();
            true
        } else {
            false
        }
    }

    /// The key at the current position (content, escaped) and its colon.
    pub fn key(&mut self) -> Result<(&'a [u8], bool), SyntaxError> {
        if self.peek() != Some(b'"') {
            return err(self.pos, "expected a quoted key");
        }
        let key = self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return err(self.pos, "expected ':'");
        }
        self.pos += 1;
        Ok(key)
    }

    /// A string without escapes right at the current position (as a key's colon leaves it),
    /// consumed: its content, and the line from the content's start on (what a column copies
    /// short strings from, a word at a time). `None`, consuming nothing, for any other value
    /// (a string with escapes included), which [`Self::value_raw`] then reads.
    #[inline(always)]
    pub fn plain_string(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let rest = self.s.get(self.pos..)?;
        let [b'"', after @ ..] = rest else {
            return None;
        };
        let end = first_special(after);
        if after.get(end) != Some(&b'"') {
            return None;
        }
        self.pos += end + 2;
        Some((&after[..end], after))
    }

    /// A string with escapes right at the current position, consumed and appended unescaped
    /// to `out`: the runs between escapes are copied as they are found, so the string is read
    /// once (finding its end, then unescaping it, read it twice: together a tenth of the
    /// parser's instructions on rows with JSON texts in `Tags` and `AdditionalInfo`,
    /// callgrind). `false`, consuming nothing and leaving `out` as it was, for anything else,
    /// a `\u` escape included, which [`Self::value_raw`] and [`crate::unescape::unescape`] then read or report.
    #[inline]
    pub fn escaped_string(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(rest @ [b'"', ..]) = self.s.get(self.pos..) else {
            return false;
        };
        let base = out.len();
        let mut i = 1;
        loop {
            let run = &rest[i..];
            let k = first_special(run);
            // Runs between escapes are short: copied as one word and cut to length (no call).
            match run.first_chunk::<16>() {
                Some(word) if k <= 16 => {
                    out.extend_from_slice(word);
                    out.truncate(out.len() - 16 + k);
                }
                _ => out.extend_from_slice(&run[..k]),
            }
            i += k;
            let byte = match rest.get(i) {
                Some(b'"') => {
                    self.pos += i + 1;
                    return true;
                }
                Some(b'\\') => match rest.get(i + 1).copied().and_then(simple_escape) {
                    Some(byte) => byte,
                    None => break,
                },
                _ => break,
            };
            out.push(byte);
            i += 2;
        }
        out.truncate(base);
        false
    }

    /// A number right at the current position (as a key's colon leaves it), consumed: its
    /// text. `None`, consuming nothing, for any other value (a malformed number included,
    /// which [`Self::value_raw`] then reports).
    #[inline(always)]
    pub fn plain_number(&mut self) -> Option<&'a [u8]> {
        let rest = self.s.get(self.pos..)?;
        let len = number_token_len(rest)?;
        self.pos += len;
        Some(&rest[..len])
    }

    /// The value after a key's colon, and its raw text.
    // Forced inline, with `value` and `string`, so the token stays in registers: returned
    // through memory, its reload after the call was the parser's hottest instruction (perf).
    #[inline(always)]
    pub fn value_raw(&mut self) -> Result<(Token<'a>, &'a [u8]), SyntaxError> {
        self.ws();
        let start = self.pos;
        let token = self.value()?;
        Ok((token, &self.s[start..self.pos]))
    }

    /// A string starting at the current quote: its content and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<(&'a [u8], bool), SyntaxError> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        let s = self.s;
        loop {
            i += find_special(&s[i..]);
            match s.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok((&s[start..i], escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    // The escape's validity is checked when unescaping; here skip the next byte
                    // so an escaped quote does not end the string.
                    i += 2;
                    if i > s.len() {
                        return err(start - 1, "unterminated string");
                    }
                }
                _ => return err(start - 1, "unterminated string"),
            }
        }
    }

    #[inline(always)]
    fn value(&mut self) -> Result<Token<'a>, SyntaxError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let (content, escaped) = self.string()?;
                Ok(Token::Str { content, escaped })
            }
            Some(b'n') => self.literal(b"null", Token::Null),
            Some(b't') => self.literal(b"true", Token::Bool(true)),
            Some(b'f') => self.literal(b"false", Token::Bool(false)),
            Some(b'-' | b'0'..=b'9') => {
                let Some(len) = number_token_len(&self.s[start..]) else {
                    return err(start, "malformed number");
                };
                self.pos += len;
                Ok(Token::Number(&self.s[start..self.pos]))
            }
            Some(b'{' | b'[') => {
                self.skip_nested()?;
                Ok(Token::Nested)
            }
            None => err(start, "missing value"),
            _ => err(start, "unexpected character"),
        }
    }

    fn literal(&mut self, word: &[u8], t: Token<'a>) -> Result<Token<'a>, SyntaxError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(t)
        } else {
            err(self.pos, "invalid literal")
        }
    }

    /// Skips a nested object or array, checking brackets and strings (not full grammar: the
    /// text is kept verbatim as a string value, readers re-parse it).
    fn skip_nested(&mut self) -> Result<(), SyntaxError> {
        let mut stack = [0u8; MAX_DEPTH];
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Some(b @ (b'{' | b'[')) => {
                    if depth == MAX_DEPTH {
                        return err(self.pos, "nesting too deep");
                    }
                    stack[depth] = if b == b'{' { b'}' } else { b']' };
                    depth += 1;
                    self.pos += 1;
                }
                Some(b @ (b'}' | b']')) => {
                    if depth == 0 || stack[depth - 1] != b {
                        return err(self.pos, "mismatched bracket");
                    }
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(_) => self.pos += 1,
                None => return err(self.pos, "unterminated nested value"),
            }
        }
    }
}

/// Length of the number token at the start of `s`: a JSON number not run on by another
/// character of one (`1.5.2`, `12e` are malformed, not a number and something else); `None`
/// when there is none. Both the general path and the parser's shortcut read numbers by it.
#[inline(always)]
fn number_token_len(s: &[u8]) -> Option<usize> {
    let len = json_number_len(s);
    let run_on = matches!(
        s.get(len),
        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
    );
    (len > 0 && !run_on).then_some(len)
}

/// Length of the JSON number at the start of `s`, or 0 when there is none.
fn json_number_len(s: &[u8]) -> usize {
    let mut i = usize::from(s.first() == Some(&b'-'));
    // JSON writes no leading zeros: `01` is not a number (its text would land verbatim in a
    // string column).
    if s.get(i) == Some(&b'0') && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return 0;
    }
    let digits = |i: &mut usize| {
        let n = crate::bytes16::digit_run(&s[*i..]);
        *i += n;
        n > 0
    };
    if !digits(&mut i) {
        return 0;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return 0;
        }
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        if !digits(&mut i) {
            return 0;
        }
    }
    i
}

/// [`find_special`] with its first 16 bytes searched inline: most strings and runs between
/// escapes are about that long, and the call cost more than the search (callgrind).
#[inline(always)]
fn first_special(s: &[u8]) -> usize {
    match s.first_chunk::<16>() {
        Some(word) => match crate::bytes16::quote_or_backslash(word) {
            0 => 16 + find_special(&s[16..]),
            m => m.trailing_zeros() as usize,
        },
        None => find_special(s),
    }
}

/// Index of the first `"` or `\` in `s` (or `s.len()`). Control characters inside strings
/// (invalid JSON) are let through: they cannot break the output, and checking them doubled the
/// cost of this hottest loop.
#[inline]
fn find_special(s: &[u8]) -> usize {
    // Look 16 bytes at a time without a call first (memchr2's setup cost more than the
    // search on strings up to a `ResourceURI`'s length, profiled), then hand very long
    // strings to memchr2. The loop is `bytes16::first`'s, written out: through it, with the
    // cut at SHORT_STRING, the parser ran 4% more instructions (callgrind).
    let mut i = 0;
    while i < SHORT_STRING && i + 16 <= s.len() {
        let m = crate::bytes16::quote_or_backslash(s[i..i + 16].try_into().expect("16 bytes"));
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    if i < SHORT_STRING {
        return s[i..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .map_or(s.len(), |k| i + k);
    }
    memchr::memchr2(b'"', b'\\', &s[i..]).map_or(s.len(), |k| i + k)
}

/// A key as it appears before its value (`"Key":`), ready to be recognised at a member's
/// start. Keys of up to 32 bytes (all of Partner Center's) compare as two masked 16-byte
/// words, the same work whatever their length: a word loop's exit, which depends on each
/// key's length, was mispredicted often enough to be the scanner's costliest branch (perf).
pub(crate) struct KeyPattern {
    text: Box<[u8]>,
    /// The text zero-padded to 32 bytes and the mask of its bytes, when it fits.
    words: Option<([u128; 2], [u128; 2])>,
}

impl KeyPattern {
    pub fn new(text: Vec<u8>) -> Self {
        let words = (text.len() <= 32).then(|| {
            let (mut padded, mut mask) = ([0u8; 32], [0u8; 32]);
            padded[..text.len()].copy_from_slice(&text);
            mask[..text.len()].fill(0xFF);
            let word = |b: &[u8; 32], i: usize| {
                u128::from_le_bytes(b[i..i + 16].try_into().expect("16 bytes"))
            };
            (
                [word(&padded, 0), word(&padded, 16)],
                [word(&mask, 0), word(&mask, 16)],
            )
        });
        Self {
            text: text.into(),
            words,
        }
    }

    /// Whether `s` starts with the key.
    #[inline]
    fn starts(&self, s: &[u8]) -> bool {
        match (&self.words, s.first_chunk::<32>()) {
            (Some((p, m)), Some(ahead)) => {
                let word =
                    |i: usize| u128::from_le_bytes(ahead[i..i + 16].try_into().expect("16 bytes"));
                ((word(0) ^ p[0]) & m[0]) | ((word(16) ^ p[1]) & m[1]) == 0
            }
            // Near the line's end, or a long key.
            _ => starts_with(s, &self.text),
        }
    }
}

/// `s.starts_with(p)`, comparing 8 bytes at a time without calling memcmp, whose call cost
/// more than the comparison (profiled): keys [`KeyPattern`] cannot compare as two words, and
/// long dictionary keys.
#[inline]
pub(crate) fn starts_with(s: &[u8], p: &[u8]) -> bool {
    let n = p.len();
    if s.len() < n {
        return false;
    }
    if n < 8 {
        return s[..n] == *p;
    }
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 < n {
        if word(s, i) != word(p, i) {
            return false;
        }
        i += 8;
    }
    // The last word may overlap the previous one.
    word(s, n - 8) == word(p, n - 8)
}

/// Bytes searched 16 at a time before [`find_special`] calls memchr2.
const SHORT_STRING: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_matches_the_slice_method() {
        let text: Vec<u8> = (0..40u8).map(|k| b'a' + k % 7).collect();
        for n in 0..text.len() {
            let mut p = text[..n].to_vec();
            assert!(starts_with(&text, &p));
            assert!(!starts_with(&text[..n.saturating_sub(1)], &p) || n == 0);
            for k in 0..n {
                p[k] ^= 1;
                assert!(!starts_with(&text, &p), "{n} {k}");
                p[k] ^= 1;
            }
        }
    }

    #[test]
    fn key_patterns_match_only_their_key() {
        let line = br#"{"PartnerEarnedCreditPercentage":0,"Unit":"1 GB","UnitPrice":0.02,"UnitType":"1 GB"}"#;
        for key in [
            "PartnerEarnedCreditPercentage",
            "Unit",
            "UnitPrice",
            "UnitType",
            "Units",
            "nit",
        ] {
            let p = KeyPattern::new(format!("\"{key}\":").into_bytes());
            for at in 0..line.len() {
                let s = &line[at..];
                assert_eq!(p.starts(s), s.starts_with(&p.text), "{key} at {at}");
            }
        }
        let long = KeyPattern::new(format!("\"{}\":", "K".repeat(40)).into_bytes());
        assert!(long.words.is_none());
        assert!(long.starts(format!("\"{}\":1}}", "K".repeat(40)).as_bytes()));
    }

    #[test]
    fn find_special_matches_a_plain_search() {
        let mut text = Vec::new();
        // Past SHORT_STRING too, where memchr2 takes over.
        for n in 0..300 {
            for special in [b'"', b'\\'] {
                for before in [None, Some(b'"'), Some(b'\\')] {
                    text.clear();
                    text.extend((0..n).map(|k| b"abc\x7f\xc3\xa9\x00\x01z"[k % 8]));
                    text.push(special);
                    if let Some(b) = before {
                        text.push(b);
                    }
                    text.extend_from_slice(b"tail\"\\");
                    let expected = text
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\')
                        .unwrap_or(text.len());
                    assert_eq!(find_special(&text), expected, "{n}");
                    assert_eq!(find_special(&text[..n]), n, "{n}");
                }
            }
        }
    }

    fn members(line: &str) -> Result<Vec<(String, Token<'_>)>, SyntaxError> {
        let mut sc = Scanner::new(line.as_bytes())?;
        let mut out = Vec::new();
        while let Some((k, _, v, _)) = sc.next_member()? {
            out.push((String::from_utf8(k.to_vec()).unwrap(), v));
        }
        Ok(out)
    }

    #[test]
    fn scans_flat_objects() {
        let m =
            members(r#" {"a":1.5e3, "b" : "x\"y", "c":null,"d":true,"e":{"f":[1,"]"]}} "#).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].1, Token::Number(b"1.5e3"));
        assert_eq!(
            m[1].1,
            Token::Str {
                content: br#"x\"y"#,
                escaped: true
            }
        );
        assert_eq!(m[2].1, Token::Null);
        assert_eq!(m[4].1, Token::Nested);
        assert!(members("{}").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "[1]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1}x",
            "{\"a\":01x}",
            "{\"a\":01}",
            "{\"a\":-00.5}",
            "{\"a\":\"x}",
            "{\"a\":[}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":nul}",
        ] {
            assert!(members(bad).is_err(), "{bad}");
        }
    }

    /// The parser's shortcut takes a plain string whole and leaves anything else, escaped
    /// strings included, untouched for the general path, which then reads the same member.
    #[test]
    fn plain_strings_are_taken_whole_and_anything_else_is_left() {
        let line = br#"{"a":"x y","b":"","c":"q\"r","d":12,"e":"open"#;
        let mut sc = Scanner::new(line).unwrap();
        let mut seen = Vec::new();
        while sc.begin_member().unwrap_or(false) {
            let (key, _) = sc.key().unwrap();
            let before = sc.pos;
            match sc.plain_string() {
                Some((content, ahead)) => {
                    assert!(ahead.starts_with(content), "the line from the content on");
                    seen.push((key, Some(content)));
                }
                None => {
                    assert_eq!(sc.pos, before, "nothing consumed");
                    // The general path reads what was left; the unterminated last string is
                    // its error to report.
                    if sc.value_raw().is_err() {
                        assert_eq!(key, b"e");
                        break;
                    }
                    seen.push((key, None));
                }
            }
        }
        assert_eq!(
            seen,
            [
                (&b"a"[..], Some(&b"x y"[..])),
                (b"b", Some(b"")),
                (b"c", None),
                (b"d", None),
            ]
        );
    }

    /// The same for numbers: a number token is taken whole; a malformed one, or any other
    /// value, is left for the general path, which reports or reads it.
    #[test]
    fn escaped_strings_unescape_as_serde_json_does_or_are_left_whole() {
        // Runs on both sides of the 16-byte word, escapes back to back, and the string's end
        // at the line's end.
        for escape in [r#"\""#, r"\\", r"\/", r"\b\f\n\r\t", r#"\"\\\/x\t"#] {
            for n in 0..40 {
                for tail in ["", ",\"b\":1}"] {
                    let text = format!("{}{escape}{}", &"ab".repeat(n)[..n], &"xyz"[..n % 4]);
                    let line = format!("{{\"a\":\"{text}\"{tail}");
                    let expected: String = serde_json::from_str(&format!("\"{text}\"")).unwrap();
                    let mut sc = Scanner::new(line.as_bytes()).unwrap();
                    assert!(sc.begin_member().unwrap());
                    sc.key().unwrap();
                    let mut out = b"kept".to_vec();
                    assert!(sc.escaped_string(&mut out), "{line}");
                    assert_eq!(out, format!("kept{expected}").into_bytes(), "{line}");
                    assert_eq!(&line.as_bytes()[sc.pos..], tail.as_bytes(), "{line}");
                }
            }
        }
        // Left for the general path, nothing consumed or written: `\u` escapes (which it
        // reads), invalid escapes and unterminated strings (which it reports), non-strings.
        for value in [
            r#""x\u00e9y""#,
            r#""x\qy""#,
            r#""x\"#,
            r#""abc"#,
            "12",
            "null",
        ] {
            let line = format!("{{\"a\":{value}");
            let mut sc = Scanner::new(line.as_bytes()).unwrap();
            assert!(sc.begin_member().unwrap());
            sc.key().unwrap();
            let before = sc.pos;
            let mut out = b"kept".to_vec();
            assert!(!sc.escaped_string(&mut out), "{value}");
            assert_eq!((sc.pos, &out[..]), (before, &b"kept"[..]), "{value}");
        }
    }

    #[test]
    fn plain_numbers_are_taken_whole_and_anything_else_is_left() {
        for (value, taken) in [
            ("1.5", Some("1.5")),
            ("-3.5999999999999998E-06", Some("-3.5999999999999998E-06")),
            ("0", Some("0")),
            ("01", None),
            ("1.", None),
            ("1e", None),
            ("-", None),
            ("\"1.5\"", None),
            ("null", None),
        ] {
            let line = format!("{{\"a\":{value},\"b\":1}}");
            let mut sc = Scanner::new(line.as_bytes()).unwrap();
            assert!(sc.begin_member().unwrap());
            sc.key().unwrap();
            let before = sc.pos;
            let got = sc.plain_number();
            assert_eq!(got, taken.map(str::as_bytes), "{value}");
            if got.is_none() {
                assert_eq!(sc.pos, before, "{value}: nothing consumed");
            } else {
                assert_eq!(line.as_bytes()[sc.pos], b',', "{value}: consumed whole");
            }
        }
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for (text, len) in [
            ("0", 1),
            ("-0", 2),
            ("0.5", 3),
            ("10", 2),
            ("0e5", 3),
            ("-0.0E-06", 8),
            ("01", 0),
            ("-012", 0),
            ("1.", 0),
            ("1e", 0),
            ("-", 0),
            (".5", 0),
        ] {
            assert_eq!(json_number_len(text.as_bytes()), len, "{text}");
        }
    }

    #[test]
    fn special_bytes_are_found_in_every_lane() {
        for n in 0..20 {
            for special in [b'"', b'\\'] {
                let mut s = vec![b'a'; n];
                s.push(special);
                s.extend_from_slice(b"zzzzzzzzz");
                assert_eq!(find_special(&s), n);
            }
            let s = "é".repeat(n);
            assert_eq!(find_special(s.as_bytes()), s.len());
        }
    }
}

//! Quirk-tolerant decoding of values the Functions host puts in `Data` and `Metadata`.
//!
//! The host passes non-object values through `JsonConvert.SerializeObject`, so strings can
//! arrive JSON-encoded once more (`"\"abc\""`), integers as strings (`"1"`), `DateTime`s without
//! an offset (`"2023-10-12T20:13:49"`), and `byte[]` bodies as base64. Third-party fixtures also
//! show plain single encoding. Every decoder here accepts all of these.

use base64::Engine;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// How many layers of JSON string quoting we peel before giving up (hostile input bound).
const MAX_UNQUOTE: usize = 4;

/// Legacy `BrokeredMessage` senders prefix bodies with a DataContract serializer preamble.
const BROKERED_PREAMBLE: &str =
    "@\u{6}string\u{8}3http://schemas.microsoft.com/2003/10/Serialization/";

/// A string value with any extra JSON quoting removed: `"\"abc\""` → `abc`.
pub fn unquote(s: &str) -> String {
    let mut cur = s.to_string();
    for _ in 0..MAX_UNQUOTE {
        let t = cur.trim();
        if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
            match serde_json::from_str::<String>(t) {
                Ok(inner) => cur = inner,
                Err(_) => break,
            }
        } else {
            break;
        }
    }
    cur
}

/// A metadata value as text: strings unquoted, numbers and booleans rendered, others `None`.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(unquote(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A metadata integer given as a number or a (possibly quoted) numeric string.
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => unquote(s).trim().parse().ok(),
        _ => None,
    }
}

/// A timestamp with an offset, with `Z`, or with none at all (then taken as UTC), any fraction.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = unquote(s);
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // No offset: .NET `DateTime.ToString()` re-parsed, or Graph's `createdDateTime` examples.
    let fmt = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(p) = PrimitiveDateTime::parse(s, &fmt) {
        return Some(p.assume_utc());
    }
    // `+00:00` without seconds fraction is RFC 3339 already; try `2023-10-12 20:13:49` too.
    let fmt_space = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, &fmt_space)
        .ok()
        .map(|p| p.assume_utc())
}

/// `2023-10-12T20:13:49`: whole seconds, no offset (what the host makes of a .NET `DateTime`).
pub fn seconds_no_offset(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2023-10-12T20:13:49Z`: whole seconds in UTC (the form SAS tokens use).
pub fn seconds_utc(t: OffsetDateTime) -> String {
    format!("{}Z", seconds_no_offset(t))
}

/// The strings of a JSON array (non-strings skipped); empty when absent or not an array.
pub fn string_array(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A timestamp value of any of the shapes above.
pub fn as_timestamp(v: &Value) -> Option<OffsetDateTime> {
    v.as_str().and_then(parse_timestamp)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("message body is empty")]
    Empty,
    #[error("message body is not JSON, not JSON-in-a-string and not base64 JSON")]
    NotJson,
    #[error("message body is larger than {0} bytes")]
    TooLarge(usize),
}

/// Decodes a trigger value that should carry a JSON document: an object as is, a JSON string
/// holding JSON (once or twice encoded), base64 of JSON (`dataType: binary`), with the legacy
/// BrokeredMessage preamble stripped.
pub fn json_body(v: &Value, max_len: usize) -> Result<Value, BodyError> {
    match v {
        Value::Object(_) | Value::Array(_) => Ok(v.clone()),
        Value::Null => Err(BodyError::Empty),
        Value::String(s) => json_from_text(s, max_len, 0),
        _ => Err(BodyError::NotJson),
    }
}

fn json_from_text(s: &str, max_len: usize, depth: usize) -> Result<Value, BodyError> {
    if s.len() > max_len {
        return Err(BodyError::TooLarge(max_len));
    }
    let t = s.trim().trim_start_matches('\u{feff}');
    let t = strip_preamble(t);
    if t.is_empty() {
        return Err(BodyError::Empty);
    }
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return match v {
            Value::String(inner) if depth < MAX_UNQUOTE => {
                json_from_text(&inner, max_len, depth + 1)
            }
            Value::Object(_) | Value::Array(_) => Ok(v),
            _ => Err(BodyError::NotJson),
        };
    }
    if depth < MAX_UNQUOTE {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(t) {
            if let Ok(text) = String::from_utf8(bytes) {
                return json_from_text(&text, max_len, depth + 1);
            }
        }
    }
    Err(BodyError::NotJson)
}

fn strip_preamble(s: &str) -> &str {
    match s.strip_prefix(BROKERED_PREAMBLE) {
        // The preamble is followed by a length byte and the payload, then a trailing marker.
        Some(rest) => {
            let start = rest.find(['{', '[']).unwrap_or(0);
            let end = rest.rfind(['}', ']']).map(|i| i + 1).unwrap_or(rest.len());
            &rest[start..end.max(start)]
        }
        None => s,
    }
}

/// Decodes an HTTP request body the host passed as text (or base64 for binary media types).
pub fn text_body(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unquotes_double_encoded_strings() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("\"\\\"abc\\\"\""), "abc");
        assert_eq!(unquote("abc"), "abc");
        assert_eq!(unquote("\"unterminated"), "\"unterminated");
        assert_eq!(as_text(&json!("\"4e773554\"")).unwrap(), "4e773554");
        assert_eq!(as_text(&json!(7)).unwrap(), "7");
    }

    #[test]
    fn integers_as_numbers_or_strings() {
        assert_eq!(as_u64(&json!("1")), Some(1));
        assert_eq!(as_u64(&json!("\"12\"")), Some(12));
        assert_eq!(as_u64(&json!(3)), Some(3));
        assert_eq!(as_u64(&json!("x")), None);
        assert_eq!(as_u64(&json!(null)), None);
    }

    #[test]
    fn timestamps_with_and_without_offset() {
        let a = parse_timestamp("2023-10-12T20:13:49").unwrap();
        let b = parse_timestamp("2023-10-12T20:13:49+00:00").unwrap();
        let c = parse_timestamp("2023-10-12T20:13:49Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        let d = parse_timestamp("2023-03-09T08:37:48.5046691Z").unwrap();
        assert_eq!(d.nanosecond(), 504_669_100);
        let e = parse_timestamp("2024-05-01T10:00:00.1234567+00:00").unwrap();
        assert_eq!(e.nanosecond(), 123_456_700);
        assert!(parse_timestamp("\"2023-10-12T20:13:49\"").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn bodies_in_every_encoding() {
        let want = json!({"runId": "r1", "seq": 2});
        let once = Value::String(want.to_string());
        let twice = Value::String(serde_json::to_string(&want.to_string()).unwrap());
        let b64 = Value::String(base64::engine::general_purpose::STANDARD.encode(want.to_string()));
        for v in [want.clone(), once, twice, b64] {
            assert_eq!(json_body(&v, 1 << 20).unwrap(), want, "decoding {v}");
        }
        let pre = Value::String(format!("{BROKERED_PREAMBLE}\u{1a}{}\u{1}", want));
        assert_eq!(json_body(&pre, 1 << 20).unwrap(), want);
        assert_eq!(json_body(&json!(""), 100), Err(BodyError::Empty));
        assert_eq!(json_body(&json!(null), 100), Err(BodyError::Empty));
        assert_eq!(json_body(&json!("hello"), 100), Err(BodyError::NotJson));
        assert_eq!(json_body(&json!("\"hello\""), 100), Err(BodyError::NotJson));
        assert_eq!(
            json_body(&json!("x".repeat(200)), 100),
            Err(BodyError::TooLarge(100))
        );
    }
}

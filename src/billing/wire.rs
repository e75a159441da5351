//! Graph wire helpers shared by the operation, manifest and invoice parsers: lenient
//! timestamps, bounded optional strings, SAS expiry.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Graph timestamps, leniently: RFC 3339 (any number of fractional digits), or a date-time
/// without offset, which the docs' own example uses and which we read as UTC.
/// Empty or unparseable → `None` (timestamps are informational only).
pub fn parse_graph_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let naive = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    match PrimitiveDateTime::parse(s, naive) {
        Ok(t) => Some(t.assume_utc()),
        Err(_) => {
            tracing::debug!(value = %s, "unparseable timestamp ignored");
            None
        }
    }
}

/// A string of at most `max` bytes; missing or `null` is the empty string.
pub fn optional_str(obj: &Map<String, Value>, key: &str, max: usize) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.len() <= max => Ok(s.clone()),
        Some(Value::String(s)) => Err(format!(
            "{key} is {} bytes long (at most {max} accepted)",
            s.len()
        )),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// The `se=` (signed expiry) of a SAS query string, if present and parseable.
pub fn sas_expiry(sas: &str) -> Option<time::OffsetDateTime> {
    let raw = sas
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("se="))?;
    let decoded = percent_decode(raw);
    time::OffsetDateTime::parse(&decoded, &time::format_description::well_known::Rfc3339).ok()
}

pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

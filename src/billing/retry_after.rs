//! `Retry-After` parsing: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
//!
//! `now` is a parameter so the HTTP-date branch can be tested without a clock.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What an HTTP-date at or before `now` turns into: a clock skew between us and the server
/// must not become a busy loop, so we still pause briefly.
pub const PAST_DATE_DELAY: Duration = Duration::from_secs(1);

/// Longest header value worth looking at; an HTTP-date is 29 bytes.
const MAX_VALUE_LEN: usize = 64;

/// Parses one `Retry-After` value relative to `now`, clamped to `max`.
///
/// - delta-seconds (`"120"`): honoured as given, `"0"` included;
/// - HTTP-date: the time left until then, or [`PAST_DATE_DELAY`] if it already passed;
/// - anything else (negative, fractional, garbage): `None`.
pub fn parse_retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return None;
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64 still means "a long time": clamp, don't drop.
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(Duration::MAX)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        match at.duration_since(now) {
            Ok(left) if !left.is_zero() => left,
            _ => PAST_DATE_DELAY,
        }
    };
    Some(wait.min(max))
}

/// The `Retry-After` of a response, if present and parseable (see [`parse_retry_after`]).
pub fn retry_after_from_headers(
    headers: &HeaderMap,
    now: SystemTime,
    max: Duration,
) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(raw, now, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const MAX: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds() {
        let now = at(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now, MAX),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 7 ", now, MAX),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("0", now, MAX), Some(Duration::ZERO));
    }

    #[test]
    fn http_date_relative_to_now() {
        // Sun, 06 Nov 1994 08:49:37 GMT == 784111777
        let now = at(784_111_777 - 90);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now, MAX),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn http_date_in_the_past_is_a_short_pause() {
        let now = at(784_111_777 + 1000);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now, MAX),
            Some(PAST_DATE_DELAY)
        );
        let exactly = at(784_111_777);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", exactly, MAX),
            Some(PAST_DATE_DELAY)
        );
    }

    #[test]
    fn garbage_is_none() {
        let now = at(1_700_000_000);
        for v in [
            "",
            "soon",
            "-5",
            "1.5",
            "+3",
            "0x10",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now, MAX), None, "{v:?}");
        }
        assert_eq!(parse_retry_after(&"9".repeat(100), now, MAX), None);
    }

    #[test]
    fn capped_at_max() {
        let now = at(784_111_777 - 10_000);
        assert_eq!(parse_retry_after("86400", now, MAX), Some(MAX));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now, MAX),
            Some(MAX)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now, MAX),
            Some(MAX)
        );
    }

    #[test]
    fn from_headers() {
        let now = at(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after_from_headers(&h, now, MAX), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("15"));
        assert_eq!(
            retry_after_from_headers(&h, now, MAX),
            Some(Duration::from_secs(15))
        );
        h.insert(RETRY_AFTER, HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(retry_after_from_headers(&h, now, MAX), None);
    }
}

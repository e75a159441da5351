//! `Retry-After`: delta-seconds or an HTTP-date, clamped to a configured maximum.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Parses one `Retry-After` value relative to `now`. A date in the past means "now" (zero);
/// garbage means absent.
pub fn parse(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = v.parse::<f64>() {
        // Not in the RFC, but cheap to accept; negative or NaN values are refused.
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        Duration::from_secs_f64(secs.min(max.as_secs_f64()))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(max))
}

/// `Retry-After` from response headers.
pub fn from_headers(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse(v, SystemTime::now(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn seconds_dates_and_garbage() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse("30", now, MAX), Some(Duration::from_secs(30)));
        assert_eq!(parse(" 0 ", now, MAX), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 25 Nov 2026 10:01:30 GMT", now, MAX),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse("Wed, 25 Nov 2026 09:00:00 GMT", now, MAX),
            Some(Duration::ZERO)
        );
        assert_eq!(parse("999999", now, MAX), Some(MAX));
        assert_eq!(parse("Thu, 25 Nov 2027 10:00:00 GMT", now, MAX), Some(MAX));
        assert_eq!(parse("soon", now, MAX), None);
        assert_eq!(parse("-5", now, MAX), None);
        assert_eq!(parse("1.5", now, MAX), Some(Duration::from_millis(1500)));
    }
}

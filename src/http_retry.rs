//! One retry loop for every outgoing call (Graph, Partner Center, Service Bus, Event Grid):
//! 408/429/5xx and network errors are retried with exponential backoff and jitter, or after
//! exactly the `Retry-After` the service asked for (delta-seconds or HTTP-date), capped.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    /// Cap on any single wait, including a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempts count from 1).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter = self
            .base_delay
            .mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 512.0);
        (exp + jitter).min(self.max_delay)
    }
}

/// Statuses worth another try.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses one `Retry-After` value relative to `now`: a date in the past means zero, garbage
/// means absent, anything is capped at `max`.
pub fn parse_retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
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
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now(), max)
}

/// How a retried send ended.
#[derive(Debug)]
pub enum Sent {
    /// An answer not worth retrying (success or a definite error): the caller interprets it.
    Answer(reqwest::Response),
    /// Every attempt hit a retryable status or a network error, or the service asked for a
    /// wait longer than an invocation may sleep (`retry_after`: then the caller schedules
    /// the next try instead of waiting).
    Exhausted {
        attempts: u32,
        last: String,
        retry_after: Option<Duration>,
    },
}

/// The longest a retry loop sleeps inside one invocation. A longer `Retry-After` ends the loop:
/// the caller turns it into a scheduled message (pipeline) or an answer with `Retry-After`
/// (HTTP), so no invocation outlives the Functions timeout waiting for a service.
pub const MAX_IN_CALL_WAIT: Duration = Duration::from_secs(10);

/// Sends what `make` builds until an answer arrives that is not worth retrying. `make` runs
/// once per attempt (a fresh token each time); its error ends the loop at once.
pub async fn send_with_retry<E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut make: F,
) -> Result<Sent, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::RequestBuilder, E>>,
{
    let attempts = policy.max_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let req = make().await?;
        let mut wait = None;
        match req.send().await {
            Ok(res) if is_retryable_status(res.status().as_u16()) => {
                wait = retry_after(res.headers(), Duration::from_secs(24 * 3600));
                last = format!("HTTP {}", res.status().as_u16());
                if let Some(w) = wait.filter(|w| *w > policy.max_delay.min(MAX_IN_CALL_WAIT)) {
                    return Ok(Sent::Exhausted {
                        attempts: attempt,
                        last: format!("{last}, Retry-After {} s", w.as_secs()),
                        retry_after: Some(w),
                    });
                }
            }
            Ok(res) => return Ok(Sent::Answer(res)),
            // `without_url`: URLs may carry SAS query strings; never let them reach a log.
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < attempts {
            let delay = policy.delay(attempt, wait).min(MAX_IN_CALL_WAIT);
            tracing::warn!(what, attempt, error = %last, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
        }
    }
    Ok(Sent::Exhausted {
        attempts,
        last,
        retry_after: None,
    })
}

/// The start of an error body, for messages (bounded; never the whole body).
pub async fn error_detail(res: reqwest::Response) -> String {
    res.text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn retry_after_seconds_dates_and_garbage() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("30", now, MAX),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after(" 0 ", now, MAX), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 10:01:30 GMT", now, MAX),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now, MAX),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999", now, MAX), Some(MAX));
        assert_eq!(
            parse_retry_after("Thu, 25 Nov 2027 10:00:00 GMT", now, MAX),
            Some(MAX)
        );
        assert_eq!(parse_retry_after("soon", now, MAX), None);
        assert_eq!(parse_retry_after("-5", now, MAX), None);
        assert_eq!(
            parse_retry_after("1.5", now, MAX),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert!(p.delay(1, None) >= Duration::from_millis(100));
        assert!(p.delay(3, None) >= Duration::from_millis(400));
        assert_eq!(p.delay(10, None), Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(5))),
            Duration::from_millis(5)
        );
    }
}

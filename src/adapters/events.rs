//! Event Grid notifications as CloudEvents 1.0, published straight to a topic endpoint
//! (`application/cloudevents-batch+json`). Events carry ids, paths and counts, never SAS or tokens.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::retry::{is_retryable_status, retry_after_seconds, RetryPolicy};
use crate::auth::{Audience, AuthError, AuthorizedHttp};

/// Our event types. Stable names; a breaking change to `data` gets a new `.v2` type.
pub const EXPORT_STARTED: &str = "PartnerBillingExport.ExportStarted.v1";
pub const EXPORT_COMPLETED: &str = "PartnerBillingExport.ExportCompleted.v1";
pub const EXPORT_FAILED: &str = "PartnerBillingExport.ExportFailed.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// Deterministic per run and type, so a consumer can drop a redelivered event.
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub datacontenttype: String,
    pub data: serde_json::Value,
}

impl CloudEvent {
    pub fn new(
        source: &str,
        event_type: &str,
        id: String,
        subject: String,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id,
            source: source.into(),
            event_type: event_type.into(),
            subject,
            time: OffsetDateTime::now_utc(),
            datacontenttype: "application/json".into(),
            data,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Event Grid refused the events ({status}): the identity needs the 'EventGrid Data Sender' role on the topic")]
    Forbidden { status: u16 },
    #[error("Event Grid rejected the events ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("Event Grid did not accept the events after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
}

#[async_trait]
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    async fn publish(&self, events: &[CloudEvent]) -> Result<(), EventError>;
}

/// Publishes to an Event Grid topic (or the local stand-in) with an Entra token.
#[derive(Debug, Clone)]
pub struct EventGridPublisher {
    http: AuthorizedHttp,
    endpoint: Url,
    retry: RetryPolicy,
}

impl EventGridPublisher {
    /// `endpoint` is the topic's `.../api/events` URL.
    pub fn new(http: AuthorizedHttp, endpoint: Url) -> Self {
        Self {
            http,
            endpoint,
            retry: RetryPolicy::default(),
        }
    }
}

#[async_trait]
impl EventPublisher for EventGridPublisher {
    async fn publish(&self, events: &[CloudEvent]) -> Result<(), EventError> {
        if events.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(events).map_err(|e| EventError::Rejected {
            status: 0,
            detail: e.to_string(),
        })?;
        let mut last = String::new();
        for attempt in 1..=self.retry.max_attempts {
            let req = self
                .http
                .request(
                    Audience::EventGrid,
                    reqwest::Method::POST,
                    self.endpoint.clone(),
                )
                .await?
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/cloudevents-batch+json; charset=utf-8",
                )
                .timeout(std::time::Duration::from_secs(30))
                .body(body.clone());
            let mut retry_after = None;
            match req.send().await {
                Ok(res) => match res.status().as_u16() {
                    200..=299 => {
                        for e in events {
                            tracing::info!(event_type = %e.event_type, subject = %e.subject, id = %e.id, "event published");
                        }
                        return Ok(());
                    }
                    s @ (401 | 403) => return Err(EventError::Forbidden { status: s }),
                    s if is_retryable_status(s) => {
                        retry_after = retry_after_seconds(res.headers());
                        last = format!("HTTP {s}");
                    }
                    s => {
                        let detail: String = res
                            .text()
                            .await
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect();
                        return Err(EventError::Rejected { status: s, detail });
                    }
                },
                Err(e) => last = e.to_string(),
            }
            if attempt < self.retry.max_attempts {
                tokio::time::sleep(self.retry.delay(attempt, retry_after)).await;
            }
        }
        Err(EventError::Unavailable {
            attempts: self.retry.max_attempts,
            last,
        })
    }
}

/// Used when no topic is configured: events go to the log only.
#[derive(Debug, Clone, Default)]
pub struct LogOnlyPublisher;

#[async_trait]
impl EventPublisher for LogOnlyPublisher {
    async fn publish(&self, events: &[CloudEvent]) -> Result<(), EventError> {
        for e in events {
            tracing::info!(event_type = %e.event_type, subject = %e.subject, id = %e.id, data = %e.data, "event (no Event Grid topic configured)");
        }
        Ok(())
    }
}

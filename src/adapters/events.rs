//! Event Grid notifications as CloudEvents 1.0, published straight to a topic endpoint
//! (`application/cloudevents-batch+json`). Events carry ids, paths and counts, never SAS or tokens.

use async_trait::async_trait;
use url::Url;

use crate::auth::{Audience, AuthError, AuthorizedHttp, Secret};
use crate::http_retry::{error_detail, send_with_retry, RetryPolicy, Sent};
pub use crate::pipeline::ports::events::{CloudEvent, EventError, EventPublisher};

/// Publishes to an Event Grid topic (or the local stand-in) with an Entra token.
#[derive(Debug, Clone)]
pub struct EventGridPublisher {
    http: AuthorizedHttp,
    endpoint: Url,
    retry: RetryPolicy,
    /// The topic access key, when used instead of an Entra token.
    key: Option<Secret>,
}

impl EventGridPublisher {
    /// `endpoint` is the topic's `.../api/events` URL.
    pub fn new(http: AuthorizedHttp, endpoint: Url) -> Self {
        Self {
            http,
            endpoint,
            retry: RetryPolicy::default(),
            key: None,
        }
    }

    /// Authenticates with the topic's access key (`aeg-sas-key`) instead of an Entra token.
    pub fn with_access_key(mut self, key: Secret) -> Self {
        self.key = Some(key);
        self
    }

    async fn authorized_post(&self) -> Result<reqwest::RequestBuilder, EventError> {
        match &self.key {
            None => Ok(self
                .http
                .request(
                    Audience::EventGrid,
                    reqwest::Method::POST,
                    self.endpoint.clone(),
                )
                .await?),
            Some(key) => {
                let url = &self.endpoint;
                if url.scheme() != "https" && !crate::auth::is_loopback(url) {
                    return Err(AuthError::InsecureScheme {
                        audience: Audience::EventGrid.name(),
                        host: url.host_str().unwrap_or("").to_string(),
                    }
                    .into());
                }
                Ok(self
                    .http
                    .anonymous()
                    .post(url.clone())
                    .header("aeg-sas-key", key.expose()))
            }
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
        let body = &body;
        let sent = send_with_retry(&self.retry, "Event Grid publish", move || async move {
            Ok::<_, EventError>(
                self.authorized_post()
                    .await?
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/cloudevents-batch+json; charset=utf-8",
                    )
                    .timeout(std::time::Duration::from_secs(30))
                    .body(body.clone()),
            )
        })
        .await?;
        let res = match sent {
            Sent::Answer(res) => res,
            Sent::Exhausted { attempts, last, .. } => {
                return Err(EventError::Unavailable { attempts, last })
            }
        };
        match res.status().as_u16() {
            200..=299 => {
                for e in events {
                    tracing::info!(event_type = %e.event_type, subject = %e.subject, id = %e.id, "event published");
                }
                Ok(())
            }
            status @ (401 | 403) => Err(EventError::Forbidden { status }),
            status => Err(EventError::Rejected {
                status,
                detail: error_detail(res).await,
            }),
        }
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

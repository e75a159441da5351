//! Service Bus through its REST API: `POST {endpoint}/{queue}/messages` with `BrokerProperties`.
//! The Functions output binding cannot schedule messages, so every send is ours. Scheduling at
//! `ScheduledEnqueueTimeUtc` is how the pipeline waits without sleeping.

use std::time::SystemTime;

use async_trait::async_trait;
use time::OffsetDateTime;
use url::Url;

use super::shared_key::{service_bus_token, SharedAccessKey, TOKEN_LIFETIME_SECS};
use crate::auth::{redact_url, Audience, AuthError, AuthorizedHttp};
use crate::http_retry::{error_detail, send_with_retry, RetryPolicy, Sent};
pub use crate::pipeline::ports::queue::{MessageQueue, OutgoingMessage, QueueError};

/// The `BrokerProperties` header of `msg`: JSON with `MessageId` and an RFC 1123
/// `ScheduledEnqueueTimeUtc`.
pub fn broker_properties(msg: &OutgoingMessage) -> String {
    let mut props = serde_json::Map::new();
    props.insert("MessageId".into(), msg.message_id.clone().into());
    if let Some(at) = msg.scheduled_enqueue_time {
        props.insert("ScheduledEnqueueTimeUtc".into(), rfc1123(at).into());
    }
    serde_json::Value::Object(props).to_string()
}

/// `Wed, 25 Nov 2026 09:20:36 GMT`, the format Service Bus documents.
pub fn rfc1123(t: OffsetDateTime) -> String {
    httpdate::fmt_http_date(SystemTime::from(t))
}

/// How sends are authorized.
#[derive(Debug, Clone)]
enum SendAuth {
    /// An Entra token for `https://servicebus.azure.net` (managed identity; the default).
    Entra,
    /// A SAS token signed with a connection string's key.
    SharedKey(SharedAccessKey),
}

/// The production Service Bus sender (the local stand-in speaks the same REST API).
#[derive(Debug, Clone)]
pub struct ServiceBusRest {
    http: AuthorizedHttp,
    endpoint: Url,
    retry: RetryPolicy,
    auth: SendAuth,
}

impl ServiceBusRest {
    /// `endpoint` is `https://{namespace}` (or the local stand-in's URL).
    pub fn new(http: AuthorizedHttp, endpoint: Url) -> Self {
        Self {
            http,
            endpoint,
            retry: RetryPolicy::default(),
            auth: SendAuth::Entra,
        }
    }

    /// Signs sends with a shared access key instead of an Entra token.
    pub fn with_shared_key(mut self, key: SharedAccessKey) -> Self {
        self.auth = SendAuth::SharedKey(key);
        self
    }

    async fn authorized_post(&self, url: &Url) -> Result<reqwest::RequestBuilder, QueueError> {
        match &self.auth {
            SendAuth::Entra => Ok(self
                .http
                .request(Audience::ServiceBus, reqwest::Method::POST, url.clone())
                .await?),
            SendAuth::SharedKey(key) => {
                // A signature is a credential too: never over plain http off this machine.
                if url.scheme() != "https" && !crate::auth::is_loopback(url) {
                    return Err(AuthError::InsecureScheme {
                        audience: Audience::ServiceBus.name(),
                        host: url.host_str().unwrap_or("").to_string(),
                    }
                    .into());
                }
                let expiry = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
                    + TOKEN_LIFETIME_SECS;
                Ok(self.http.anonymous().post(url.clone()).header(
                    reqwest::header::AUTHORIZATION,
                    service_bus_token(&self.endpoint, key, expiry),
                ))
            }
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `https://{ns}` from `ServiceBusConnection__fullyQualifiedNamespace`.
    pub fn endpoint_for_namespace(ns: &str) -> Result<Url, String> {
        let ns = ns.trim().trim_end_matches('/');
        let ns = ns
            .strip_prefix("sb://")
            .or_else(|| ns.strip_prefix("https://"))
            .unwrap_or(ns);
        if ns.is_empty() || ns.contains('/') {
            return Err(format!("{ns:?} is not a Service Bus namespace host name"));
        }
        Url::parse(&format!("https://{ns}"))
            .map_err(|e| format!("bad Service Bus namespace {ns:?}: {e}"))
    }

    fn messages_url(&self, queue: &str) -> Result<Url, QueueError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|_| QueueError::Rejected {
                queue: queue.into(),
                status: 0,
                detail: "endpoint cannot carry a path".into(),
            })?
            .pop_if_empty()
            .push(queue)
            .push("messages");
        Ok(url)
    }
}

#[async_trait]
impl MessageQueue for ServiceBusRest {
    async fn send(&self, queue: &str, msg: &OutgoingMessage) -> Result<(), QueueError> {
        let url = self.messages_url(queue)?;
        let url_ref = &url;
        let sent = send_with_retry(&self.retry, "Service Bus send", move || async move {
            Ok::<_, QueueError>(
                self.authorized_post(url_ref)
                    .await?
                    .header("BrokerProperties", broker_properties(msg))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .timeout(std::time::Duration::from_secs(30))
                    .body(msg.body.clone()),
            )
        })
        .await?;
        let res = match sent {
            Sent::Answer(res) => res,
            Sent::Exhausted { attempts, last, .. } => {
                return Err(QueueError::Unavailable {
                    queue: queue.into(),
                    attempts,
                    last,
                })
            }
        };
        match res.status().as_u16() {
            200..=299 => {
                tracing::debug!(queue, message_id = %msg.message_id, scheduled = ?msg.scheduled_enqueue_time, "message sent");
                Ok(())
            }
            status @ (401 | 403) => Err(QueueError::Forbidden {
                queue: queue.into(),
                status,
            }),
            404 => Err(QueueError::NotFound {
                queue: queue.into(),
                endpoint: redact_url(&self.endpoint),
            }),
            status => Err(QueueError::Rejected {
                queue: queue.into(),
                status,
                detail: error_detail(res).await,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_use_rfc1123() {
        let at = time::macros::datetime!(2026-11-25 09:20:36 UTC);
        let m =
            OutgoingMessage::json(&serde_json::json!({"a": 1}), "run-1-poll-2", Some(at)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&broker_properties(&m)).unwrap();
        assert_eq!(
            v["ScheduledEnqueueTimeUtc"],
            "Wed, 25 Nov 2026 09:20:36 GMT"
        );
        assert_eq!(v["MessageId"], "run-1-poll-2");
        let now = OutgoingMessage::json(&1, "x", None).unwrap();
        assert!(!broker_properties(&now).contains("Scheduled"));
    }

    #[test]
    fn namespace_to_endpoint() {
        assert_eq!(
            ServiceBusRest::endpoint_for_namespace("contoso.servicebus.windows.net")
                .unwrap()
                .as_str(),
            "https://contoso.servicebus.windows.net/"
        );
        assert_eq!(
            ServiceBusRest::endpoint_for_namespace("sb://contoso.servicebus.windows.net/")
                .unwrap()
                .host_str(),
            Some("contoso.servicebus.windows.net")
        );
        assert!(ServiceBusRest::endpoint_for_namespace("a/b").is_err());
    }
}

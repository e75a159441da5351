//! The queue port: messages with a deterministic id and an optional delivery time, and a sender
//! of them. `adapters::servicebus` implements it with the Service Bus REST API (its wire
//! format, `BrokerProperties`, stays there); `adapters::memory_queue` in process.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::auth::AuthError;

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// JSON body.
    pub body: Vec<u8>,
    /// Deterministic id, so the queue's duplicate detection drops a resend.
    pub message_id: String,
    /// Deliver no earlier than this (UTC); `None` = now.
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
}

impl OutgoingMessage {
    pub fn json<T: serde::Serialize>(
        body: &T,
        message_id: impl Into<String>,
        at: Option<OffsetDateTime>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            body: serde_json::to_vec(body)?,
            message_id: message_id.into(),
            scheduled_enqueue_time: at,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Service Bus refused the send to queue {queue:?} ({status}): the identity needs the 'Azure Service Bus Data Sender' role on the queue or namespace")]
    Forbidden { queue: String, status: u16 },
    #[error("Service Bus queue {queue:?} does not exist at {endpoint}")]
    NotFound { queue: String, endpoint: String },
    #[error("Service Bus rejected the message for {queue:?} ({status}): {detail}")]
    Rejected {
        queue: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Service Bus did not accept the message for {queue:?} after {attempts} attempts: {last}"
    )]
    Unavailable {
        queue: String,
        attempts: u32,
        last: String,
    },
    #[error("cannot encode queue message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Sends messages to a queue.
#[async_trait]
pub trait MessageQueue: Send + Sync + std::fmt::Debug {
    async fn send(&self, queue: &str, msg: &OutgoingMessage) -> Result<(), QueueError>;
}

//! The events port: CloudEvents 1.0 envelopes and a publisher of batches of them. Events carry
//! ids, paths and counts, never SAS or tokens. `adapters::events` implements it for Event Grid.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::AuthError;
use crate::contracts::events::EventData;

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
    /// One of our events: its `type` and `data` from the typed payload
    /// (`contracts::events`, where the event types are listed).
    pub fn of(source: &str, id: String, subject: String, payload: &EventData) -> Self {
        Self::new(
            source,
            payload.event_type().as_str(),
            id,
            subject,
            payload.to_data(),
        )
    }

    /// The typed payload, read back from `type` and `data`.
    pub fn payload(&self) -> Result<EventData, serde_json::Error> {
        EventData::parse(&self.event_type, self.data.clone())
    }

    /// Any CloudEvent; ours are made with [`CloudEvent::of`].
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

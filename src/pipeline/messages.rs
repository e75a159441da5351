//! Queue message bodies. Both are tiny and carry no secrets: the SAS is fetched fresh from
//! Graph by whoever needs it. Parsed strictly: a message from the queue is outside input.

use serde::{Deserialize, Serialize};

use super::run::RunId;

/// The queue `PollOperation` listens on: one `PollJob` per poll, scheduled at Retry-After.
pub const OPERATIONS_QUEUE: &str = "export-operations";
/// The queue `CopyPartition` listens on: one `CopyJob` per manifest partition.
pub const PARTITIONS_QUEUE: &str = "export-partitions";

pub const MESSAGE_VERSION: u8 = 1;

/// "Poll this run's operation" (queue `export-operations`). `seq` numbers the polls of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollJob {
    pub v: u8,
    pub run_id: RunId,
    pub seq: u32,
}

impl PollJob {
    pub fn new(run_id: RunId, seq: u32) -> Self {
        Self {
            v: MESSAGE_VERSION,
            run_id,
            seq,
        }
    }
    /// Deterministic: a resend of the same poll is dropped by duplicate detection.
    pub fn message_id(&self) -> String {
        format!("{}-poll-{}", self.run_id, self.seq)
    }
    /// A resend by the watchdog: a new id, so duplicate detection does not drop it as the
    /// message it replaces (the sequence number still stops it from forking a second chain).
    pub fn repair_message_id(&self, repair: u32) -> String {
        format!("{}-r{repair}", self.message_id())
    }
}

/// "Copy partition `part` of this run" (queue `export-partitions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyJob {
    pub v: u8,
    pub run_id: RunId,
    pub part: u32,
    /// Failed attempts before this one, each followed by a backoff (absent: the first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CopyJob {
    pub fn new(run_id: RunId, part: u32) -> Self {
        Self {
            v: MESSAGE_VERSION,
            run_id,
            part,
            attempt: 0,
        }
    }
    /// The same copy, once more after a failure.
    pub fn retry(&self) -> Self {
        Self {
            attempt: self.attempt + 1,
            ..self.clone()
        }
    }
    pub fn message_id(&self) -> String {
        match self.attempt {
            0 => format!("{}-part-{}", self.run_id, self.part),
            n => format!("{}-part-{}-a{n}", self.run_id, self.part),
        }
    }
    /// A resend by the watchdog (see [`PollJob::repair_message_id`]).
    pub fn repair_message_id(&self, repair: u32) -> String {
        format!("{}-r{repair}", self.message_id())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("queue message is not a valid {kind}: {reason}")]
    Invalid { kind: &'static str, reason: String },
    #[error("queue message version {0} is not supported (expected {MESSAGE_VERSION})")]
    Version(u8),
}

fn parse<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    v: &serde_json::Value,
) -> Result<T, MessageError> {
    serde_json::from_value(v.clone()).map_err(|e| MessageError::Invalid {
        kind,
        reason: e.to_string(),
    })
}

impl TryFrom<&serde_json::Value> for PollJob {
    type Error = MessageError;
    fn try_from(v: &serde_json::Value) -> Result<Self, Self::Error> {
        let j: PollJob = parse("poll job", v)?;
        if j.v != MESSAGE_VERSION {
            return Err(MessageError::Version(j.v));
        }
        Ok(j)
    }
}

impl TryFrom<&serde_json::Value> for CopyJob {
    type Error = MessageError;
    fn try_from(v: &serde_json::Value) -> Result<Self, Self::Error> {
        let j: CopyJob = parse("copy job", v)?;
        if j.v != MESSAGE_VERSION {
            return Err(MessageError::Version(j.v));
        }
        Ok(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_parsing() {
        let ok = json!({"v": 1, "runId": "20261125t090000-abcdef012345", "seq": 3});
        let j = PollJob::try_from(&ok).unwrap();
        assert_eq!(j.message_id(), "20261125t090000-abcdef012345-poll-3");
        assert!(PollJob::try_from(&json!({"v": 1, "runId": "../x", "seq": 3})).is_err());
        assert!(PollJob::try_from(
            &json!({"v": 2, "runId": "20261125t090000-abcdef012345", "seq": 3})
        )
        .is_err());
        assert!(PollJob::try_from(
            &json!({"v": 1, "runId": "20261125t090000-abcdef012345", "seq": 3, "sas": "x"})
        )
        .is_err());
        assert!(CopyJob::try_from(
            &json!({"v": 1, "runId": "20261125t090000-abcdef012345", "part": -1})
        )
        .is_err());
        let c =
            CopyJob::try_from(&json!({"v": 1, "runId": "20261125t090000-abcdef012345", "part": 7}))
                .unwrap();
        assert_eq!(c.message_id(), "20261125t090000-abcdef012345-part-7");
    }
}

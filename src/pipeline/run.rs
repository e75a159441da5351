//! The run record: everything the ledger knows about one export run. It is the source of truth
//! for idempotency (which poll is current, which parts are done), fan-in and the status API.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::billing::{ExportRequest, ManifestSummary};
pub use crate::contracts::run::{FailureCode, FollowUp, FollowUpState, RunId, RunState, Trigger};
use crate::pipeline::ports::storage::{CopyMethod, ObjectPath};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartRecord {
    pub index: u32,
    /// Blob name in Microsoft's manifest.
    pub name: String,
    pub partition_value: String,
    pub dest: ObjectPath,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<CopyMethod>,
    /// Bytes of the typed Parquet and FOCUS files derived from this part, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_bytes: Option<u64>,
    /// Values of this part its Parquet decimal type could not hold, rounded half to even.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounded_values: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: RunId,
    pub request: ExportRequest,
    pub trigger: Trigger,
    pub state: RunState,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Graph operation URL (no secrets in it).
    #[serde(default)]
    pub operation_url: Option<String>,
    /// Poll messages consumed so far; a message whose `seq` is lower is stale.
    #[serde(default)]
    pub polls: u32,
    /// Exports started again after `410 Gone`.
    #[serde(default)]
    pub restarts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub poll_deadline: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_poll_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_status: Option<String>,
    #[serde(default)]
    pub manifest: Option<ManifestSummary>,
    #[serde(default)]
    pub output_folder: Option<ObjectPath>,
    #[serde(default)]
    pub parts: Vec<PartRecord>,
    #[serde(default)]
    pub failure: Option<Failure>,
    /// Graph had no data for the export (failed operation code `5000`, "No data available"):
    /// the run completed with nothing to copy. Not a failure: no `ExportFailed`, no alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
    /// Graph's message when `no_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data_reason: Option<String>,
    #[serde(default)]
    pub started_event_sent: bool,
    /// Set by whoever moved the run to a terminal state: that invocation sends the final event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finish_claimed_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub final_event_sent: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Set by the invocation that is POSTing the export to Graph: a concurrent start (timer
    /// retry, HTTP, watchdog) leaves the run to it until the lease is stale.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub submit_lease_at: Option<OffsetDateTime>,
    /// How often the watchdog re-sent this run's messages, and when it last did.
    #[serde(default)]
    pub repairs: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub repaired_at: Option<OffsetDateTime>,
    /// The run's progress when the watchdog last resumed it: repairs count only while it stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_mark: Option<u64>,
    /// A fresh id per write: a conditional write whose answer was lost is recognised as ours
    /// when the record read back carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_id: Option<String>,
    /// The billing month (`yyyyMM`) planning found for a billed run's invoice: where a run
    /// without data lands when Graph gives no `rootDirectory` to learn it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_month: Option<String>,
    /// POSTs of this run's export (each under a fresh submit lease): more than one when a start
    /// whose answer or record was lost is submitted again once its lease expires.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub submissions: u32,
    /// The completed run's `_manifest.json` and `_current.json` were written: a later finish
    /// (re-sending the final event) does not write them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub landed: bool,
    /// Failed attempts to write a completed run's `_manifest.json` and `_current.json`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub landing_attempts: u32,
    /// The invoice check and hubs landing after completion, when the deployment has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
}

impl RunRecord {
    pub fn new(
        run_id: RunId,
        request: ExportRequest,
        trigger: Trigger,
        now: OffsetDateTime,
        poll_deadline: OffsetDateTime,
    ) -> Self {
        Self {
            run_id,
            request,
            trigger,
            state: RunState::Starting,
            created_at: now,
            updated_at: now,
            operation_url: None,
            polls: 0,
            restarts: 0,
            poll_deadline,
            next_poll_at: None,
            last_status: None,
            manifest: None,
            output_folder: None,
            parts: Vec::new(),
            failure: None,
            no_data: false,
            no_data_reason: None,
            started_event_sent: false,
            finish_claimed_at: None,
            final_event_sent: false,
            submissions: 0,
            landed: false,
            landing_attempts: 0,
            follow_up: None,
            finished_at: None,
            submit_lease_at: None,
            repairs: 0,
            repaired_at: None,
            repair_mark: None,
            write_id: None,
            planned_month: None,
        }
    }

    /// Whether nobody holds a fresh submit lease (a POST to Graph under way) at `now`.
    pub fn submit_lease_free(&self, now: OffsetDateTime, grace: std::time::Duration) -> bool {
        self.submit_lease_at.is_none_or(|at| now - at > grace)
    }

    /// Whether nothing is left for the watchdog: terminal, final event out, and no invoice
    /// check or hubs landing still to try. A settled run leaves the open-run index.
    pub fn is_settled(&self) -> bool {
        self.state.is_terminal()
            && self.final_event_sent
            && self
                .follow_up
                .as_ref()
                .is_none_or(|f| f.state != crate::contracts::run::FollowUpState::Pending)
    }

    pub fn parts_done(&self) -> usize {
        self.parts.iter().filter(|p| p.done).count()
    }

    pub fn bytes_copied(&self) -> u64 {
        self.parts.iter().filter_map(|p| p.bytes).sum()
    }

    /// Rows, when every copied part has a count.
    pub fn rows_copied(&self) -> Option<u64> {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// The key the ledger indexes this run's request under (see [`ExportRequest::ledger_key`]).
    pub fn ledger_key(&self) -> String {
        self.request.ledger_key(self.created_at.date())
    }

    /// Moves to a terminal state and claims the final event for the caller.
    pub fn finish(&mut self, state: RunState, failure: Option<Failure>, now: OffsetDateTime) {
        debug_assert!(state.is_terminal());
        self.state = state;
        self.failure = failure;
        self.finished_at = Some(now);
        self.finish_claimed_at = Some(now);
        self.next_poll_at = None;
    }
}

/// Which run currently serves a request key (for duplicate-start detection), and what the
/// request's earlier runs came to (planning's retry and give-up rules read it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIndex {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Attempts::is_empty")]
    pub earlier: Attempts,
}

/// Outcomes of a request's runs (the runs an index entry has replaced, or those plus its
/// current run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempts {
    /// Runs that failed (Graph refused the export or the run could not finish).
    #[serde(default)]
    pub failed: u32,
    /// Runs Graph had no data for (`5000`).
    #[serde(default)]
    pub no_data: u32,
    /// Runs that completed with data.
    #[serde(default)]
    pub completed: u32,
}

impl Attempts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// These attempts plus `run`'s outcome (nothing for a run still under way).
    pub fn with(mut self, run: &RunRecord) -> Self {
        match run.state {
            RunState::Failed => self.failed += 1,
            RunState::Completed if run.no_data => self.no_data += 1,
            RunState::Completed => self.completed += 1,
            _ => {}
        }
        self
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_serialise_as_plain_strings() {
        for (code, text) in [
            (FailureCode::Deadline, "\"deadline\""),
            (FailureCode::SourceChanged, "\"sourceChanged\""),
            (FailureCode::PollFailed, "\"pollFailed\""),
            (FailureCode::Graph("5000".into()), "\"5000\""),
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), text);
            assert_eq!(serde_json::from_str::<FailureCode>(text).unwrap(), code);
        }
    }

    #[test]
    fn run_ids_are_validated_and_sortable() {
        let a = RunId::generate(time::macros::datetime!(2026-11-25 09:00:00 UTC));
        assert!(a.as_str().starts_with("20261125t090000-"));
        assert_eq!(a.as_str().parse::<RunId>().unwrap(), a);
        assert!("../../etc".parse::<RunId>().is_err());
        assert!("ABC".parse::<RunId>().is_err());
    }
}

//! `export --json`: one JSON object per line, each with its `event` name; progress lines also
//! carry `elapsed` (seconds since the command started).

use serde::{Deserialize, Serialize};

use super::run::{RunId, RunState};
use crate::billing::{BillingPeriod, CurrencyCode, ExportKind, InvoiceId};

/// One line of output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CliLine {
    #[serde(flatten)]
    pub event: CliEvent,
    /// Seconds since the start, to a tenth (progress lines; not `summary` and `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CliEvent {
    /// What the command is about to do.
    Plan {
        exports: Vec<String>,
        graph: String,
        credential: String,
        output: String,
        /// The invoices' billing month, when discovered from Partner Center.
        invoice_months: Option<String>,
        dry_run: bool,
    },
    /// `--dry-run`: what would happen to one export.
    Planned {
        export: String,
        request: String,
        action: String,
    },
    /// `--dry-run`: an export the plan leaves out, and why.
    #[serde(rename_all = "camelCase")]
    Skipped {
        what: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        billing_month: Option<crate::billing::BillingMonth>,
        reason: String,
    },
    /// `--dry-run`, last: the whole plan, the same document `GET /api/plan` shows for a timer.
    DryRun {
        plan: Box<super::plan::TimerPlan>,
    },
    Note {
        message: String,
    },
    /// An export whose start failed before any run was recorded.
    NotStarted {
        export: String,
        reason: String,
    },
    /// A run this command follows: `outcome` is `started`, `resumed` or `rejected`.
    Run {
        run_id: RunId,
        export: String,
        outcome: String,
        state: RunState,
        parts_done: usize,
        parts_total: usize,
    },
    State {
        run_id: RunId,
        export: String,
        state: RunState,
        polls: u32,
        parts_done: usize,
        parts_total: usize,
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<CliFailure>,
    },
    PartDone {
        run_id: RunId,
        export: String,
        part: u32,
        /// `relay`, `serverSide`, `skipped` or `unknown`.
        method: String,
        bytes: u64,
        parts_done: usize,
        parts_total: usize,
    },
    /// The driver stopped retrying the run's messages.
    GaveUp {
        run_id: RunId,
        export: String,
        reason: String,
    },
    Summary(Box<CliSummary>),
    /// The command could not run.
    Error {
        message: String,
        exit_code: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliFailure {
    pub code: String,
    pub message: String,
}

/// The closing line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliSummary {
    pub exit_code: u8,
    pub interrupted: bool,
    pub runs: Vec<CliRun>,
    pub partitions: usize,
    pub parts_copied: usize,
    pub parts_already_there: usize,
    pub bytes: u64,
    pub rows: u64,
    pub seconds: f64,
    pub output: String,
    pub ledger: String,
    pub events: Option<String>,
    pub hints: Vec<String>,
    pub not_started: Vec<CliNotStarted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliNotStarted {
    pub export: String,
    pub reason: String,
}

/// One run in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliRun {
    pub run_id: RunId,
    pub export: String,
    pub kind: ExportKind,
    pub scope: CliScope,
    pub attribute_set: String,
    /// `started`, `resumed` or `rejected`.
    pub origin: String,
    /// `completed`, `no data`, `failed`, `gave up`, `interrupted` or `unfinished`.
    pub status: String,
    pub polls: u32,
    pub files: usize,
    pub parts_done: usize,
    pub parts_done_before: usize,
    pub parts_copied: usize,
    pub parts_skipped: usize,
    pub bytes: u64,
    pub rows: Option<u64>,
    pub manifest: Option<String>,
    pub failure: Option<CliFailure>,
    pub gave_up: Option<String>,
}

/// `invoiceId`, or `billingPeriod` and `currencyCode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CliScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_period: Option<BillingPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<CurrencyCode>,
}

//! The export state machine (docs/architecture.md): start, poll decision, fan-out, copy, fan-in; the
//! run ledger and the queue message types. It knows which services it needs, not where they run.

pub mod clock;
pub mod current;
pub mod decide;
pub mod derived;
pub mod fanin;
pub mod hubs;
pub mod invoice_check;
pub mod layout;
pub mod ledger;
pub mod manifest_cache;
pub mod messages;
pub mod notify;
pub mod open_runs;
pub mod ports;
pub mod run;
pub mod service;
pub mod status;

pub use decide::PollPolicy;
pub use ledger::Ledger;
pub use messages::{CopyJob, PollJob};
pub use run::{Attempts, Failure, FailureCode, RunId, RunRecord, RunState, Trigger};
pub use service::{
    Handled, PartnerRuntime, Pipeline, PipelineConfig, PipelineError, StartOutcome, WatchdogReport,
    MAX_COPY_ATTEMPTS, MAX_FOLLOW_UP_ATTEMPTS, MAX_LANDING_ATTEMPTS, WATCHDOG_BUDGET,
};

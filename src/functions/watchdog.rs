//! `Watchdog` (timer, every few minutes): resumes or fails every run that stopped moving, and
//! re-sends final events that were never published (see `Pipeline::watchdog`).

use functions_runtime::{InvocationReply, InvocationResult, TimerInfo};

use crate::app::App;

pub async fn run(app: &App, timer: TimerInfo) -> InvocationResult {
    if timer.is_past_due {
        tracing::info!("watchdog timer is past due; running now");
    }
    let report = app.pipeline.watchdog().await?;
    Ok(InvocationReply::new().log(format!(
        "watchdog: {} runs checked, {} resubmitted, {} polls and {} copies re-sent, {} failed, {} final events re-sent, {} finished, {} errors, {} unreadable records skipped",
        report.checked,
        report.resubmitted,
        report.polls_resent,
        report.copies_resent,
        report.failed,
        report.final_events_resent,
        report.finished,
        report.errors,
        report.skipped
    )))
}

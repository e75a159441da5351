//! `StartExports` (timer): plans this month's exports and starts each one. A start that could
//! not reach Graph fails the invocation so the timer's retry policy runs it again; exports that
//! did start are duplicates on that retry, hence no-ops.

use crate::app::App;
use crate::pipeline::{notify, StartOutcome, Trigger};
use crate::planner;
use functions_runtime::{InvocationFailure, InvocationReply, InvocationResult, TimerInfo};
use time::OffsetDateTime;

pub async fn run(app: &App, timer: TimerInfo, now: OffsetDateTime) -> InvocationResult {
    if timer.is_past_due {
        tracing::warn!("timer is past due; starting exports now");
    }
    let today = now.date();
    let plan = planner::plan(&app.config.plan, &app.invoices, today).await;
    let mut reply = InvocationReply::new();
    if let Some(f) = &plan.discovery_failure {
        // One error line (it also reaches the invocation's Logs) and one event; the unbilled
        // exports below still start.
        let month = format!("{}{:02}", f.year, u8::from(f.month));
        tracing::error!(
            billing_month = %month,
            error = %f.error,
            fix = f.hint(),
            "invoice discovery failed; billed exports of this month were not started"
        );
        let event = notify::invoice_discovery_failed(
            app.pipeline.event_source(),
            &month,
            today,
            &f.error.to_string(),
            f.hint(),
        );
        if let Err(e) = app.pipeline.announce(event).await {
            tracing::warn!(error = %e, "could not publish InvoiceDiscoveryFailed");
        }
    }
    for note in &plan.notes {
        tracing::warn!("{note}");
        reply = reply.log(note.clone());
    }
    let mut failures = Vec::new();
    let (mut started, mut duplicates, mut rejected) = (0, 0, 0);
    for req in plan.requests {
        match app.pipeline.start(req.clone(), Trigger::Timer).await {
            Ok(StartOutcome::Started(r)) => {
                started += 1;
                reply = reply.log(format!("started {req} as run {}", r.run_id));
            }
            Ok(StartOutcome::Duplicate(r)) => {
                duplicates += 1;
                reply = reply.log(format!("{req} already running as run {}", r.run_id));
            }
            Ok(StartOutcome::Rejected(r)) => {
                rejected += 1;
                let why = r.failure.map(|f| f.message).unwrap_or_default();
                reply = reply.log(format!("Graph refused {req}: {why}"));
            }
            Err(e) => {
                tracing::error!(request = %req, error = %e, "could not start export");
                failures.push(format!("{req}: {e}"));
            }
        }
    }
    tracing::info!(
        started,
        duplicates,
        rejected,
        failed = failures.len(),
        "timer run planned"
    );
    if !failures.is_empty() {
        return Err(InvocationFailure {
            message: format!(
                "{} export(s) could not be started: {}",
                failures.len(),
                failures.join("; ")
            ),
            logs: reply.logs,
        });
    }
    Ok(reply.log(format!(
        "{started} started, {duplicates} already running, {rejected} refused by Graph"
    )))
}

//! `StartBilledExports` and `StartUnbilledExports` (timers): fire the use case and render its
//! report as the invocation's reply. A start that could not reach Graph fails the invocation so
//! the timer's retry policy runs it again; exports that did start are duplicates (or already
//! exported) on that retry, hence no-ops.

use crate::app::App;
use crate::pipeline::StartOutcome;
use crate::planner::KindGroup;
use crate::usecases::firing::{self, PartnerFiring};
use functions_runtime::{InvocationFailure, InvocationReply, InvocationResult, TimerInfo};
use time::OffsetDateTime;

pub async fn run(
    app: &App,
    timer: TimerInfo,
    now: OffsetDateTime,
    group: KindGroup,
) -> InvocationResult {
    if timer.is_past_due {
        tracing::warn!("timer is past due; starting exports now");
    }
    let report = firing::fire(app, group, now).await;
    // Lines name their partner when the deployment lists partners.
    let listed = app.config.has_partner_list();
    let mut logs = Vec::new();
    let mut failed = Vec::new();
    for p in &report.partners {
        let prefix = match p.start.partner.listed() {
            Some(id) if listed => format!("{id}: "),
            _ => String::new(),
        };
        logs.extend(lines(p).into_iter().map(|l| format!("{prefix}{l}")));
        if let Some(why) = &p.failure {
            failed.push(match p.start.partner.listed() {
                Some(id) if listed => format!("partner {id}: {why}"),
                _ => why.clone(),
            });
        }
    }
    if failed.is_empty() {
        Ok(logs
            .into_iter()
            .fold(InvocationReply::new(), InvocationReply::log))
    } else {
        Err(InvocationFailure {
            message: failed.join(" | "),
            logs,
        })
    }
}

/// One partner's log lines: its news, each start, and the counts.
fn lines(p: &PartnerFiring) -> Vec<String> {
    let mut out = p.news.clone();
    for r in &p.start.results {
        let req = &r.planned.request;
        match &r.outcome {
            Ok(StartOutcome::Started(run)) => {
                out.push(format!("started {req} as run {}", run.run_id))
            }
            Ok(StartOutcome::Duplicate(run)) => {
                out.push(format!("{req} already running as run {}", run.run_id))
            }
            Ok(StartOutcome::Rejected(run)) => {
                let why = run
                    .failure
                    .as_ref()
                    .map(|f| f.message.as_str())
                    .unwrap_or_default();
                out.push(format!("Graph refused {req}: {why}"));
            }
            Err(_) => {}
        }
    }
    if p.failure.is_none() {
        let c = p.start.counts();
        out.push(format!(
            "{} started, {} already running, {} refused by Graph, {} already exported or running",
            c.started, c.duplicates, c.rejected, p.start.skipped
        ));
    }
    out
}

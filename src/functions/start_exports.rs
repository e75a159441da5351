//! `StartBilledExports` and `StartUnbilledExports` (timers): plan one kind group's exports and
//! start each one. A start that could not reach Graph fails the invocation so the timer's retry
//! policy runs it again; exports that did start are duplicates (or already exported) on that
//! retry, hence no-ops.

use crate::app::App;
use crate::billing::PartnerId;
use crate::pipeline::{notify, StartOutcome, Trigger};
use crate::planner::{self, KindGroup, Plan, PlanScope};
use functions_runtime::{InvocationFailure, InvocationReply, InvocationResult, TimerInfo};
use serde_json::json;
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
    let today = now.date();
    // Partners are planned and started side by side: one partner's slow or throttled calls
    // (its own client, its own bound) never hold up another's.
    let plans = timer_plans(app, group, today, None).await;
    let results = futures::future::join_all(plans.into_iter().map(|(_, plan)| async move {
        let partner = plan.partner.clone();
        let reply = announce_news(app, &plan, today).await;
        let result = start_planned(app, plan, Trigger::Timer, reply).await;
        (partner, result)
    }))
    .await;
    merge_partner_results(app, group, today, results).await
}

/// One reply for the firing. A partner whose exports could not be started gets one error line
/// and (listed partners) one `ExportsNotStarted` event; the invocation fails so the host's retry
/// gives it another chance, while what did start is a no-op duplicate on that retry.
async fn merge_partner_results(
    app: &App,
    group: KindGroup,
    today: time::Date,
    results: Vec<(PartnerId, InvocationResult)>,
) -> InvocationResult {
    if results.len() == 1 && results[0].0.is_default() {
        // A single-tenant deployment answers without a per-partner level.
        return results.into_iter().next().expect("one").1;
    }
    let mut logs = Vec::new();
    let mut failed = Vec::new();
    for (partner, result) in results {
        match result {
            Ok(reply) => logs.extend(reply.logs.into_iter().map(|l| format!("{partner}: {l}"))),
            Err(f) => {
                logs.extend(f.logs.into_iter().map(|l| format!("{partner}: {l}")));
                let line = format!("partner {partner}: {}", f.message);
                tracing::error!(partner = %partner, error = %f.message, "exports of this partner could not be started; the other partners went on");
                let event = notify::exports_not_started(
                    app.pipeline.event_source(),
                    &partner,
                    group_name(group),
                    today,
                    // "{n} export(s) could not be started: ..."
                    f.message
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                    &f.message,
                );
                if let Err(e) = app.pipeline.announce(event).await {
                    tracing::warn!(partner = %partner, error = %e, "could not publish ExportsNotStarted");
                }
                logs.push(line.clone());
                failed.push(line);
            }
        }
    }
    if failed.is_empty() {
        let mut reply = InvocationReply::new();
        for l in logs {
            reply = reply.log(l);
        }
        Ok(reply)
    } else {
        Err(InvocationFailure {
            message: failed.join(" | "),
            logs,
        })
    }
}

fn group_name(group: KindGroup) -> &'static str {
    match group {
        KindGroup::Billed => "billed",
        KindGroup::Unbilled => "unbilled",
    }
}

/// What a firing of `group`'s timer on `today` plans for each partner (or only `only`), the
/// timer and `GET /api/plan` alike, partners side by side.
pub async fn timer_plans(
    app: &App,
    group: KindGroup,
    today: time::Date,
    only: Option<&PartnerId>,
) -> Vec<(PlanScope, Plan)> {
    let partners = app
        .config
        .partners
        .iter()
        .filter(|p| only.is_none_or(|o| o == &p.id));
    futures::future::join_all(partners.map(|p| async move {
        let scope = PlanScope::timer(&p.plan, group, today);
        let plan = planner::plan(
            &p.id,
            &p.plan,
            app.invoices_for(&p.id),
            app.pipeline.ledger(),
            &scope,
            today,
        )
        .await;
        (scope, plan)
    }))
    .await
}

/// The plan's news: a failed invoice discovery and overdue invoices become one log line and
/// one event each (ids deterministic, so retries do not multiply them); notes are logged.
pub async fn announce_news(app: &App, plan: &Plan, today: time::Date) -> InvocationReply {
    let mut reply = InvocationReply::new();
    if let Some(f) = &plan.discovery_failure {
        // One error line (it also reaches the invocation's Logs) and one event; the unbilled
        // exports still start.
        let month = format!("{}{:02}", f.year, u8::from(f.month));
        tracing::error!(
            partner = %plan.partner,
            billing_month = %month,
            error = %f.error,
            fix = f.hint(),
            "invoice discovery failed; billed exports of this month were not started"
        );
        let event = notify::invoice_discovery_failed(
            app.pipeline.event_source(),
            &plan.partner,
            &month,
            today,
            &f.error.to_string(),
            f.hint(),
        );
        if let Err(e) = app.pipeline.announce(event).await {
            tracing::warn!(error = %e, "could not publish InvoiceDiscoveryFailed");
        }
    }
    if let Some(m) = &plan.invoices_missing {
        let month = m.month.compact();
        let notice = if plan.partner.is_default() {
            format!("invoices-missing-{month}")
        } else {
            format!("invoices-missing-{month}-{}", plan.partner)
        };
        let event = notify::invoices_missing(
            app.pipeline.event_source(),
            &plan.partner,
            &month,
            m.expected_by,
            today,
        );
        // Remembered first, then published: only the firing that records the notice speaks,
        // so daily firings (and several instances) give one event and one log line per
        // month. Should Event Grid refuse it, the error line below still tells the operator.
        let ledger = app.pipeline.ledger();
        let first = match ledger
            .record_notice(
                &notice,
                &json!({ "checkedOn": today.to_string(), "published": false }),
            )
            .await
        {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(error = %e, "could not record the InvoicesMissing notice; announcing it anyway");
                true
            }
        };
        // The notice is recorded before the event goes out and marked once it has: an event
        // Event Grid refused is sent again by the next firing (same CloudEvents id), instead of
        // being lost behind a notice that says it was given.
        let unsent = first
            || ledger
                .notice(&notice)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| v.get("published") == Some(&json!(false)));
        if first {
            let line = format!(
                "no invoice for billing month {} in Partner Center by {} (usually published about the 8th); billed exports start when it appears",
                m.month, m.expected_by
            );
            tracing::error!(partner = %plan.partner, billing_month = %month, expected_by = %m.expected_by, "{line}");
            reply = reply.log(line);
        }
        if unsent {
            match app.pipeline.announce(event).await {
                Ok(()) => {
                    let sent = json!({ "checkedOn": today.to_string(), "published": true });
                    if let Err(e) = ledger.update_notice(&notice, &sent).await {
                        tracing::warn!(error = %e, "InvoicesMissing sent, but not marked as sent; the next firing sends it again (same id)");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, billing_month = %month, "could not publish InvoicesMissing; the next firing tries again");
                }
            }
        }
    }
    for note in &plan.notes {
        tracing::warn!("{note}");
        reply = reply.log(note.clone());
    }
    reply
}

/// Starts every planned export; fails the invocation if some could not reach Graph.
pub async fn start_planned(
    app: &App,
    plan: Plan,
    trigger: Trigger,
    mut reply: InvocationReply,
) -> InvocationResult {
    let mut failures = Vec::new();
    let (mut started, mut duplicates, mut rejected) = (0, 0, 0);
    let skipped = plan.skipped.len();
    for p in plan.requests {
        let req = p.request;
        match app
            .pipeline
            .start_planned(req.clone(), trigger, p.billing_month)
            .await
        {
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
        skipped,
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
        "{started} started, {duplicates} already running, {rejected} refused by Graph, {skipped} already exported or running"
    )))
}

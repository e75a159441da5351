//! What a plan found worth telling: a failed invoice discovery, overdue invoices and exports
//! given up become an error line and one event each. Event ids are deterministic, and notices
//! in the ledger remember what was said, so daily firings, retries and several instances do
//! not multiply them.

use time::Date;

use crate::app::App;
use crate::contracts::notices::InvoicesMissingNotice as NewsNotice;
use crate::pipeline::notify;
use crate::planner::{Abandoned, DiscoveryFailure, MissingInvoices, Plan};

/// Announces `plan`'s news; returns the lines for the invocation's log.
pub async fn announce(app: &App, plan: &Plan, today: Date) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(f) = &plan.discovery_failure {
        discovery_failed(app, plan, f, today).await;
    }
    if let Some(m) = &plan.invoices_missing {
        lines.extend(invoices_missing(app, plan, m, today).await);
    }
    for a in &plan.abandoned {
        lines.extend(abandoned(app, a, today).await);
    }
    for note in &plan.notes {
        tracing::warn!(partner = %plan.partner, "{note}");
        lines.push(note.clone());
    }
    lines
}

/// One error line (it also reaches the invocation's log) and one event per day; the unbilled
/// exports still start.
async fn discovery_failed(app: &App, plan: &Plan, f: &DiscoveryFailure, today: Date) {
    let month = f.month.compact();
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

async fn invoices_missing(
    app: &App,
    plan: &Plan,
    m: &MissingInvoices,
    today: Date,
) -> Option<String> {
    let month = m.month.compact();
    let notice = format!("invoices-missing-{month}{}", partner_suffix(&plan.partner));
    let event = notify::invoices_missing(
        app.pipeline.event_source(),
        &plan.partner,
        &month,
        m.expected_by,
        today,
    );
    let line = format!(
        "no invoice for billing month {} in Partner Center by {} (usually published about the 8th); billed exports start when it appears",
        m.month, m.expected_by
    );
    let first = once(app, &notice, event, today).await;
    first.then(|| {
        tracing::error!(partner = %plan.partner, billing_month = %month, expected_by = %m.expected_by, "{line}");
        line
    })
}

async fn abandoned(app: &App, a: &Abandoned, today: Date) -> Option<String> {
    let notice = format!("abandoned/{}/{}", a.request.ledger_key(today), a.run_id);
    let event = notify::export_abandoned(
        app.pipeline.event_source(),
        &a.request,
        &a.run_id,
        a.attempts,
        &a.reason,
    );
    let line = format!(
        "{} given up after {} failed attempts (last run {}): {}",
        a.request, a.attempts, a.run_id, a.reason
    );
    let first = once(app, &notice, event, today).await;
    first.then(|| {
        tracing::error!(request = %a.request, run_id = %a.run_id, attempts = a.attempts, "{line}");
        line
    })
}

/// The implicit partner's notices have no suffix; a listed partner's name it.
fn partner_suffix(partner: &crate::billing::PartnerId) -> String {
    partner
        .listed()
        .map(|p| format!("-{p}"))
        .unwrap_or_default()
}

/// Publishes `event` unless a notice says it went out; true for the caller that recorded the
/// notice (the one that speaks). Remembered first, then published, then marked: an event Event
/// Grid refused is sent again by the next firing (same CloudEvents id) instead of being lost
/// behind a notice that says it was given.
async fn once(
    app: &App,
    notice: &str,
    event: crate::adapters::events::CloudEvent,
    today: Date,
) -> bool {
    let ledger = app.pipeline.ledger();
    let unsent = NewsNotice {
        checked_on: today,
        published: false,
    };
    let body = serde_json::to_value(unsent).expect("notices serialize");
    let first = match ledger.record_notice(notice, &body).await {
        Ok(first) => first,
        Err(e) => {
            tracing::warn!(error = %e, notice, "could not record a notice; announcing anyway");
            true
        }
    };
    let pending = first
        || ledger
            .notice(notice)
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value::<NewsNotice>(v).ok())
            .is_some_and(|n| !n.published);
    if pending {
        let ty = event.event_type.clone();
        match app.pipeline.announce(event).await {
            Ok(()) => {
                let sent = NewsNotice {
                    published: true,
                    ..unsent
                };
                let body = serde_json::to_value(sent).expect("notices serialize");
                if let Err(e) = ledger.update_notice(notice, &body).await {
                    tracing::warn!(error = %e, event = %ty, "event sent, but not marked as sent; the next firing sends it again (same id)");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, event = %ty, "could not publish; the next firing tries again");
            }
        }
    }
    first
}

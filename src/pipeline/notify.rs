//! The CloudEvents we publish about runs. Ids are deterministic per run and event type, so a
//! consumer can drop the rare duplicate a crash-and-retry produces.

use serde_json::json;

use super::ports::events::CloudEvent;
use super::run::RunRecord;
use crate::adapters::events::{
    EXPORTS_NOT_STARTED, EXPORT_COMPLETED, EXPORT_FAILED, EXPORT_STARTED, INVOICES_MISSING,
    INVOICE_DISCOVERY_FAILED,
};
use crate::billing::{ExportScope, PartnerId};

/// Blobs listed inline in a completion event; beyond this the event points at `_manifest.json`
/// (Event Grid caps an event at 1 MB).
pub const MAX_EVENT_BLOBS: usize = 500;

pub fn subject(run: &RunRecord) -> String {
    let scope = match &run.request.scope {
        ExportScope::Invoice { invoice_id } => format!("invoices/{invoice_id}"),
        ExportScope::Period { period, currency } => {
            format!("periods/{period}/currencies/{currency}")
        }
    };
    let subject = format!(
        "exports/{}/{scope}/runs/{}",
        run.request.kind.slug(),
        run.run_id
    );
    // Listed partners' subjects are under their own prefix, so a subscription can filter one
    // partner by subject; the implicit partner's subjects have no partner segment.
    if run.request.partner.is_default() {
        subject
    } else {
        format!("partners/{}/{subject}", run.request.partner)
    }
}

/// `data.partner` for a listed partner's run (the implicit partner's events have none).
fn with_partner(run: &RunRecord, mut data: serde_json::Value) -> serde_json::Value {
    if !run.request.partner.is_default() {
        if let Some(o) = data.as_object_mut() {
            o.insert("partner".into(), json!(run.request.partner));
        }
    }
    data
}

fn request_json(run: &RunRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(&run.request).unwrap_or_default();
    if let Some(scope) = v.get("scope").cloned() {
        // Flatten the scope for consumers: {kind, invoiceId | billingPeriod + currencyCode, attributeSet}.
        if let (Some(o), Some(s)) = (v.as_object_mut(), scope.as_object()) {
            o.remove("scope");
            for (k, val) in s {
                if k != "by" {
                    o.insert(k.clone(), val.clone());
                }
            }
        }
    }
    v
}

pub fn started(source: &str, run: &RunRecord) -> CloudEvent {
    CloudEvent::new(
        source,
        EXPORT_STARTED,
        format!("{}-started-{}", run.run_id, run.restarts),
        subject(run),
        with_partner(
            run,
            json!({
                "runId": run.run_id,
                "trigger": run.trigger,
                "request": request_json(run),
                "restarts": run.restarts,
                "pollDeadline": run.poll_deadline.format(&time::format_description::well_known::Rfc3339).ok(),
            }),
        ),
    )
}

pub fn completed(
    source: &str,
    run: &RunRecord,
    folder: &str,
    manifest_location: &str,
    current_location: Option<&str>,
) -> CloudEvent {
    let blobs: Vec<_> = run
        .parts
        .iter()
        .take(MAX_EVENT_BLOBS)
        .map(|p| json!({ "path": p.dest, "bytes": p.bytes, "rows": p.rows, "md5": p.md5, "copyMethod": p.method }))
        .collect();
    let m = run.manifest.as_ref();
    CloudEvent::new(
        source,
        EXPORT_COMPLETED,
        format!("{}-completed", run.run_id),
        subject(run),
        with_partner(
            run,
            json!({
                "runId": run.run_id,
                "trigger": run.trigger,
                "request": request_json(run),
                "folder": folder,
                "manifest": manifest_location,
                "current": current_location,
                "sourceETag": m.map(|m| m.etag.as_str()),
                "billingMonth": super::layout::run_billing_month(run),
                "noData": run.no_data,
                "noDataReason": run.no_data_reason,
                "blobCount": run.parts.len(),
                "byteCount": run.bytes_copied(),
                "rowCount": run.rows_copied(),
                "blobs": blobs,
                "blobsTruncated": run.parts.len() > MAX_EVENT_BLOBS,
            }),
        ),
    )
}

/// Invoice discovery failed for a billing month: billed exports were not planned.
/// One event per month and firing day (deterministic id), so retries do not multiply it.
pub fn invoice_discovery_failed(
    source: &str,
    partner: &PartnerId,
    billing_month: &str,
    fired_on: time::Date,
    reason: &str,
    hint: &str,
) -> CloudEvent {
    partner_news(
        partner,
        CloudEvent::new(
            source,
            INVOICE_DISCOVERY_FAILED,
            format!("invoice-discovery-{billing_month}-failed-{fired_on}"),
            format!("invoices/{billing_month}"),
            json!({ "billingMonth": billing_month, "reason": reason, "fix": hint }),
        ),
    )
}

/// A listed partner's planning news: its id in the event id (so partners' events are not taken
/// for duplicates of each other), the subject and the data. The implicit partner's carry none.
fn partner_news(partner: &PartnerId, mut ev: CloudEvent) -> CloudEvent {
    if !partner.is_default() {
        ev.id = format!("{partner}-{}", ev.id);
        ev.subject = format!("partners/{partner}/{}", ev.subject);
        if let Some(o) = ev.data.as_object_mut() {
            o.insert("partner".into(), json!(partner));
        }
    }
    ev
}

/// A firing could not start some of a partner's exports (its credential failed, Graph did not
/// answer): one event per partner, group and day, whatever the number of exports.
pub fn exports_not_started(
    source: &str,
    partner: &PartnerId,
    group: &str,
    fired_on: time::Date,
    count: usize,
    reason: &str,
) -> CloudEvent {
    partner_news(
        partner,
        CloudEvent::new(
            source,
            EXPORTS_NOT_STARTED,
            format!("exports-not-started-{group}-{fired_on}"),
            format!("exports/{group}"),
            json!({ "group": group, "firedOn": fired_on.to_string(), "count": count, "reason": reason }),
        ),
    )
}

/// A billing month's invoices had not appeared in Partner Center by the configured day. One
/// event per month (the id is the month's), so daily firings and retries do not multiply it.
pub fn invoices_missing(
    source: &str,
    partner: &PartnerId,
    billing_month: &str,
    expected_by: time::Date,
    checked_on: time::Date,
) -> CloudEvent {
    partner_news(
        partner,
        CloudEvent::new(
            source,
            INVOICES_MISSING,
            format!("invoices-missing-{billing_month}"),
            format!("invoices/{billing_month}"),
            json!({
                "billingMonth": billing_month,
                "expectedBy": expected_by.to_string(),
                "checkedOn": checked_on.to_string(),
                "reason": format!(
                    "Partner Center lists no new-commerce invoice for {billing_month}; invoices are usually published by about the 8th of the following month. \
                     Billed exports start on the first firing that finds them."
                ),
            }),
        ),
    )
}

pub fn failed(source: &str, run: &RunRecord) -> CloudEvent {
    let f = run.failure.as_ref();
    CloudEvent::new(
        source,
        EXPORT_FAILED,
        format!("{}-failed", run.run_id),
        subject(run),
        with_partner(
            run,
            json!({
                "runId": run.run_id,
                "trigger": run.trigger,
                "request": request_json(run),
                "code": f.map(|f| f.code.as_str()),
                "reason": f.map(|f| f.message.as_str()),
                "polls": run.polls,
                "restarts": run.restarts,
                "partsDone": run.parts_done(),
                "partsTotal": run.parts.len(),
            }),
        ),
    )
}

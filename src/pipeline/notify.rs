//! The CloudEvents we publish about runs. Ids are deterministic per run and event type, so a
//! consumer can drop the rare duplicate a crash-and-retry produces.

use super::run::RunRecord;
use crate::billing::{ExportScope, PartnerId};
use crate::contracts::events::{
    self as data, CompletedBlob, EventData, RequestData, RunData, MAX_EVENT_BLOBS,
};
use crate::pipeline::ports::events::CloudEvent;

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
    // partner by subject; the implicit partner's subjects are as before.
    match run.request.partner.listed() {
        None => subject,
        Some(p) => format!("partners/{p}/{subject}"),
    }
}

/// What every run event says about its run.
fn run_data(run: &RunRecord) -> RunData {
    RunData {
        run_id: run.run_id.clone(),
        trigger: run.trigger,
        request: RequestData::from(&run.request),
        partner: run.request.partner.listed().cloned(),
        partner_tenant_id: None,
    }
}

pub fn started(source: &str, run: &RunRecord) -> CloudEvent {
    CloudEvent::of(
        source,
        format!("{}-started-{}", run.run_id, run.restarts),
        subject(run),
        &EventData::ExportStarted(data::ExportStarted {
            run: run_data(run),
            restarts: run.restarts,
            poll_deadline: Some(run.poll_deadline),
        }),
    )
}

pub fn completed(
    source: &str,
    run: &RunRecord,
    folder: &str,
    manifest_location: &str,
    current_location: Option<&str>,
    retention: Option<data::RetentionOutcome>,
) -> CloudEvent {
    let blobs = run
        .parts
        .iter()
        .take(MAX_EVENT_BLOBS)
        .map(|p| CompletedBlob {
            path: p.dest.to_string(),
            bytes: p.bytes,
            rows: p.rows,
            md5: p.md5.clone(),
            copy_method: p.method,
        })
        .collect();
    CloudEvent::of(
        source,
        format!("{}-completed", run.run_id),
        subject(run),
        &EventData::ExportCompleted(data::ExportCompleted {
            run: run_data(run),
            folder: folder.to_string(),
            manifest: manifest_location.to_string(),
            current: current_location.map(str::to_string),
            source_etag: run.manifest.as_ref().map(|m| m.etag.clone()),
            billing_month: super::layout::run_billing_month(run),
            no_data: run.no_data,
            no_data_reason: run.no_data_reason.clone(),
            blob_count: run.parts.len(),
            byte_count: run.bytes_copied(),
            row_count: run.rows_copied(),
            blobs,
            blobs_truncated: run.parts.len() > MAX_EVENT_BLOBS,
            retention,
            rounded_values: Some(run.parts.iter().filter_map(|p| p.rounded_values).sum())
                .filter(|n: &u64| *n > 0),
        }),
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
    let (id, subject) = partner_news(
        partner,
        format!("invoice-discovery-{billing_month}-failed-{fired_on}"),
        format!("invoices/{billing_month}"),
    );
    CloudEvent::of(
        source,
        id,
        subject,
        &EventData::InvoiceDiscoveryFailed(data::InvoiceDiscoveryFailed {
            billing_month: billing_month.to_string(),
            reason: reason.to_string(),
            fix: hint.to_string(),
            partner: partner.listed().cloned(),
        }),
    )
}

/// The id and subject of a listed partner's planning news: its id in the event id (so
/// partners' events are not taken for duplicates of each other) and in the subject (its data
/// names it too). The implicit partner's are as they are.
fn partner_news(partner: &PartnerId, id: String, subject: String) -> (String, String) {
    match partner.listed() {
        None => (id, subject),
        Some(p) => (format!("{p}-{id}"), format!("partners/{p}/{subject}")),
    }
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
    let (id, subject) = partner_news(
        partner,
        format!("exports-not-started-{group}-{fired_on}"),
        format!("exports/{group}"),
    );
    CloudEvent::of(
        source,
        id,
        subject,
        &EventData::ExportsNotStarted(data::ExportsNotStarted {
            group: group.to_string(),
            fired_on,
            count,
            reason: reason.to_string(),
            partner: partner.listed().cloned(),
        }),
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
    let (id, subject) = partner_news(
        partner,
        format!("invoices-missing-{billing_month}"),
        format!("invoices/{billing_month}"),
    );
    CloudEvent::of(
        source,
        id,
        subject,
        &EventData::InvoicesMissing(data::InvoicesMissing {
            billing_month: billing_month.to_string(),
            expected_by,
            checked_on,
            reason: format!(
                "Partner Center lists no new-commerce invoice for {billing_month}; invoices are usually published by about the 8th of the following month. \
                 Billed exports start on the first firing that finds them."
            ),
            partner: partner.listed().cloned(),
        }),
    )
}

/// Planning gave an export up after `attempts` failed runs: one event per export and last
/// failed run, however many firings see it.
pub fn export_abandoned(
    source: &str,
    request: &crate::billing::ExportRequest,
    last_run: &super::run::RunId,
    attempts: u32,
    reason: &str,
) -> CloudEvent {
    let scope = match &request.scope {
        ExportScope::Invoice { invoice_id } => format!("invoices/{invoice_id}"),
        ExportScope::Period { period, currency } => {
            format!("periods/{period}/currencies/{currency}")
        }
    };
    let (id, subject) = partner_news(
        &request.partner,
        format!("{last_run}-abandoned"),
        format!("exports/{}/{scope}", request.kind.slug()),
    );
    CloudEvent::of(
        source,
        id,
        subject,
        &EventData::ExportAbandoned(data::ExportAbandoned {
            request: request.to_string(),
            last_run_id: last_run.to_string(),
            attempts,
            reason: reason.to_string(),
            fix: "planning no longer starts this export; once the cause is fixed, start it with POST /api/exports or export --force".into(),
            partner: request.partner.listed().cloned(),
        }),
    )
}

pub fn failed(source: &str, run: &RunRecord) -> CloudEvent {
    let f = run.failure.as_ref();
    CloudEvent::of(
        source,
        format!("{}-failed", run.run_id),
        subject(run),
        &EventData::ExportFailed(data::ExportFailed {
            run: run_data(run),
            code: f.map(|f| f.code.clone()),
            reason: f.map(|f| f.message.clone()),
            polls: run.polls,
            restarts: run.restarts,
            parts_done: run.parts_done(),
            parts_total: run.parts.len(),
        }),
    )
}

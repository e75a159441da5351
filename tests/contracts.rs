//! Fixture generator (phase 1): today's JSON, written once.

use partner_billing_export::adapters::events::CloudEvent;
use partner_billing_export::adapters::filesystem::FilesystemDestination;
use partner_billing_export::adapters::storage::{CopyMethod, ObjectPath};
use partner_billing_export::billing::*;
use partner_billing_export::pipeline::run::PartRecord;
use partner_billing_export::pipeline::{notify, status, Failure, FailureCode, RunId, RunRecord, RunState, Trigger};
use serde_json::{json, Value};
use time::macros::{date, datetime};

fn fixture(name: &str, v: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/contracts/{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(v).unwrap() + "\n").unwrap();
}

fn event(mut ev: CloudEvent) -> Value {
    ev.time = datetime!(2026-11-09 06:00:05 UTC);
    serde_json::to_value(ev).unwrap()
}

fn billed_run() -> RunRecord {
    let req = ExportRequest::billed(ExportKind::BilledUsage, "G026100001".parse().unwrap(), AttributeSet::Full).unwrap();
    let mut r = RunRecord::new(
        "20261109t060000-4c1d2e3f4a5b".parse().unwrap(),
        req,
        Trigger::Timer,
        datetime!(2026-11-09 06:00:00 UTC),
        datetime!(2026-11-10 06:00:00 UTC),
    );
    r.planned_month = Some("202610".into());
    r
}

fn completed(mut r: RunRecord) -> RunRecord {
    r.polls = 3;
    r.restarts = 1;
    r.last_status = Some("succeeded".into());
    r.manifest = Some(ManifestSummary {
        id: "1f2e3d4c-0000-4000-8000-000000000001".into(),
        schema_version: "2".into(),
        data_format: "compressedJSON".into(),
        created_date_time: Some(datetime!(2026-11-09 06:04:00 UTC)),
        etag: "0x8DDF3A1B2C3D4E5".into(),
        partner_tenant_id: "6f1d2c3b-4a5e-4f60-8a71-92b3c4d5e6f7".into(),
        root_directory: "https://adlsreconbuprodeastus01.blob.core.windows.net/billingexport/BilledUsage/BillingMonth=202610/Invoice=G026100001".into(),
        partition_type: "default".into(),
        blob_count: 2,
        blobs: Vec::new(),
    });
    let folder = ObjectPath::new("partner-billing/billed-usage/202610/G026100001/full/v-0x8DDF3A1B2C3D4E5").unwrap();
    r.parts = (0..2u32)
        .map(|i| PartRecord {
            index: i,
            name: format!("part-0000{i}.json.gz"),
            partition_value: "default".into(),
            dest: folder.join(&format!("part-0000{i}.json.gz")).unwrap(),
            done: true,
            bytes: Some(1000 + u64::from(i)),
            md5: Some(format!("q2hM1bYbL0xvHa0Zt6n1x{i}==")),
            rows: Some(40 + u64::from(i)),
            method: Some(if i == 0 { CopyMethod::ServerSide } else { CopyMethod::Skipped }),
            parquet_bytes: None,
        })
        .collect();
    r.output_folder = Some(folder);
    r.state = RunState::Completed;
    r.finished_at = Some(datetime!(2026-11-09 06:07:30 UTC));
    r.updated_at = datetime!(2026-11-09 06:07:30 UTC);
    r
}

fn listed_unbilled() -> RunRecord {
    let req = ExportRequest::unbilled(ExportKind::UnbilledReconciliation, BillingPeriod::Current, "EUR".parse().unwrap(), AttributeSet::Basic)
        .unwrap()
        .for_partner("contoso".parse().unwrap());
    RunRecord::new(
        "20261109t061500-9a8b7c6d5e4f".parse().unwrap(),
        req,
        Trigger::Http,
        datetime!(2026-11-09 06:15:00 UTC),
        datetime!(2026-11-10 06:15:00 UTC),
    )
}

fn polling(mut r: RunRecord) -> RunRecord {
    r.state = RunState::Polling;
    r.polls = 2;
    r.last_status = Some("running".into());
    r.next_poll_at = Some(datetime!(2026-11-09 06:16:00 UTC));
    r.updated_at = datetime!(2026-11-09 06:15:30 UTC);
    r
}

fn no_data(mut r: RunRecord) -> RunRecord {
    r.state = RunState::Completed;
    r.polls = 1;
    r.no_data = true;
    r.no_data_reason = Some("No data available".into());
    r.output_folder = Some(ObjectPath::new("csp/contoso/unbilled-reconciliation/202611/EUR/basic/no-data").unwrap());
    r.finished_at = Some(datetime!(2026-11-09 06:16:10 UTC));
    r
}

fn failed(mut r: RunRecord) -> RunRecord {
    r.polls = 7;
    r.state = RunState::Failed;
    r.failure = Some(Failure {
        code: FailureCode::Deadline,
        message: "the operation was still running at the poll deadline".into(),
        at: datetime!(2026-11-10 06:00:10 UTC),
    });
    r.finished_at = Some(datetime!(2026-11-10 06:00:10 UTC));
    r
}

const SOURCE: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/pbe";

#[test]
#[ignore]
fn generate() {
    let dest = FilesystemDestination::new("/data/out", reqwest::Client::new());
    let done = completed(billed_run());
    fixture("event-export-started", &event(notify::started(SOURCE, &billed_run())));
    fixture("event-export-started-listed-partner", &event(notify::started(SOURCE, &polling(listed_unbilled()))));
    fixture("event-export-completed", &event(notify::completed(SOURCE, &done, "/data/out/folder", "/data/out/folder/_manifest.json", Some("/data/out/_current.json"))));
    fixture("event-export-completed-no-data-listed-partner", &event(notify::completed(SOURCE, &no_data(listed_unbilled()), "/data/out/no-data", "/data/out/no-data/_manifest.json", None)));
    fixture("event-export-failed", &event(notify::failed(SOURCE, &failed(billed_run()))));
    let contoso: PartnerId = "contoso".parse().unwrap();
    fixture("event-invoice-discovery-failed", &event(notify::invoice_discovery_failed(SOURCE, &PartnerId::default(), "2026-10", date!(2026-11-09), "Partner Center refused the request (401)", "register the app in Partner Center")));
    fixture("event-invoice-discovery-failed-listed-partner", &event(notify::invoice_discovery_failed(SOURCE, &contoso, "2026-10", date!(2026-11-09), "Partner Center refused the request (401)", "register the app in Partner Center")));
    fixture("event-exports-not-started", &event(notify::exports_not_started(SOURCE, &contoso, "billed", date!(2026-11-09), 2, "the credential failed")));
    fixture("event-invoices-missing", &event(notify::invoices_missing(SOURCE, &PartnerId::default(), "2026-10", date!(2026-11-12), date!(2026-11-13))));
    fixture("event-invoices-missing-listed-partner", &event(notify::invoices_missing(SOURCE, &contoso, "2026-10", date!(2026-11-12), date!(2026-11-13))));

    fixture("status-run-polling", &status::view(&polling(listed_unbilled()), &dest));
    fixture("status-run-completed", &status::view(&done, &dest));
    fixture("status-run-no-data", &status::view(&no_data(listed_unbilled()), &dest));
    fixture("status-run-failed", &status::view(&failed(billed_run()), &dest));
    let runs = vec![polling(listed_unbilled()), done.clone(), failed(billed_run())];
    let q = status::ListQuery { limit: 2, ..status::ListQuery::parse(&[("kind".to_string(), "billedUsage".to_string())].into()).unwrap() };
    let q = status::ListQuery { kind: None, ..q };
    let (page, total, next) = q.page(&runs);
    fixture("status-list", &json!({
        "runs": page,
        "total": total,
        "offset": q.offset,
        "limit": q.limit,
        "next": next.map(|q| format!("/api/exports?{q}")),
    }));
    let mut body = status::view(&polling(listed_unbilled()), &dest);
    body["statusUrl"] = json!(format!("/api/exports/{}", listed_unbilled().run_id));
    body["duplicate"] = json!(false);
    fixture("status-started", &body);

    fixture("notice-invoices-missing", &json!({ "checkedOn": date!(2026-11-13).to_string(), "published": false }));
    let _ = RunId::generate;
    invoice_events();
    plan_bodies();
    cli_lines();
}

fn amount(s: &str) -> partner_billing_export::pipeline::derived::Amount {
    s.parse().unwrap()
}

fn invoice_events() {
    use partner_billing_export::adapters::events::{INVOICE_MISMATCH, INVOICE_RECONCILED};
    use partner_billing_export::pipeline::invoice_check::*;
    let recon = "20261109t060100-aa11bb22cc33";
    let check = InvoiceCheck {
        verdict: Verdict::Reconciled,
        invoice_id: "G026100001".into(),
        currency: "USD".into(),
        invoice_total: amount("12840.55"),
        data_total: amount("12840.55"),
        difference: amount("0"),
        tolerance: amount("0.01"),
        other_currencies: Vec::new(),
        customers: vec![
            CustomerTotal { customer_id: "c0ffee00-0000-4000-8000-000000000001".into(), currency: "USD".into(), total: amount("10000.5") },
            CustomerTotal { customer_id: "c0ffee00-0000-4000-8000-000000000002".into(), currency: "USD".into(), total: amount("2840.05") },
        ],
        customers_truncated: false,
        azure_usage: Some(UsageCheck {
            verdict: Verdict::Reconciled,
            usage_run_id: "20261109t060000-4c1d2e3f4a5b".into(),
            products: 3,
            usage_total: amount("5120.004"),
            azure_lines_total: amount("5120"),
            customers: vec![UsageDifference {
                customer_id: "c0ffee00-0000-4000-8000-000000000001".into(),
                currency: "USD".into(),
                usage_total: amount("5120.004"),
                azure_lines_total: amount("5120"),
                difference: amount("0.004"),
                allowed: amount("0.05"),
                azure_lines: 4,
            }],
            customers_truncated: false,
        }),
    };
    let ev = |check: &InvoiceCheck, ty: &str, suffix: &str| {
        let mut data = serde_json::to_value(check).unwrap();
        data["runId"] = serde_json::json!(recon);
        data["reconciliationRunId"] = serde_json::json!(recon);
        let id = match &check.azure_usage {
            Some(u) => format!("{}-{}-invoice-{suffix}", recon, u.usage_run_id),
            None => format!("{}-invoice-{suffix}", recon),
        };
        event(CloudEvent::new(SOURCE, ty, id, format!("invoices/{}/runs/{}", check.invoice_id, recon), data))
    };
    fixture("event-invoice-reconciled", &ev(&check, INVOICE_RECONCILED, "reconciled"));
    let mismatch = InvoiceCheck {
        verdict: Verdict::Mismatch,
        data_total: amount("12830.55"),
        difference: amount("-10"),
        other_currencies: vec![CustomerTotal { customer_id: "c0ffee00-0000-4000-8000-000000000003".into(), currency: "EUR".into(), total: amount("12.5") }],
        customers_truncated: true,
        azure_usage: None,
        ..check
    };
    fixture("event-invoice-mismatch", &ev(&mismatch, INVOICE_MISMATCH, "mismatch"));
}

fn plan_bodies() {
    use partner_billing_export::planner::{self, DiscoveryFailure, MissingInvoices, Plan, Planned, Skipped};
    fn plan_json(plan: &Plan) -> Value {
        let mut v = plan_json_of(plan);
        if !plan.partner.is_default() {
            v["partner"] = json!(plan.partner);
        }
        v
    }
    fn plan_json_of(plan: &Plan) -> Value {
        json!({
            "start": plan.requests.iter().map(planner::describe).collect::<Vec<_>>(),
            "skipped": plan.skipped,
            "notes": plan.notes,
            "invoicesMissing": plan.invoices_missing.as_ref().map(|m| json!({
                "billingMonth": m.month,
                "expectedBy": m.expected_by.to_string(),
            })),
            "discoveryFailure": plan.discovery_failure.as_ref().map(|f| json!({
                "billingMonth": format!("{}-{:02}", f.year, u8::from(f.month)),
                "reason": f.error.to_string(),
                "fix": f.hint(),
            })),
        })
    }
    let m: BillingMonth = "2026-10".parse().unwrap();
    let billed = |partner: &str| Plan {
        partner: partner.parse().unwrap(),
        requests: vec![Planned {
            request: ExportRequest::billed(ExportKind::BilledUsage, "G026100001".parse().unwrap(), AttributeSet::Full).unwrap().for_partner(partner.parse().unwrap()),
            billing_month: Some(m),
        }],
        skipped: vec![
            Skipped { billing_month: Some(m), what: "billedReconciliation invoice G026100001 (full)".into(), run_id: Some("20261109t060100-aa11bb22cc33".into()), reason: "already exported".into() },
            Skipped { billing_month: None, what: "unbilled".into(), run_id: None, reason: "not in EXPORT_KINDS".into() },
        ],
        notes: vec!["1 invoice of 2026-10 listed in Partner Center".into()],
        discovery_failure: None,
        invoices_missing: Some(MissingInvoices { month: "2026-11".parse().unwrap(), expected_by: date!(2026-12-12) }),
    };
    let unbilled = |partner: &str| Plan {
        partner: partner.parse().unwrap(),
        requests: vec![Planned {
            request: ExportRequest::unbilled(ExportKind::UnbilledUsage, BillingPeriod::Current, "USD".parse().unwrap(), AttributeSet::Full).unwrap().for_partner(partner.parse().unwrap()),
            billing_month: None,
        }],
        skipped: Vec::new(),
        notes: Vec::new(),
        discovery_failure: Some(DiscoveryFailure { year: 2026, month: time::Month::October, error: BillingError::Unavailable { attempts: 4, last: "503 Service Unavailable".into(), retry_after: None } }),
        invoices_missing: None,
    };
    let months = vec!["2026-08", "2026-09", "2026-10"];
    // One implicit partner.
    let mut b = plan_json(&billed("default"));
    b["billingMonths"] = json!(months);
    let mut u = plan_json(&unbilled("default"));
    u["billingMonths"] = json!(["2026-11"]);
    fixture("plan", &json!({ "asOf": "2026-11-09", "timers": { "StartBilledExports": b, "StartUnbilledExports": u } }));
    // Listed partners.
    let mut b = plan_json(&billed("contoso"));
    b["billingMonths"] = json!(months);
    fixture("plan-listed-partners", &json!({ "asOf": "2026-11-09", "timers": { "StartBilledExports": { "partners": { "contoso": b } } } }));
    // Backfill: a dry run of the implicit partner, and a started one of a listed partner.
    let mut body = plan_json(&billed("default"));
    body["from"] = json!(m);
    body["to"] = json!(m);
    body["dryRun"] = json!(true);
    fixture("backfill-dry-run", &body);
    let p = billed("contoso");
    let mut body = plan_json(&Plan { partner: PartnerId::default(), ..billed("contoso") });
    body["partners"] = json!(["contoso"]);
    body["discoveryFailures"] = json!([json!({
        "partner": "contoso",
        "billingMonth": "2026-09",
        "reason": "Graph did not answer successfully after 4 attempts: 503",
        "fix": "Partner Center did not answer; the next firing plans these billed exports again (or start them now with POST /api/exports)",
    })]);
    body["from"] = json!(m);
    body["to"] = json!(m);
    body["dryRun"] = json!(false);
    let mut started = Vec::new();
    for planned in &p.requests {
        let mut v = planner::describe(planned);
        v["outcome"] = json!("started");
        v["runId"] = json!("20261109t070000-0123456789ab");
        v["statusUrl"] = json!(format!("/api/exports/{}", "20261109t070000-0123456789ab"));
        started.push(v);
        let mut v = planner::describe(planned);
        v["outcome"] = json!("rejected");
        v["runId"] = json!("20261109t070001-0123456789ac");
        v["statusUrl"] = json!(format!("/api/exports/{}", "20261109t070001-0123456789ac"));
        v["reason"] = json!("Graph refused the export (400): invalid invoice");
        started.push(v);
        let mut v = planner::describe(planned);
        v["outcome"] = json!("error");
        v["reason"] = json!("Graph did not answer successfully after 4 attempts: 503");
        started.push(v);
    }
    body["start"] = json!(started);
    fixture("backfill-listed-partners", &body);
    fixture("backfill-request", &json!({"from": "2025-01", "to": "2025-06", "kinds": ["billedUsage", "billedReconciliation"], "partners": ["contoso"], "dryRun": true}));
}

fn cli_lines() {
    let run_id = "20261109t060000-4c1d2e3f4a5b";
    let export = "billedUsage G026100001";
    let mut lines = Vec::new();
    let elapsed = |mut v: Value, t: f64| { v["elapsed"] = json!(t); v };
    lines.push(elapsed(json!({
        "event": "plan",
        "exports": ["billedUsage invoice G026100001 (full)"],
        "graph": format!("{}{}", "https://graph.microsoft.com/", "v1.0"),
        "credential": "device code (you@contoso.com)",
        "output": "/data/out/partner-billing",
        "invoiceMonths": Some("2026-10"),
        "dryRun": false,
    }), 0.4));
    lines.push(elapsed(json!({"event": "planned", "export": export, "request": "billedUsage invoice G026100001 (full)", "action": "would start"}), 0.4));
    lines.push(elapsed(json!({"event": "note", "message": "1 invoice of 2026-10 listed in Partner Center"}), 0.5));
    lines.push(elapsed(json!({"event": "notStarted", "export": "billedReconciliation G026100001", "reason": "Graph refused the export"}), 0.9));
    lines.push(elapsed(json!({"event": "run", "runId": run_id, "export": export,
            "outcome": "started", "state": "polling",
            "partsDone": 0, "partsTotal": 0}), 1.2));
    lines.push(elapsed(json!({"event": "state", "runId": run_id, "export": export,
                    "state": "copying", "polls": 3, "partsDone": 1,
                    "partsTotal": 2, "bytes": 1000}), 30.1));
    lines.push(elapsed(json!({"event": "partDone", "runId": run_id, "export": export,
                "part": 1, "method": "serverSide", "bytes": 1001,
                "partsDone": 2, "partsTotal": 2}), 31.0));
    let mut st = json!({"event": "state", "runId": run_id, "export": export,
                    "state": "failed", "polls": 7, "partsDone": 0,
                    "partsTotal": 0, "bytes": 0});
    st["failure"] = json!({"code": "deadline", "message": "the operation was still running at the poll deadline"});
    lines.push(elapsed(st, 900.0));
    lines.push(elapsed(json!({"event": "gaveUp", "runId": run_id, "export": export, "reason": "the queue driver stopped after 10 deliveries"}), 901.5));
    let summary_run = |status: &str, failure: Option<Value>| json!({
        "runId": run_id,
        "export": export,
        "kind": "billedUsage",
        "scope": {"invoiceId": "G026100001"},
        "attributeSet": "full",
        "origin": "started",
        "status": status,
        "polls": 3,
        "files": 2,
        "partsDone": 2,
        "partsDoneBefore": 0,
        "partsCopied": 1,
        "partsSkipped": 1,
        "bytes": 2001,
        "rows": Some(81),
        "manifest": Some("/data/out/folder/_manifest.json"),
        "failure": failure,
        "gaveUp": Option::<String>::None,
    });
    let unbilled = json!({
        "runId": "20261109t061500-9a8b7c6d5e4f",
        "export": "unbilledUsage current USD",
        "kind": "unbilledUsage",
        "scope": {"billingPeriod": "current", "currencyCode": "USD"},
        "attributeSet": "basic",
        "origin": "resumed",
        "status": "gave up",
        "polls": 1,
        "files": 0,
        "partsDone": 0,
        "partsDoneBefore": 0,
        "partsCopied": 0,
        "partsSkipped": 0,
        "bytes": 0,
        "rows": Option::<u64>::None,
        "manifest": Option::<String>::None,
        "failure": json!({"code": "5000", "message": "No data available"}),
        "gaveUp": Some("the queue driver stopped after 10 deliveries"),
    });
    lines.push(json!({
        "event": "summary",
        "exitCode": 1,
        "interrupted": false,
        "runs": [summary_run("completed", None), unbilled],
        "partitions": 2,
        "partsCopied": 1,
        "partsAlreadyThere": 1,
        "bytes": 2001,
        "rows": 81,
        "seconds": 902.25,
        "output": "/data/out/partner-billing",
        "ledger": "/data/out/partner-billing/_ledger",
        "events": Some("/data/out/events.jsonl"),
        "hints": ["Graph had no data for the export (code 5000)"],
        "notStarted": [json!({"export": "billedReconciliation G026100001", "reason": "Graph refused the export"})],
    }));
    lines.push(json!({"event": "error", "message": "the partner list is not JSON", "exitCode": 2}));
    fixture("cli-json-lines", &Value::Array(lines));
}

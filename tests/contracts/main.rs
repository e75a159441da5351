//! Every public JSON contract (`src/contracts`) against its fixture in
//! `tests/fixtures/contracts/`: the value built from a realistic sample the way the product
//! builds it must serialise to the fixture, and the fixture must read back into the same value.
//! The fixtures were written by the code that built these bodies with `json!` before they were
//! types, so a test failing here means the JSON changed. To change a contract on purpose, run
//! with `UPDATE_CONTRACT_FIXTURES=1` and review the diff.
//!
//! Also checked: no product source outside `src/contracts` builds a contract with `json!`.

use std::path::Path;

use partner_billing_export::adapters::events::CloudEvent;
use partner_billing_export::adapters::filesystem::FilesystemDestination;
use partner_billing_export::adapters::storage::{CopyMethod, ObjectPath};
use partner_billing_export::billing::*;
use partner_billing_export::contracts::cli::*;
use partner_billing_export::contracts::events::*;
use partner_billing_export::contracts::notices::InvoicesMissingNotice;
use partner_billing_export::contracts::plan::*;
use partner_billing_export::contracts::status::{ListQuery, RunList, StartedRun};
use partner_billing_export::contracts::{Amount, EventType};
use partner_billing_export::functions::exports_http::list_query_string;
use partner_billing_export::pipeline::run::PartRecord;
use partner_billing_export::pipeline::{
    notify, status, Failure, FailureCode, RunRecord, RunState, Trigger,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::macros::{date, datetime};

/// `value` serialises to the fixture `name`, and the fixture reads back into `value`.
mod cli;

fn check<T>(name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/contracts/{name}.json"));
    let json = serde_json::to_value(value).unwrap();
    if std::env::var_os("UPDATE_CONTRACT_FIXTURES").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json,
        fixture,
        "{name}: the JSON differs from tests/fixtures/contracts/{name}.json\nnow: {}",
        serde_json::to_string_pretty(&json).unwrap()
    );
    let back: T = serde_json::from_value(fixture)
        .unwrap_or_else(|e| panic!("{name}: the fixture does not read back: {e}"));
    assert_eq!(&back, value, "{name}: read back differently");
}

/// An event with a fixed `time`; its payload must read back from `type` and `data`.
fn event(mut ev: CloudEvent) -> CloudEvent {
    ev.time = datetime!(2026-11-09 06:00:05 UTC);
    let payload = ev
        .payload()
        .unwrap_or_else(|e| panic!("{}: {e}", ev.event_type));
    assert_eq!(payload.event_type().as_str(), ev.event_type);
    assert_eq!(payload.to_data(), ev.data);
    ev
}

fn billed_run() -> RunRecord {
    let req = ExportRequest::billed(
        ExportKind::BilledUsage,
        "G026100001".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
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
    let folder =
        ObjectPath::new("partner-billing/billed-usage/202610/G026100001/full/v-0x8DDF3A1B2C3D4E5")
            .unwrap();
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
            method: Some(if i == 0 {
                CopyMethod::ServerSide
            } else {
                CopyMethod::Skipped
            }),
            parquet_bytes: None,
            // The first part held a value its decimal type rounded (docs/parquet.md).
            rounded_values: (i == 0).then_some(3),
        })
        .collect();
    r.output_folder = Some(folder);
    r.state = RunState::Completed;
    r.finished_at = Some(datetime!(2026-11-09 06:07:30 UTC));
    r.updated_at = datetime!(2026-11-09 06:07:30 UTC);
    r
}

fn listed_unbilled() -> RunRecord {
    let req = ExportRequest::unbilled(
        ExportKind::UnbilledReconciliation,
        BillingPeriod::Current,
        "EUR".parse().unwrap(),
        AttributeSet::Basic,
    )
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
    r.output_folder = Some(
        ObjectPath::new("csp/contoso/unbilled-reconciliation/202611/EUR/basic/no-data").unwrap(),
    );
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

fn contoso() -> PartnerId {
    "contoso".parse().unwrap()
}

#[test]
fn run_events() {
    check(
        "event-export-started",
        &event(notify::started(SOURCE, &billed_run())),
    );
    check(
        "event-export-started-listed-partner",
        &event(notify::started(SOURCE, &polling(listed_unbilled()))),
    );
    check(
        "event-export-completed",
        &event(notify::completed(
            SOURCE,
            &completed(billed_run()),
            "/data/out/folder",
            "/data/out/folder/_manifest.json",
            Some("/data/out/_current.json"),
            None,
        )),
    );
    check(
        "event-export-completed-no-data-listed-partner",
        &event(notify::completed(
            SOURCE,
            &no_data(listed_unbilled()),
            "/data/out/no-data",
            "/data/out/no-data/_manifest.json",
            None,
            Some(
                partner_billing_export::contracts::events::RetentionOutcome {
                    versions_deleted: 1,
                    files_deleted: 7,
                    versions_kept: 2,
                    error: None,
                },
            ),
        )),
    );
    check(
        "event-export-failed",
        &event(notify::failed(SOURCE, &failed(billed_run()))),
    );
}

#[test]
fn planning_events() {
    let discovery = |partner: &PartnerId| {
        event(notify::invoice_discovery_failed(
            SOURCE,
            partner,
            "2026-10",
            date!(2026 - 11 - 09),
            "Partner Center refused the request (401)",
            "register the app in Partner Center",
        ))
    };
    check(
        "event-invoice-discovery-failed",
        &discovery(&PartnerId::default()),
    );
    check(
        "event-invoice-discovery-failed-listed-partner",
        &discovery(&contoso()),
    );
    check(
        "event-exports-not-started",
        &event(notify::exports_not_started(
            SOURCE,
            &contoso(),
            "billed",
            date!(2026 - 11 - 09),
            2,
            "the credential failed",
        )),
    );
    let missing = |partner: &PartnerId| {
        event(notify::invoices_missing(
            SOURCE,
            partner,
            "2026-10",
            date!(2026 - 11 - 12),
            date!(2026 - 11 - 13),
        ))
    };
    check("event-invoices-missing", &missing(&PartnerId::default()));
    check(
        "event-invoices-missing-listed-partner",
        &missing(&contoso()),
    );
    let refused = ExportRequest::billed(
        ExportKind::BilledUsage,
        "G026100009".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap()
    .for_partner(contoso());
    check(
        "event-export-abandoned",
        &event(notify::export_abandoned(
            SOURCE,
            &refused,
            &"20261110t063000-0a1b2c3d4e5f".parse().unwrap(),
            3,
            "Graph refused the request (400 BadRequest): Invoice G026100009 cannot be exported.",
        )),
    );
}

#[test]
fn event_types_keep_their_names() {
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "PartnerBillingExport.ExportStarted.v1",
            "PartnerBillingExport.ExportCompleted.v1",
            "PartnerBillingExport.ExportFailed.v1",
            "PartnerBillingExport.InvoiceDiscoveryFailed.v1",
            "PartnerBillingExport.InvoiceReconciled.v1",
            "PartnerBillingExport.InvoiceMismatch.v1",
            "PartnerBillingExport.InvoicesMissing.v1",
            "PartnerBillingExport.ExportsNotStarted.v1",
            "PartnerBillingExport.ExportAbandoned.v1",
        ]
    );
    for t in EventType::ALL {
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
}

fn amount(s: &str) -> Amount {
    s.parse().unwrap()
}

#[test]
fn invoice_events() {
    let recon = "20261109t060100-aa11bb22cc33";
    let check_made = InvoiceCheck {
        verdict: Verdict::Reconciled,
        invoice_id: "G026100001".into(),
        currency: "USD".into(),
        invoice_total: amount("12840.55"),
        data_total: amount("12840.55"),
        difference: amount("0"),
        tolerance: amount("0.01"),
        other_currencies: Vec::new(),
        customers: vec![
            CustomerTotal {
                customer_id: "c0ffee00-0000-4000-8000-000000000001".into(),
                currency: "USD".into(),
                total: amount("10000.5"),
            },
            CustomerTotal {
                customer_id: "c0ffee00-0000-4000-8000-000000000002".into(),
                currency: "USD".into(),
                total: amount("2840.05"),
            },
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
    let ev = |check: &InvoiceCheck, suffix: &str| {
        let id = match &check.azure_usage {
            Some(u) => format!("{recon}-{}-invoice-{suffix}", u.usage_run_id),
            None => format!("{recon}-invoice-{suffix}"),
        };
        let data = InvoiceChecked {
            run_id: recon.into(),
            reconciliation_run_id: recon.into(),
            check: check.clone(),
        };
        let payload = match check.verdict {
            Verdict::Reconciled => EventData::InvoiceReconciled(data),
            Verdict::Mismatch => EventData::InvoiceMismatch(data),
        };
        event(CloudEvent::of(
            SOURCE,
            id,
            format!("invoices/{}/runs/{recon}", check.invoice_id),
            &payload,
        ))
    };
    check("event-invoice-reconciled", &ev(&check_made, "reconciled"));
    let mismatch = InvoiceCheck {
        verdict: Verdict::Mismatch,
        data_total: amount("12830.55"),
        difference: amount("-10"),
        other_currencies: vec![CustomerTotal {
            customer_id: "c0ffee00-0000-4000-8000-000000000003".into(),
            currency: "EUR".into(),
            total: amount("12.5"),
        }],
        customers_truncated: true,
        azure_usage: None,
        ..check_made
    };
    check("event-invoice-mismatch", &ev(&mismatch, "mismatch"));
}

fn dest() -> FilesystemDestination {
    FilesystemDestination::new("/data/out", reqwest::Client::new())
}

#[test]
fn status_of_one_run() {
    let dest = dest();
    check(
        "status-run-polling",
        &status::view(&polling(listed_unbilled()), &dest),
    );
    check(
        "status-run-completed",
        &status::view(&completed(billed_run()), &dest),
    );
    check(
        "status-run-no-data",
        &status::view(&no_data(listed_unbilled()), &dest),
    );
    check(
        "status-run-failed",
        &status::view(&failed(billed_run()), &dest),
    );
    let run = polling(listed_unbilled());
    check(
        "status-started",
        &StartedRun {
            run: status::view(&run, &dest),
            status_url: format!("/api/exports/{}", run.run_id),
            duplicate: false,
        },
    );
}

#[test]
fn status_list_with_next_page() {
    let runs = vec![
        polling(listed_unbilled()),
        completed(billed_run()),
        failed(billed_run()),
    ];
    let query = ListQuery {
        limit: 2,
        ..ListQuery::default()
    };
    let page = status::page(&query, &runs);
    check(
        "status-list",
        &RunList {
            runs: page.runs,
            total: page.total,
            offset: query.offset,
            limit: query.limit,
            next: page
                .next
                .map(|q| format!("/api/exports?{}", list_query_string(&q))),
        },
    );
}

#[test]
fn invoices_missing_notice() {
    check(
        "notice-invoices-missing",
        &InvoicesMissingNotice {
            checked_on: date!(2026 - 11 - 13),
            published: false,
        },
    );
}

fn month(s: &str) -> BillingMonth {
    s.parse().unwrap()
}

fn planned_billed(partner: &PartnerId) -> PlannedExport {
    let request = ExportRequest::billed(
        ExportKind::BilledUsage,
        "G026100001".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap()
    .for_partner(partner.clone());
    PlannedExport::of(&request, Some(month("2026-10")))
}

fn billed_plan(partner: &PartnerId) -> TimerPlan {
    TimerPlan {
        start: vec![planned_billed(partner)],
        skipped: vec![
            SkippedExport {
                billing_month: Some(month("2026-10")),
                what: "billedReconciliation invoice G026100001 (full)".into(),
                run_id: Some("20261109t060100-aa11bb22cc33".into()),
                reason: "already exported".into(),
            },
            SkippedExport {
                billing_month: None,
                what: "unbilled".into(),
                run_id: None,
                reason: "not in EXPORT_KINDS".into(),
            },
        ],
        notes: vec!["1 invoice of 2026-10 listed in Partner Center".into()],
        invoices_missing: Some(InvoicesMissingNote {
            billing_month: month("2026-11"),
            expected_by: date!(2026 - 12 - 12),
        }),
        discovery_failure: None,
        partner: partner.listed().cloned(),
        billing_months: Some(vec![month("2026-08"), month("2026-09"), month("2026-10")]),
    }
}

const UNAVAILABLE_FIX: &str = "Partner Center did not answer; the next firing plans these billed exports again (or start them now with POST /api/exports)";

#[test]
fn plan_bodies() {
    let request = ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "USD".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
    let unbilled = TimerPlan {
        start: vec![PlannedExport::of(&request, None)],
        skipped: Vec::new(),
        notes: Vec::new(),
        invoices_missing: None,
        discovery_failure: Some(DiscoveryFailureNote {
            partner: None,
            billing_month: "2026-10".into(),
            reason: "Graph did not answer successfully after 4 attempts: 503 Service Unavailable"
                .into(),
            fix: UNAVAILABLE_FIX.into(),
        }),
        partner: None,
        billing_months: Some(vec![month("2026-11")]),
    };
    check(
        "plan",
        &PlanBody {
            as_of: date!(2026 - 11 - 09),
            timers: [
                (
                    "StartBilledExports".to_string(),
                    TimerPlans::Single(Box::new(billed_plan(&PartnerId::default()))),
                ),
                (
                    "StartUnbilledExports".to_string(),
                    TimerPlans::Single(Box::new(unbilled)),
                ),
            ]
            .into(),
        },
    );
    check(
        "plan-listed-partners",
        &PlanBody {
            as_of: date!(2026 - 11 - 09),
            timers: [(
                "StartBilledExports".to_string(),
                TimerPlans::Partners {
                    partners: [(contoso(), billed_plan(&contoso()))].into(),
                },
            )]
            .into(),
        },
    );
}

#[test]
fn backfill_bodies() {
    check(
        "backfill-dry-run",
        &BackfillBody {
            plan: TimerPlan {
                billing_months: None,
                ..billed_plan(&PartnerId::default())
            },
            from: month("2026-10"),
            to: month("2026-10"),
            dry_run: true,
            partners: None,
            discovery_failures: None,
        },
    );
    let outcome = |outcome, run_id: Option<&str>, reason: Option<&str>| PlannedExport {
        outcome: Some(outcome),
        run_id: run_id.map(str::to_string),
        status_url: run_id.map(|r| format!("/api/exports/{r}")),
        reason: reason.map(str::to_string),
        ..planned_billed(&contoso())
    };
    check(
        "backfill-listed-partners",
        &BackfillBody {
            plan: TimerPlan {
                start: vec![
                    outcome(
                        BackfillOutcome::Started,
                        Some("20261109t070000-0123456789ab"),
                        None,
                    ),
                    outcome(
                        BackfillOutcome::Rejected,
                        Some("20261109t070001-0123456789ac"),
                        Some("Graph refused the export (400): invalid invoice"),
                    ),
                    outcome(
                        BackfillOutcome::Error,
                        None,
                        Some("Graph did not answer successfully after 4 attempts: 503"),
                    ),
                ],
                partner: None,
                billing_months: None,
                ..billed_plan(&contoso())
            },
            from: month("2026-10"),
            to: month("2026-10"),
            dry_run: false,
            partners: Some(vec![contoso()]),
            discovery_failures: Some(vec![DiscoveryFailureNote {
                partner: Some(contoso()),
                billing_month: "2026-09".into(),
                reason: "Graph did not answer successfully after 4 attempts: 503".into(),
                fix: UNAVAILABLE_FIX.into(),
            }]),
        },
    );
}

#[test]
fn backfill_request() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/contracts/backfill-request.json"),
    )
    .unwrap();
    let parsed = BackfillRequest::parse(Some(&text)).unwrap();
    check("backfill-request", &parsed);
    assert_eq!(parsed.kinds.as_ref().map(Vec::len), Some(2));
    for (body, field) in [
        ("", "body"),
        ("[]", "body"),
        ("{", "body"),
        (r#"{"to": "2025-01"}"#, "from"),
        (r#"{"from": "2025-13"}"#, "from"),
        (r#"{"from": 202501}"#, "from"),
        (r#"{"from": "2025-01", "kinds": ["usage"]}"#, "kinds"),
        (r#"{"from": "2025-01", "kinds": "billedUsage"}"#, "kinds"),
        (r#"{"from": "2025-01", "partners": []}"#, "partners"),
        (r#"{"from": "2025-01", "partners": ["a/b"]}"#, "partners"),
        (r#"{"from": "2025-01", "dryRun": "yes"}"#, "dryRun"),
        (r#"{"from": "2025-01", "partner": "x"}"#, "body"),
    ] {
        let e = BackfillRequest::parse(Some(body)).unwrap_err();
        assert_eq!(e.field, field, "{body}: {e}");
    }
    let kebab =
        BackfillRequest::parse(Some(r#"{"from": "2025-01", "kinds": ["billed-usage"]}"#)).unwrap();
    assert_eq!(kebab.kinds, Some(vec![ExportKind::BilledUsage]));
    assert_eq!(kebab.to, Some(kebab.from));
}

/// Product files that may use `json!` outside their tests, and why: none of them builds one of
/// our contracts.
const JSON_MACRO_ALLOWED: &[(&str, &str)] = &[
    (
        "src/billing/types.rs",
        "the Graph export request body: a wire request to Microsoft",
    ),
    (
        "src/adapters/certificate.rs",
        "a client assertion's JWT header and claims: a wire request to Entra ID",
    ),
    (
        "src/pipeline/service/hubs.rs",
        "the `manifest.json` of FinOps hubs' ingestion container: their format",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_contract_is_built_with_json_macro() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("src/contracts/")
            || JSON_MACRO_ALLOWED
                .iter()
                .any(|(allowed, _)| *allowed == rel)
        {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests sit at the end of a file behind `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, l) in code.lines().enumerate() {
            if l.contains("json!(") && !l.trim_start().starts_with("//") {
                found.push(format!("{rel}:{}: {}", n + 1, l.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "build these with a type in src/contracts instead of json!: {found:#?}"
    );
}

//! FinOps hubs' ingestion rules played against our ingestion container after daily unbilled
//! runs across a month boundary and the month's billed runs, for two partners whose invoices
//! carry a reservation purchase: hubs ingests every `.parquet` of a folder with a
//! `manifest.json` (only the files present: each landing replaces its folder), keeps the
//! columns of its `Costs_raw` mapping (tests/fixtures/hubs), and the result is read with
//! DuckDB. Each charge must count once: Σ BilledCost per invoice and per month is the
//! invoices' amount, and an invoiced month keeps no unbilled row.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::app::{App, PartnerTokens};
use partner_billing_export::auth::TokenSource;
use partner_billing_export::billing::{ExportKind, ExportScope};
use partner_billing_export::functions::start_exports;
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{SandboxClock, SandboxConfig, SandboxPartner};
use partner_billing_local::tokens::partner_token_source;
use serde_json::Value;
use test_support::clock::ManualClock;
use test_support::{duckdb, fast_sandbox, fixtures, TestBed};
use time::macros::{date, time};
use time::{Date, OffsetDateTime};

const PARTNERS: [(&str, (&str, &str)); 2] = [("contoso", ("USD", "$")), ("fabrikam", ("EUR", "€"))];

/// Contoso (USD) and Fabrikam (EUR), each with two October 2025 invoices published on
/// 8 November; reconciliation ends with a reservation purchase. Simulated days lie in the past:
/// the Service Bus stand-in delivers scheduled polls by the wall clock.
async fn start(first: Date) -> (TestBed, Arc<App>, SandboxClock, ManualClock) {
    let clock = SandboxClock::new(first);
    let partners: Vec<SandboxPartner> = PARTNERS
        .iter()
        .map(|(id, ccy)| {
            SandboxPartner::new(id, first, *ccy).with_invoices_for_months(&[date!(2025 - 10 - 01)])
        })
        .collect();
    let setting: Vec<String> = partners
        .iter()
        .map(|p| {
            format!(
                r#"{{"id": "{}", "tenantId": "{}", "credential": {{"kind": "managed-identity"}}}}"#,
                p.id, p.tenant_id
            )
        })
        .collect();
    let setting = format!(r#"{{"partners": [{}]}}"#, setting.join(", "));
    let sandbox = SandboxConfig {
        seed: 20,
        clock: Some(clock.clone()),
        today: Some(first),
        partners,
        reservation_purchases: true,
        ..fast_sandbox()
    };
    let bed = TestBed::start(
        sandbox,
        &[
            ("PARTNERS", setting.as_str()),
            ("OUTPUT_FORMATS", "jsonl.gz,parquet"),
            ("HUBS_INGESTION_CONTAINER", "ingestion"),
        ],
    )
    .await;
    let pipeline_clock = ManualClock::new(OffsetDateTime::new_utc(first, time!(05:00)));
    let tokens: PartnerTokens = PARTNERS
        .iter()
        .map(|(p, _)| {
            (
                p.parse().unwrap(),
                Arc::new(partner_token_source(p)) as Arc<dyn TokenSource>,
            )
        })
        .collect();
    let (bed, app) = bed.with_partner_tokens_on(tokens, Some(Arc::new(pipeline_clock.clone())));
    (bed, app, clock, pipeline_clock)
}

async fn fire(bed: &TestBed, group: KindGroup, day: Date, at: time::Time) {
    let timer = TimerInfo {
        is_past_due: false,
        schedule_status: None,
    };
    start_exports::run(&bed.app, timer, OffsetDateTime::new_utc(day, at), group)
        .await
        .unwrap_or_else(|e| panic!("{group:?} firing on {day}: {}", e.message));
}

/// A hubs folder as hubs sees it: its manifest and the `.parquet` files in it now.
struct Folder {
    manifest: Value,
    files: Vec<String>,
}

/// Every folder of `ingestion/Costs` with a `manifest.json` (hubs ingests nothing else).
fn hubs_folders(root: &Path) -> BTreeMap<String, Folder> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join("ingestion/Costs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut files = Vec::new();
        let mut manifest = None;
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if rel.ends_with("/manifest.json") {
                manifest = Some(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
            } else if rel.ends_with(".parquet") {
                files.push(rel);
            }
        }
        if let Some(manifest) = manifest {
            files.sort();
            let rel = d.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, Folder { manifest, files });
        }
    }
    out
}

/// The `Costs_raw` rows of `folders`: every file, the columns hubs maps, and the folder's
/// `yyyy/mm` and partner tenant (from the path), as a DuckDB subquery.
fn costs_raw(root: &Path, folders: &BTreeMap<String, Folder>) -> String {
    let files: Vec<String> = folders
        .values()
        .flat_map(|f| f.files.iter().map(|p| format!("'{p}'")))
        .collect();
    assert!(!files.is_empty(), "nothing to ingest");
    let source = format!(
        "read_parquet([{}], union_by_name = true, filename = true)",
        files.join(", ")
    );
    let present: BTreeSet<String> = duckdb::rows(
        root,
        &format!("SELECT column_name FROM (DESCRIBE SELECT * FROM {source})"),
    )
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect();
    let mapped: Vec<String> = fixtures::text("hubs/costs_raw_columns.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|c| present.contains(*c))
        .map(|c| format!("\"{c}\""))
        .collect();
    assert!(mapped.len() > 20, "{mapped:?}");
    format!(
        "(SELECT {}, split_part(filename, '/', 3) || split_part(filename, '/', 4) AS month, \
         split_part(filename, '/', 6) AS tenant FROM {source})",
        mapped.join(", ")
    )
}

/// Replacement: every file of a folder carries its manifest's ingestion id and is listed by it.
fn check_replaced(folders: &BTreeMap<String, Folder>) {
    for (dir, f) in folders {
        let id = f.manifest["ingestionId"].as_str().unwrap();
        let listed: BTreeSet<String> = f.manifest["files"]
            .as_object()
            .unwrap()
            .keys()
            .map(|n| format!("{dir}/{n}"))
            .collect();
        let present: BTreeSet<String> = f.files.iter().cloned().collect();
        assert_eq!(listed, present, "{dir}: only the latest landing's files");
        assert!(
            f.files.iter().all(|p| p.contains(&format!("/{id}__"))),
            "{dir}: {:?}",
            f.files
        );
    }
}

/// Σ of a decimal text, as an exact value × 10^6 (every amount here has at most 6 places).
fn micros(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let neg = int.starts_with('-');
    let mut frac = frac.to_string();
    frac.truncate(6);
    while frac.len() < 6 {
        frac.push('0');
    }
    let v = int.trim_start_matches('-').parse::<i128>().unwrap() * 1_000_000
        + frac.parse::<i128>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}

fn json_amount(v: Option<&Value>) -> i128 {
    match v {
        Some(Value::Number(n)) => micros(&format!("{:.6}", n.as_f64().unwrap())),
        Some(Value::String(s)) if !s.is_empty() => micros(s),
        _ => 0,
    }
}

/// What each invoice must add up to in hubs, per invoice id: (partner tenant, amount,
/// allowance). The amount is the invoice's `totalCharges`, tax included (FOCUS Tax rows);
/// the allowance is the invoice check's for billed usage against the invoice's Azure lines.
async fn expected(bed: &TestBed, app: &App) -> BTreeMap<String, (String, i128, i128)> {
    let mut checked: BTreeMap<String, Value> = BTreeMap::new();
    for e in bed.events_of_type("InvoiceReconciled") {
        let d = e["data"].clone();
        if d["azureUsage"].is_object() {
            checked.insert(d["invoiceId"].as_str().unwrap().to_string(), d);
        }
    }
    let runs = app.pipeline.ledger().list(usize::MAX).await.unwrap();
    let mut out = BTreeMap::new();
    for (invoice, d) in &checked {
        let recon = runs
            .iter()
            .filter(|r| r.request.kind == ExportKind::BilledReconciliation)
            .find(|r| {
                matches!(&r.request.scope, ExportScope::Invoice { invoice_id } if invoice_id.as_str() == invoice)
            })
            .unwrap_or_else(|| panic!("reconciliation of {invoice}"));
        let total = micros(d["invoiceTotal"].as_str().unwrap());
        let allowed: i128 = d["azureUsage"]["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| micros(c["allowed"].as_str().unwrap()))
            .sum();
        let tenant = recon.manifest.as_ref().unwrap().partner_tenant_id.clone();
        out.insert(invoice.clone(), (tenant, total, allowed));
    }
    out
}

/// Σ `Subtotal` + `TaxTotal` and the row count of a run's files as Microsoft wrote them.
fn raw_total(
    files: &BTreeMap<String, Vec<u8>>,
    run: &partner_billing_export::pipeline::RunRecord,
) -> (i128, i128) {
    let (mut subtotal, mut rows) = (0i128, 0i128);
    for p in &run.parts {
        let (_, gz) = files
            .iter()
            .find(|(k, _)| k.ends_with(p.dest.as_str()))
            .unwrap_or_else(|| panic!("{}", p.dest));
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let row: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
            subtotal += json_amount(row.get("Subtotal")) + json_amount(row.get("TaxTotal"));
            rows += 1;
        }
    }
    (subtotal, rows)
}

/// A month not invoiced: per partner, Σ BilledCost is the newest unbilled reconciliation's
/// Σ `Subtotal` + `TaxTotal` (its Azure lines' charges replaced by the usage they total, their
/// tax kept as Tax rows), within a few cents per
/// line of Microsoft's rounding; counting the Azure consumption twice would be off by
/// thousands.
async fn check_unbilled_month(bed: &TestBed, app: &App, root: &Path, costs: &str) {
    let files = bed.output_files();
    let got = duckdb::rows(
        root,
        &format!(
            "SELECT tenant, sum(BilledCost)::DECIMAL(38, 6)::VARCHAR FROM {costs} \
             WHERE month = '202511' GROUP BY tenant ORDER BY tenant"
        ),
    );
    assert_eq!(got.len(), 2, "{got:?}");
    for (dir, f) in hubs_folders(root)
        .iter()
        .filter(|(k, _)| k.starts_with("ingestion/Costs/2025/11/"))
    {
        let tenant = dir.rsplit('/').next().unwrap();
        let (mut want, mut lines) = (0, 0);
        for (label, run) in f.manifest["runs"].as_object().unwrap() {
            if label.ends_with("-charges") {
                let id = run.as_str().unwrap().parse().unwrap();
                let run = app.pipeline.ledger().get(&id).await.unwrap().unwrap();
                let (subtotal, rows) = raw_total(&files, &run);
                want += subtotal;
                lines += rows;
            }
        }
        let have = got
            .iter()
            .find(|r| r[0].as_deref() == Some(tenant))
            .unwrap();
        let diff = (micros(have[1].as_deref().unwrap()) - want).abs();
        assert!(diff <= lines * 30_000, "{tenant}: {have:?} against {want}");
    }
}

#[tokio::test]
async fn hubs_counts_each_charge_once_across_daily_unbilled_runs_and_the_invoiced_month() {
    let first = date!(2025 - 10 - 27);
    let (bed, app, clock, pipeline_clock) = start(first).await;
    let root = bed.dir.path();
    let mut day = first;
    while day <= date!(2025 - 11 - 10) {
        clock.set(day);
        pipeline_clock.set(OffsetDateTime::new_utc(day, time!(05:00)));
        fire(&bed, KindGroup::Unbilled, day, time!(05:00)).await;
        pipeline_clock.set(OffsetDateTime::new_utc(day, time!(06:30)));
        fire(&bed, KindGroup::Billed, day, time!(06:30)).await;
        bed.drain(Duration::from_secs(60)).await;

        let folders = hubs_folders(root);
        check_replaced(&folders);
        if day == date!(2025 - 11 - 07) {
            // Before the invoices: October and November hold the newest unbilled runs only.
            let months: BTreeSet<&str> = folders.keys().map(|k| &k[16..23]).collect();
            assert_eq!(
                months,
                BTreeSet::from(["2025/10", "2025/11"]),
                "{:?}",
                folders.keys()
            );
            for (dir, f) in &folders {
                let runs = f.manifest["runs"].as_object().unwrap();
                let labels: Vec<&str> = runs.keys().map(|l| l.as_str()).collect();
                assert!(
                    labels.len() == 2
                        && labels[0].starts_with("unbilled-")
                        && labels[0].ends_with("-charges")
                        && labels[1].ends_with("-usage"),
                    "{dir}: one currency's newest unbilled usage and charges: {runs:?}"
                );
            }
            let costs = costs_raw(root, &folders);
            let billed = duckdb::rows(
                root,
                &format!("SELECT count(*) FROM {costs} WHERE coalesce(InvoiceId, '') <> ''"),
            );
            assert_eq!(billed[0][0].as_deref(), Some("0"));
        }
        day = day.next_day().unwrap();
    }

    check_invoiced_month(&bed, &app, root).await;
    crash_between_delete_and_manifest_converges(&bed, &app, root).await;
}

/// A landing cut short after the folder was deleted and before its manifest: some files
/// written, one missing, a leftover of an older landing, the month's lease still held by the
/// crashed run and its follow-up pending. The watchdog's retry of that run's follow-up lands
/// the folder whole again, and the totals still hold.
async fn crash_between_delete_and_manifest_converges(bed: &TestBed, app: &App, root: &Path) {
    use partner_billing_export::contracts::run::{FollowUp, FollowUpState};
    use partner_billing_export::pipeline::hubs::HubsLease;
    use partner_billing_export::pipeline::{RunId, RunState};

    let folders = hubs_folders(root);
    let (dir, folder) = folders
        .iter()
        .find(|(k, _)| k.starts_with("ingestion/Costs/2025/10/"))
        .unwrap();
    let tenant = dir.rsplit('/').next().unwrap();
    let (_, charges) = folder.manifest["runs"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(label, _)| label.ends_with("-charges"))
        .unwrap();
    let crashed: RunId = charges.as_str().unwrap().parse().unwrap();
    let now = app.pipeline.now();
    app.pipeline
        .ledger()
        .update_hubs_month(tenant, "202510", |d| {
            d.landed = Some("pbe-older".into());
            d.lease = Some(HubsLease {
                holder: crashed.to_string(),
                until: now + time::Duration::hours(1),
            });
            (true, ())
        })
        .await
        .unwrap();
    std::fs::remove_file(root.join(dir).join("manifest.json")).unwrap();
    std::fs::remove_file(root.join(&folder.files[0])).unwrap();
    std::fs::write(root.join(dir).join("pbe-older__stale.parquet"), b"PAR1").unwrap();
    app.pipeline
        .ledger()
        .update(&crashed, |r| {
            r.follow_up = Some(FollowUp {
                state: FollowUpState::Pending,
                attempts: 1,
                next_attempt_at: Some(now),
                error: None,
            });
            Some(())
        })
        .await
        .unwrap();
    assert!(
        !hubs_folders(root).contains_key(dir.as_str()),
        "no manifest: hubs ingests nothing from the cut-short folder"
    );

    let report = app
        .pipeline
        .watchdog_at(now + time::Duration::minutes(1))
        .await
        .unwrap();
    let run = app.pipeline.ledger().get(&crashed).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Completed);
    assert_eq!(
        run.follow_up.as_ref().map(|f| f.state),
        Some(FollowUpState::Done),
        "{report:?}"
    );
    let again = hubs_folders(root);
    check_replaced(&again);
    assert_eq!(
        again[dir.as_str()].files,
        folder.files,
        "the same landing, whole"
    );
    check_invoiced_month(bed, app, root).await;
}

/// At the end: one folder per partner and month; October invoiced and adding up, November
/// unbilled.
async fn check_invoiced_month(bed: &TestBed, app: &App, root: &Path) {
    let folders = hubs_folders(root);
    let tenants: BTreeSet<String> = folders
        .keys()
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(tenants.len(), 2, "two partners: {:?}", folders.keys());
    assert_eq!(
        folders.len(),
        4,
        "one folder per partner and month: {:?}",
        folders.keys()
    );
    let costs = costs_raw(root, &folders);

    // An invoiced month keeps no unbilled row; a month not invoiced holds unbilled rows only.
    let by_month = duckdb::rows(
        root,
        &format!(
            "SELECT month, count(*) FILTER (WHERE coalesce(InvoiceId, '') = ''), \
             count(*) FILTER (WHERE coalesce(InvoiceId, '') <> '') FROM {costs} GROUP BY month ORDER BY month"
        ),
    );
    assert_eq!(by_month.len(), 2, "{by_month:?}");
    assert_eq!(by_month[0][0].as_deref(), Some("202510"));
    assert_eq!(
        by_month[0][1].as_deref(),
        Some("0"),
        "no unbilled row left in October: {by_month:?}"
    );
    assert_eq!(
        by_month[1][2].as_deref(),
        Some("0"),
        "November is unbilled: {by_month:?}"
    );

    let taxed = duckdb::rows(
        root,
        &format!("SELECT count(*) FROM {costs} WHERE ChargeCategory = 'Tax'"),
    );
    // The invoices' tax reaches hubs as Tax rows, that of the Azure lines included.
    assert_ne!(taxed[0][0].as_deref(), Some("0"), "Tax rows in hubs");
    let want = expected(bed, app).await;
    assert_eq!(
        want.len(),
        4,
        "two invoices per partner, each checked: {want:?}"
    );

    // Σ BilledCost per invoice: the invoice's amount, within the invoice check's allowance.
    let got: BTreeMap<String, i128> = duckdb::rows(
        root,
        &format!(
            "SELECT InvoiceId, sum(BilledCost)::DECIMAL(38, 6)::VARCHAR FROM {costs} \
             WHERE month = '202510' GROUP BY InvoiceId"
        ),
    )
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), micros(r[1].as_deref().unwrap())))
    .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "every invoice, nothing else"
    );
    for (invoice, (_, amount, allowed)) in &want {
        let diff = (got[invoice] - amount).abs();
        assert!(
            diff <= *allowed,
            "{invoice}: hubs {} against {amount} (allowed {allowed})",
            got[invoice]
        );
    }

    // Per partner, the month adds up the same way.
    let per_tenant = duckdb::rows(
        root,
        &format!(
            "SELECT tenant, sum(BilledCost)::DECIMAL(38, 6)::VARCHAR FROM {costs} \
             WHERE month = '202510' GROUP BY tenant"
        ),
    );
    for r in &per_tenant {
        let tenant = r[0].as_deref().unwrap();
        let (amount, allowed) = want
            .values()
            .filter(|(t, _, _)| t == tenant)
            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y));
        let diff = (micros(r[1].as_deref().unwrap()) - amount).abs();
        assert!(diff <= allowed, "{tenant}: {r:?} against {amount}");
    }

    check_sources(root, &costs);
    check_unbilled_month(bed, app, root, &costs).await;

    // The reservation purchase of each invoice is there, once.
    let reservations = duckdb::rows(
        root,
        &format!(
            "SELECT InvoiceId, count(*) FROM {costs} WHERE month = '202510' AND SkuId LIKE '%/02RX' \
             GROUP BY InvoiceId ORDER BY InvoiceId"
        ),
    );
    assert_eq!(reservations.len(), 4, "{reservations:?}");
    assert!(
        reservations.iter().all(|r| r[1].as_deref() == Some("1")),
        "{reservations:?}"
    );
}

/// Where the FOCUS view names its source, every row of the invoiced month says which export it
/// came from, and usage and invoice lines are told apart.
fn check_sources(root: &Path, costs: &str) {
    let named = duckdb::rows(
        root,
        &format!("SELECT count(*) FROM (DESCRIBE SELECT * FROM {costs}) WHERE column_name = 'x_SourceType'"),
    );
    if named[0][0].as_deref() == Some("1") {
        let kinds = duckdb::rows(
            root,
            &format!(
                "SELECT count(DISTINCT x_SourceType), count(*) FILTER (WHERE coalesce(x_SourceType, '') = '' \
                 OR coalesce(x_SourceName, '') = '') FROM {costs} WHERE month = '202510'"
            ),
        );
        assert_eq!(
            kinds[0][0].as_deref(),
            Some("2"),
            "usage and invoice lines: {kinds:?}"
        );
        assert_eq!(kinds[0][1].as_deref(), Some("0"), "{kinds:?}");
    }
}

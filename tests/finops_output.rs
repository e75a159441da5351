//! FinOps-ready output (`OUTPUT_FORMATS=jsonl.gz,parquet`): typed Parquet and a FOCUS view for
//! every partition, read back by DuckDB (not our code) and compared with the JSON source; the
//! invoice check against Partner Center's invoice totals; the FinOps hubs landing, withheld
//! for an invoice that does not balance.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

#[path = "../crates/billing-columnar/tests/support/focus_validator.rs"]
mod focus_validator;

use billing_columnar::{AttributeSet, ColumnType, Dataset, Schema};
use functions_runtime::TimerInfo;
use partner_billing_export::functions::start_exports;
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{default_invoices, SandboxConfig};
use serde_json::Value;
use test_support::{duckdb, fast_sandbox, TestBed};
use time::macros::{date, time};
use time::OffsetDateTime;

/// `-12.5`, `3e-2` as value × 10^18, parsed here so the comparison does not use our parser.
fn scaled(text: &str) -> i128 {
    let (mant, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().unwrap()),
        None => (text, 0),
    };
    let neg = mant.starts_with('-');
    let (int, frac) = mant
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((mant.trim_start_matches('-'), ""));
    let mut v: i128 = format!("{int}{frac}").parse().unwrap();
    let shift = 18 - frac.len() as i32 + exp;
    for _ in 0..shift.max(0) {
        v *= 10;
    }
    for _ in shift.min(0)..0 {
        v /= 10;
    }
    if neg {
        -v
    } else {
        v
    }
}

fn json_rows(gz: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn amount(v: Option<&Value>) -> i128 {
    match v {
        Some(Value::Number(n)) => scaled(&n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => scaled(s),
        _ => 0,
    }
}

async fn start_bed(mismatched: &[&str], unlined: &[&str], extra: &[(&str, &str)]) -> TestBed {
    let today = date!(2026 - 11 - 20);
    let mut settings = vec![("OUTPUT_FORMATS", "jsonl.gz,parquet")];
    settings.extend_from_slice(extra);
    let bed = TestBed::start(
        SandboxConfig {
            today: Some(today),
            invoices: default_invoices(today),
            mismatched_invoices: mismatched.iter().map(|s| s.to_string()).collect(),
            unlined_usage_invoices: unlined.iter().map(|s| s.to_string()).collect(),
            ..fast_sandbox()
        },
        &settings,
    )
    .await;
    for group in [KindGroup::Billed, KindGroup::Unbilled] {
        let timer = TimerInfo {
            is_past_due: false,
            schedule_status: None,
        };
        start_exports::run(
            &bed.app,
            timer,
            OffsetDateTime::new_utc(today, time!(06:30)),
            group,
        )
        .await
        .unwrap_or_else(|e| panic!("{group:?} firing: {}", e.message));
    }
    bed.drain(Duration::from_secs(60)).await;
    bed
}

/// `_manifest.json` documents of every completed run, with their folder.
fn run_manifests(bed: &TestBed) -> Vec<(String, Value)> {
    bed.output_files()
        .into_iter()
        .filter(|(k, _)| k.ends_with("/_manifest.json") && !k.contains("/_ledger/"))
        .map(|(k, v)| {
            let folder = k.trim_end_matches("/_manifest.json").to_string();
            (folder, serde_json::from_slice(&v).unwrap())
        })
        .collect()
}

/// The FOCUS file of a partition: one row per source row, BilledCost the pre-tax amount, the
/// billing status of its export kind; reconciliation adds a Tax row per taxed row, whose
/// BilledCost adds up to the tax, so that the file's BilledCost is Σ Subtotal + Σ TaxTotal.
fn check_focus(
    root: &Path,
    focus: &str,
    dataset: Dataset,
    kind: &str,
    rows: &[serde_json::Map<String, Value>],
) {
    let billed_source = if dataset == Dataset::Usage {
        "BillingPreTaxTotal"
    } else {
        "Subtotal"
    };
    let got = &duckdb::rows(
        root,
        &format!(
            "SELECT count(*) FILTER (WHERE ChargeCategory <> 'Tax'), \
             coalesce(sum(BilledCost) FILTER (WHERE ChargeCategory <> 'Tax'), 0)::VARCHAR, \
             min(x_BillingStatus), coalesce(sum(BilledCost), 0)::VARCHAR FROM '{focus}'"
        ),
    )[0];
    assert_eq!(
        got[0].as_deref(),
        Some(rows.len().to_string().as_str()),
        "{focus}"
    );
    let want: i128 = rows.iter().map(|r| amount(r.get(billed_source))).sum();
    assert_eq!(
        scaled(got[1].as_deref().unwrap()),
        want,
        "BilledCost of {focus}"
    );
    let status = if kind.starts_with("billed") {
        "billed"
    } else {
        "unbilled"
    };
    assert_eq!(got[2].as_deref(), Some(status), "{focus}");
    if dataset == Dataset::Reconciliation {
        let total: i128 = rows
            .iter()
            .map(|r| amount(r.get("Subtotal")) + amount(r.get("TaxTotal")))
            .sum();
        assert_eq!(
            scaled(got[3].as_deref().unwrap()),
            total,
            "BilledCost with the Tax rows of {focus} is Subtotal + TaxTotal"
        );
    }
}

/// The official FOCUS validator finds no failing rule in a FOCUS file of each export kind
/// (billing-columnar's validator test covers the basic attribute set and the rule list).
fn the_official_validator_passes(root: &Path, files: &BTreeMap<String, String>) {
    assert_eq!(files.len(), 4, "one FOCUS file per export kind: {files:?}");
    for (kind, focus) in files {
        let v = focus_validator::check(&root.join(focus));
        assert!(
            v.failing.is_empty(),
            "{kind}: failing FOCUS validator rules {:?}\n{}",
            v.failing,
            v.text
        );
    }
}

#[tokio::test]
async fn duckdb_reads_our_parquet_and_focus_files_with_the_json_sources_counts_and_sums() {
    let bed = start_bed(&[], &[], &[]).await;
    let root = bed.dir.path();
    let manifests = run_manifests(&bed);
    assert!(
        manifests.len() >= 8,
        "billed and unbilled runs: {}",
        manifests.len()
    );
    let mut checked = 0;
    let mut first_focus = BTreeMap::new();
    for (folder, m) in &manifests {
        let kind = m["request"]["kind"].as_str().unwrap();
        let dataset = if kind.ends_with("Usage") {
            Dataset::Usage
        } else {
            Dataset::Reconciliation
        };
        let schema = Schema::new(dataset, AttributeSet::Full);
        let decimals: Vec<&str> = schema
            .columns()
            .iter()
            .filter(|c| c.ty == ColumnType::Decimal)
            .map(|c| c.name)
            .collect();
        for blob in m["blobs"].as_array().unwrap() {
            let source =
                std::fs::read(root.join(folder).join(blob["blobName"].as_str().unwrap())).unwrap();
            let rows = json_rows(&source);
            let typed = format!(
                "{folder}/{}",
                blob["parquetName"].as_str().expect("parquetName")
            );
            let focus = format!(
                "{folder}/{}",
                blob["focusName"].as_str().expect("focusName")
            );
            assert!(Path::new(root).join(&typed).is_file(), "{typed}");

            // Typed: row count and the exact sum of every decimal column.
            let sums: Vec<String> = decimals
                .iter()
                .map(|c| format!("coalesce(sum(\"{c}\"), 0)::VARCHAR"))
                .collect();
            let got = &duckdb::rows(
                root,
                &format!("SELECT count(*), {} FROM '{typed}'", sums.join(", ")),
            )[0];
            assert_eq!(
                got[0].as_deref(),
                Some(rows.len().to_string().as_str()),
                "{typed}"
            );
            for (i, c) in decimals.iter().enumerate() {
                let want: i128 = rows.iter().map(|r| amount(r.get(*c))).sum();
                let have = scaled(got[i + 1].as_deref().unwrap());
                assert_eq!(have, want, "sum of {c} in {typed}");
            }
            // DuckDB sees real types, not strings.
            let types = duckdb::rows(
                root,
                &format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{typed}')"),
            );
            let ty = |name: &str| {
                types
                    .iter()
                    .find(|r| r[0].as_deref() == Some(name))
                    .and_then(|r| r[1].clone())
                    .unwrap_or_default()
            };
            assert!(
                ty("ChargeStartDate").starts_with("TIMESTAMP") || ty("ChargeStartDate") == "DATE"
            );
            assert!(
                ty(decimals[0]).starts_with("DECIMAL"),
                "{}",
                ty(decimals[0])
            );

            check_focus(root, &focus, dataset, kind, &rows);
            first_focus.entry(kind.to_string()).or_insert(focus);
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked} partitions checked");
    the_official_validator_passes(root, &first_focus);

    // The README's FOCUS query runs as printed and finds every billed usage row's cost.
    let query = include_str!("../README.md")
        .split("<!-- focus-query -->")
        .nth(1)
        .and_then(|s| s.split("```sql").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has the FOCUS query between its markers");
    let per_customer = duckdb::rows(
        root,
        &format!(
            "SELECT count(*), sum(cost)::VARCHAR FROM ({})",
            query.trim().trim_end_matches(';')
        ),
    );
    assert_ne!(per_customer[0][0].as_deref(), Some("0"), "{per_customer:?}");
}

/// Hubs: one folder per partner and month, its manifest.json written after its FOCUS files;
/// no file of the mismatched invoice, nor usage that the invoice's Azure lines do not cover.
fn check_hub_manifests(files: &BTreeMap<String, Vec<u8>>, bad: &str, unlined: &str) {
    let hub_manifests: BTreeMap<&String, Value> = files
        .iter()
        .filter(|(k, _)| k.starts_with("ingestion/Costs/") && k.ends_with("/manifest.json"))
        .map(|(k, v)| (k, serde_json::from_slice(v).unwrap()))
        .collect();
    let landed: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("ingestion/") && k.ends_with(".parquet"))
        .collect();
    assert!(
        !landed.iter().any(|k| k.contains(&format!("__{bad}-"))),
        "no ingestion for an invoice that does not balance: {landed:?}"
    );
    assert!(
        !landed
            .iter()
            .any(|k| k.contains(&format!("__{unlined}-usage-"))),
        "no ingestion of usage that the invoice's Azure lines do not cover: {landed:?}"
    );
    assert!(
        landed.iter().any(|k| k.contains("__G026100001-usage-")),
        "usage of a sound invoice is ingested once its invoice is checked: {landed:?}"
    );
    assert!(landed
        .iter()
        .any(|k| k.starts_with("ingestion/Costs/2026/10/csp/")
            && k.contains("__G026100001-charges-")));
    for (k, doc) in &hub_manifests {
        let dir = k.trim_end_matches("manifest.json");
        let id = doc["ingestionId"].as_str().unwrap();
        for (name, _) in doc["files"].as_object().unwrap() {
            assert!(
                name.starts_with(&format!("{id}__")),
                "{{ingestion id}}__{{file}}: {name}"
            );
            assert!(files.contains_key(&format!("{dir}{name}")), "{dir}{name}");
        }
        // Only the manifest's files are in its folder.
        let here = landed.iter().filter(|f| f.starts_with(dir)).count();
        assert_eq!(here, doc["files"].as_object().unwrap().len(), "{dir}");
    }
}

#[tokio::test]
async fn the_invoice_check_reconciles_balanced_invoices_and_withholds_hubs_for_a_mismatch() {
    let bad = "G026100002";
    let unlined = "G026100003";
    let bed = start_bed(
        &[bad],
        &[unlined],
        &[("HUBS_INGESTION_CONTAINER", "ingestion")],
    )
    .await;

    let reconciled = bed.events_of_type("InvoiceReconciled");
    let mismatched = bed.events_of_type("InvoiceMismatch");
    // Whichever billed export of an invoice lands second compares usage with the Azure lines;
    // the last word on each invoice carries that comparison.
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for e in reconciled.iter().chain(&mismatched) {
        let d = &e["data"];
        let id = d["invoiceId"].as_str().unwrap().to_string();
        if d["azureUsage"].is_object() || !last.contains_key(&id) {
            last.insert(id, e.clone());
        }
    }
    // However many finishers compared an invoice's usage, its comparison has one event id.
    let mut ids: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in reconciled.iter().chain(&mismatched) {
        if e["data"]["azureUsage"].is_object() {
            ids.entry(e["data"]["invoiceId"].as_str().unwrap().to_string())
                .or_default()
                .insert(e["id"].as_str().unwrap().to_string());
        }
    }
    assert!(ids.values().all(|s| s.len() == 1), "{ids:?}");
    let verdicts: Vec<(&str, &str, &str)> = last
        .iter()
        .map(|(id, e)| {
            (
                id.as_str(),
                if e["type"].as_str().unwrap().contains("InvoiceReconciled") {
                    "InvoiceReconciled"
                } else {
                    "InvoiceMismatch"
                },
                e["data"]["azureUsage"]["verdict"]
                    .as_str()
                    .unwrap_or("absent"),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("G026100001", "InvoiceReconciled", "reconciled"),
            ("G026100002", "InvoiceMismatch", "reconciled"),
            ("G026100003", "InvoiceMismatch", "mismatch"),
        ],
        "{:#}",
        last["G026100001"]["data"]["azureUsage"]
    );
    // Billed usage adds up to the Azure lines of a sound invoice, customer by customer.
    let u = &last["G026100001"]["data"]["azureUsage"];
    assert!(u["products"].as_u64().unwrap() > 0, "{u}");
    for c in u["customers"].as_array().unwrap() {
        let diff = scaled(c["difference"].as_str().unwrap()).abs();
        assert!(diff <= scaled(c["allowed"].as_str().unwrap()), "{c}");
        assert!(c["azureLines"].as_u64().unwrap() > 0, "{c}");
    }
    // The unlined invoice names the one customer whose usage lacks a line, first.
    let u = &last[unlined]["data"]["azureUsage"];
    let beyond: Vec<bool> = u["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            scaled(c["difference"].as_str().unwrap()).abs() > scaled(c["allowed"].as_str().unwrap())
        })
        .collect();
    assert!(beyond[0] && !beyond[1..].iter().any(|b| *b), "{u}");
    assert_eq!(
        last[unlined]["data"]["difference"].as_str().map(scaled),
        Some(0),
        "its invoice total still matches its reconciliation"
    );
    let m = &last[bad]["data"];
    assert_eq!(
        m["difference"].as_str().map(scaled),
        Some(-scaled("1")),
        "{m}"
    );
    assert!(
        !m["customers"].as_array().unwrap().is_empty(),
        "per-customer totals: {m}"
    );

    check_hub_manifests(&bed.output_files(), bad, unlined);
}

/// Partner Center cannot answer for the invoice (here: it does not know it): no verdict is
/// guessed, and the run still completes with its event, Parquet included.
#[tokio::test]
async fn an_unreadable_invoice_leaves_the_check_unmade_and_the_run_completed() {
    use partner_billing_export::billing::{AttributeSet, ExportKind, ExportRequest};
    use partner_billing_export::pipeline::{RunState, Trigger};
    let bed = TestBed::start(
        SandboxConfig {
            today: Some(date!(2026 - 11 - 20)),
            ..fast_sandbox()
        },
        &[("OUTPUT_FORMATS", "jsonl.gz,parquet")],
    )
    .await;
    let req = ExportRequest::billed(
        ExportKind::BilledReconciliation,
        "G099990001".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();
    let run = bed.start_new(req, Trigger::Http).await;
    bed.drain(Duration::from_secs(60)).await;
    let run = bed.run(&run.run_id).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.failure);
    assert!(run.final_event_sent, "the completion event went out");
    assert!(run.parts.iter().all(|p| p.parquet_bytes.is_some()));
    assert!(bed.events_of_type("InvoiceReconciled").is_empty());
    assert!(bed.events_of_type("InvoiceMismatch").is_empty());
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

/// Billed usage that lands while its invoice's reconciliation is still polling goes to FinOps
/// hubs only once the reconciliation has landed and the two have been compared.
#[tokio::test]
async fn billed_usage_landing_first_waits_for_the_invoice_check_before_hubs() {
    use partner_billing_export::billing::{ExportKind, ExportRequest};
    use partner_billing_export::pipeline::{RunState, Trigger};
    let today = date!(2026 - 11 - 20);
    let bed = TestBed::start(
        SandboxConfig {
            today: Some(today),
            invoices: default_invoices(today),
            ..fast_sandbox()
        },
        &[
            ("OUTPUT_FORMATS", "jsonl.gz,parquet"),
            ("HUBS_INGESTION_CONTAINER", "ingestion"),
        ],
    )
    .await;
    let req = |kind| {
        ExportRequest::billed(
            kind,
            "G026100001".parse().unwrap(),
            partner_billing_export::billing::AttributeSet::Full,
        )
        .unwrap()
    };
    bed.start_new(req(ExportKind::BilledReconciliation), Trigger::Http)
        .await;
    // The reconciliation's first poll, held (locked, unsettled): it stays polling meanwhile.
    let held = bed
        .next(Duration::from_secs(10))
        .await
        .expect("the reconciliation's poll");
    let usage = bed
        .start_new(req(ExportKind::BilledUsage), Trigger::Http)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let u = bed.run(&usage.run_id).await;
        if u.state == RunState::Completed && u.final_event_sent {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", u.state);
        if let Some(d) = bed.next(Duration::from_millis(200)).await {
            bed.process(&d).await.unwrap();
        }
    }
    let hub_manifests = |bed: &TestBed| -> Vec<String> {
        bed.output_files()
            .into_keys()
            .filter(|k| k.starts_with("ingestion/") && k.ends_with("/manifest.json"))
            .collect()
    };
    assert_eq!(hub_manifests(&bed), Vec::<String>::new(), "usage waits");
    assert!(bed.events_of_type("InvoiceReconciled").is_empty());

    bed.process(&held).await.unwrap();
    bed.drain(Duration::from_secs(60)).await;
    let checks = bed.events_of_type("InvoiceReconciled");
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(
        checks[0]["data"]["azureUsage"]["usageRunId"],
        usage.run_id.as_str()
    );
    let landed = hub_manifests(&bed);
    let files: Vec<String> = bed
        .output_files()
        .into_keys()
        .filter(|k| k.starts_with("ingestion/") && k.ends_with(".parquet"))
        .collect();
    assert_eq!(
        landed.len(),
        1,
        "one folder for the partner's month: {landed:?}"
    );
    for kind in ["usage", "charges"] {
        assert!(
            files
                .iter()
                .any(|k| k.contains(&format!("__G026100001-{kind}-"))),
            "{kind}: {files:?}"
        );
    }
}

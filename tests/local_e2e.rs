//! `local` end to end: the real binary as the custom handler behind the Functions host
//! emulator, the timer starting all four export kinds, every partition landed byte-identical.

use std::path::PathBuf;
use std::time::Duration;

use partner_billing_local::graph_sandbox::SandboxConfig;
use partner_billing_local::run::{run_local, LocalOptions};
use serde_json::Value;

fn options(out: PathBuf, sandbox: SandboxConfig, settings: &[(&str, &str)]) -> LocalOptions {
    LocalOptions {
        out_dir: out,
        app_root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        package: None,
        sandbox,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timeout: Duration::from_secs(120),
        http_port: 0,
        quiet: true,
        handler_program: PathBuf::from(env!("CARGO_BIN_EXE_partner-billing-export")),
        azurite: false,
    }
}

fn sandbox() -> SandboxConfig {
    SandboxConfig {
        polls_before_done: 2,
        retry_after_secs: 1,
        partitions: 2,
        rows_per_partition: 60,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn local_run_exports_all_four_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_local(options(dir.path().join("out"), sandbox(), &[]))
        .await
        .unwrap();
    assert!(summary.ok(), "local run failed: {summary:#?}");
    for kind in [
        "billedUsage",
        "unbilledUsage",
        "billedReconciliation",
        "unbilledReconciliation",
    ] {
        let n = summary
            .runs
            .iter()
            .filter(|r| r.subject.starts_with(&format!("{kind} ")))
            .count();
        assert!(n >= 1, "no {kind} run in {:?}", summary.runs);
    }
    assert!(summary.partitions > 0);
    assert_eq!(
        summary.verified, summary.partitions,
        "every partition byte-identical: {:?}",
        summary.mismatches
    );
    assert_eq!(
        summary.partitions,
        summary.runs.iter().map(|r| r.files).sum::<u64>()
    );
    assert!(summary.rows > 0);

    // Events: started and completed for each run, also in the events file.
    let events = &summary.events;
    for r in &summary.runs {
        let of = |t: &str| {
            events
                .iter()
                .filter(|e| {
                    e["data"]["runId"] == r.run_id.as_str()
                        && e["type"].as_str().unwrap().contains(t)
                })
                .count()
        };
        assert_eq!(of("ExportStarted"), 1, "run {}", r.run_id);
        assert_eq!(of("ExportCompleted"), 1, "run {}", r.run_id);
    }
    let lines = std::fs::read_to_string(&summary.events_file).unwrap();
    assert_eq!(lines.lines().count(), events.len());
    for l in lines.lines() {
        let e: Value = serde_json::from_str(l).unwrap();
        assert_eq!(e["specversion"], "1.0");
        assert!(!l.contains("sig="), "events must not carry a SAS");
    }
    // One _manifest.json per run, and no SAS anywhere in the output.
    let mut manifests = 0;
    let mut stack = vec![summary.output_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).unwrap();
                assert!(!text.contains("sig="), "{} carries a SAS", p.display());
                manifests += usize::from(p.file_name().unwrap() == "_manifest.json");
            }
        }
    }
    assert_eq!(manifests, summary.runs.len());

    // The handler's whole log: no SAS signature, no bearer token, ever.
    let log = std::fs::read_to_string(summary.output_dir.join("handler.log")).unwrap();
    assert!(
        log.contains("export run completed"),
        "the log shows progress"
    );
    for secret in [
        "sig=",
        "local-graph-token",
        "local-servicebus-token",
        "local-eventgrid-token",
        "local-partner-center-token",
    ] {
        assert!(!log.contains(secret), "handler.log leaks {secret:?}");
    }
    // Written to a file, the log carries no terminal colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "handler.log has ANSI escape sequences"
    );
}

#[tokio::test]
async fn local_run_reports_a_failed_export() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SandboxConfig {
        fail_invoices: vec!["EUR".into()],
        fail_code: "5001".into(),
        ..sandbox()
    };
    let summary = run_local(options(
        dir.path().join("out"),
        cfg,
        &[
            ("EXPORT_KINDS", "unbilledUsage"),
            ("EXPORT_UNBILLED_CURRENCIES", "USD,EUR"),
        ],
    ))
    .await
    .unwrap();
    assert!(!summary.ok(), "a failed export must make the run fail");
    // USD and EUR configured, GBP learned from the sandbox's invoices.
    assert_eq!(summary.runs.len(), 3);
    assert_eq!(summary.failed(), 1);
    let failed = summary
        .events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().contains("ExportFailed"))
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["code"], "5001");
}

/// `local --fail EUR` with the default code 5000: no data is not a failure, the run exits 0.
#[tokio::test]
async fn local_run_with_no_data_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SandboxConfig {
        fail_invoices: vec!["EUR".into()],
        ..sandbox()
    };
    let summary = run_local(options(
        dir.path().join("out"),
        cfg,
        &[
            ("EXPORT_KINDS", "unbilledUsage"),
            ("EXPORT_UNBILLED_CURRENCIES", "USD,EUR"),
        ],
    ))
    .await
    .unwrap();
    assert!(summary.ok(), "no data is not a failure: {summary:#?}");
    assert_eq!(summary.failed(), 0);
    assert_eq!(summary.no_data(), 1);
    assert!(summary
        .events
        .iter()
        .all(|e| !e["type"].as_str().unwrap().contains("ExportFailed")));
}

/// The Azurite chain: sandbox Graph → Azurite "Microsoft" account → server-side copy →
/// Azurite partner account. Needs Azurite from `npm ci` (scripts/test.sh installs it).
#[tokio::test]
async fn local_run_against_azurite_copies_server_side() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path().join("out"), sandbox(), &[]);
    opts.azurite = true;
    let summary = run_local(opts).await.unwrap();
    assert!(summary.ok(), "{summary:#?}");
    assert!(
        summary.data_location.contains("/partnerdest/"),
        "{}",
        summary.data_location
    );
    assert_eq!(summary.verified, summary.partitions);
    for kind in [
        "billedUsage",
        "unbilledUsage",
        "billedReconciliation",
        "unbilledReconciliation",
    ] {
        assert!(
            summary
                .runs
                .iter()
                .any(|r| r.subject.starts_with(&format!("{kind} "))),
            "no {kind} run in {:?}",
            summary.runs
        );
    }
    let completed: Vec<_> = summary
        .events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().contains("ExportCompleted"))
        .collect();
    assert_eq!(completed.len(), summary.runs.len());
    for e in completed {
        for b in e["data"]["blobs"].as_array().unwrap() {
            assert_eq!(b["copyMethod"], "serverSide", "{b}");
        }
        assert!(!e.to_string().contains("sig="), "events never carry a SAS");
    }
}

/// Done-when of several partner tenants: `local --setting PARTNERS_FILE=examples/partners.json`
/// runs both partners through the handler (each signed in as its own identity, so the sandbox
/// serves each its own invoices and data), lands them in their own folders and verifies all.
#[tokio::test]
async fn local_run_with_two_partners() {
    let dir = tempfile::tempdir().unwrap();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/partners.json");
    let out = dir.path().join("out");
    let summary = run_local(options(out.clone(), sandbox(), &[("PARTNERS_FILE", file)]))
        .await
        .unwrap();
    assert!(summary.ok(), "local run failed: {summary:#?}");
    let of = |p: &str| {
        summary
            .runs
            .iter()
            .filter(|r| r.subject.starts_with(&format!("{p}: ")))
            .count()
    };
    // contoso: 2 invoices x 2 billed kinds + 2 unbilled kinds in USD; fabrikam: 2 x 2 + unbilled usage in EUR.
    assert_eq!(
        (of("contoso"), of("fabrikam")),
        (6, 5),
        "{:#?}",
        summary.runs
    );
    assert_eq!(summary.runs.len(), 11);
    assert_eq!(summary.verified, summary.partitions);
    assert!(summary.partitions >= 22);
    for p in ["contoso", "fabrikam"] {
        assert!(out.join("partner-billing").join(p).is_dir(), "{p}'s folder");
        let completed = summary
            .events
            .iter()
            .filter(|e| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("ExportCompleted.v1"))
            })
            .filter(|e| e["data"]["partner"] == p)
            .count();
        assert_eq!(completed, of(p), "{p}'s ExportCompleted events");
    }
    let unbilled_eur = summary
        .runs
        .iter()
        .any(|r| r.subject == "fabrikam: unbilledUsage current EUR");
    assert!(unbilled_eur, "{:#?}", summary.runs);
}

/// Derived formats in a local run: `--setting OUTPUT_FORMATS=jsonl.gz,parquet` lands typed Parquet and a
/// FOCUS view for every partition; DuckDB (not our code) reads them, and row counts and the
/// sums of the amount columns equal the JSON source; every billed invoice is reconciled.
#[tokio::test]
async fn local_run_with_parquet_lands_files_duckdb_reads_like_the_json() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run_local(options(
        out.clone(),
        sandbox(),
        &[("OUTPUT_FORMATS", "jsonl.gz,parquet")],
    ))
    .await
    .unwrap();
    assert!(summary.ok(), "{summary:#?}");
    assert_eq!(summary.parquet_files, summary.partitions);
    assert_eq!(summary.focus_files, summary.partitions);

    // Every partition's rows, and its pre-tax amounts in hundredths (the sandbox writes two
    // decimals for reconciliation, six for usage: compare in millionths).
    let mut rows = 0i128;
    let mut micros = 0i128;
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                let mut text = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    rows += 1;
                    let amount = v
                        .get("BillingPreTaxTotal")
                        .or_else(|| v.get("Subtotal"))
                        .and_then(Value::as_f64)
                        .unwrap();
                    micros += (amount * 1e6).round() as i128;
                }
            }
        }
    }
    let got = test_support::duckdb::rows(
        &out,
        // Without the reconciliation's Tax rows, the FOCUS files hold the source rows.
        "SELECT count(*), round(sum(BilledCost) * 1000000)::HUGEINT::VARCHAR FROM '**/focus/*.parquet' \
         WHERE ChargeCategory <> 'Tax'",
    );
    assert_eq!(got[0][0].as_deref(), Some(rows.to_string().as_str()));
    assert_eq!(got[0][1].as_deref(), Some(micros.to_string().as_str()));
    let typed = test_support::duckdb::rows(&out, "SELECT count(*) FROM '**/parquet/*.parquet'");
    assert_eq!(typed[0][0].as_deref(), Some(rows.to_string().as_str()));

    // Every invoice reconciled, its billed usage compared with its Azure lines in one of them.
    let reconciled: Vec<&Value> = summary
        .events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().contains("InvoiceReconciled"))
        .collect();
    let invoices = |with_usage: bool| -> std::collections::BTreeSet<&str> {
        reconciled
            .iter()
            .filter(|e| !with_usage || e["data"]["azureUsage"]["verdict"] == "reconciled")
            .map(|e| e["data"]["invoiceId"].as_str().unwrap())
            .collect()
    };
    let billed_recon = summary
        .runs
        .iter()
        .filter(|r| r.subject.starts_with("billedReconciliation "))
        .count();
    assert_eq!(invoices(false).len(), billed_recon, "{:?}", summary.events);
    assert_eq!(invoices(true), invoices(false), "{:?}", summary.events);
    assert_eq!(
        partner_billing_local::run::invoice_check_line(&summary.events).as_deref(),
        Some(
            format!(
                "Invoices: {billed_recon} checked, {billed_recon} reconciled (billed usage matched the Azure lines of {billed_recon}), 0 mismatched"
            )
            .as_str()
        )
    );
    assert!(
        !summary
            .events
            .iter()
            .any(|e| e["type"].as_str().unwrap().contains("InvoiceMismatch")),
        "{:?}",
        summary.events
    );
}

/// The same against Azurite: the destination's read-back and block upload of the derived
/// files, and the FinOps hubs landing, on a real storage server.
#[tokio::test]
async fn local_run_with_parquet_against_azurite_lands_hubs_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(
        dir.path().join("out"),
        sandbox(),
        &[
            ("OUTPUT_FORMATS", "jsonl.gz,parquet"),
            ("HUBS_INGESTION_CONTAINER", "ingestion"),
        ],
    );
    opts.azurite = true;
    let summary = run_local(opts).await.unwrap();
    assert!(summary.ok(), "{summary:#?}");
    assert_eq!(summary.parquet_files, summary.partitions);
    assert_eq!(summary.focus_files, summary.partitions);
    let log = std::fs::read_to_string(dir.path().join("out/handler.log")).unwrap();
    // One folder per partner and billing month: the billed month and the current unbilled one.
    let landed: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("FOCUS files landed for FinOps hubs"))
        .filter_map(|l| l.split("folder=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert!(!landed.is_empty(), "nothing landed in the hubs container");
    for folder in &landed {
        let parts: Vec<&str> = folder.split('/').collect();
        assert!(
            parts.len() == 5 && parts[0] == "Costs" && parts[3] == "csp",
            "{folder}: Costs/{{yyyy}}/{{mm}}/csp/{{tenant}}"
        );
    }
}

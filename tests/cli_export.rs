//! `partner-billing-export export` as a user runs it: the real binary against the Graph
//! sandbox on loopback (static test tokens), landing data in a temporary folder.
//! - every partition lands byte-identical, with `_manifest.json` per run, progress and the
//!   closing table, exit 0;
//! - interrupted mid-run (SIGINT) it exits 130, and a rerun completes without copying any
//!   partition the first invocation finished;
//! - each mistake a user makes gets the message that says how to fix it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use partner_billing_export::auth::Audience;
use partner_billing_local::graph_sandbox::{
    default_invoices, GraphRefusal, GraphSandbox, SandboxConfig,
};
use partner_billing_local::tokens::local_token;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_partner-billing-export");

fn today() -> time::Date {
    time::macros::date!(2026 - 11 - 25)
}

/// The sandbox's invoices are those of October 2026.
fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        seed: 7,
        polls_before_done: 1,
        retry_after_secs: 1,
        partitions: 3,
        rows_per_partition: 120,
        today: Some(today()),
        invoices: default_invoices(today()),
        ..SandboxConfig::default()
    }
}

/// The command with only the settings a user would set for a loopback Graph stand-in.
fn export(sb: &GraphSandbox, out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("export")
        .arg("--out")
        .arg(out)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRAPH_BASE_URL", sb.graph_base_url().as_str())
        .env(
            "PARTNER_CENTER_BASE_URL",
            sb.partner_center_base_url().as_str(),
        )
        .env("GRAPH_ACCESS_TOKEN", local_token(Audience::Graph))
        .env(
            "PARTNER_CENTER_ACCESS_TOKEN",
            local_token(Audience::PartnerCenter),
        )
        .env("MIN_RETRY_AFTER_SECONDS", "0")
        .env("DEFAULT_RETRY_AFTER_SECONDS", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(mut c: Command) -> Ran {
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("export finished within two minutes")
        .expect("the binary starts");
    let ran = Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secrets(&ran.stdout);
    assert_no_secrets(&ran.stderr);
    ran
}

fn assert_no_secrets(text: &str) {
    for secret in [
        local_token(Audience::Graph),
        local_token(Audience::PartnerCenter),
        "sig=",
    ] {
        assert!(!text.contains(secret), "output shows {secret:?}:\n{text}");
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|v| v["event"] == "summary")
        .expect("a summary line")
}

/// (runId, part) of every partition whose bytes this invocation moved.
fn copied(lines: &[Value]) -> BTreeSet<(String, u64)> {
    lines
        .iter()
        .filter(|v| v["event"] == "partDone" && v["method"] != "skipped")
        .map(|v| {
            (
                v["runId"].as_str().unwrap().to_string(),
                v["part"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Parts the ledger records as copied (bytes moved), per (runId, part).
fn ledger_copies(out: &Path) -> BTreeSet<(String, u64)> {
    let dir = out.join("partner-billing/_ledger/runs");
    let mut done = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let rec: Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        for p in rec["parts"].as_array().cloned().unwrap_or_default() {
            if p["done"] == true && p["method"] != "skipped" {
                done.insert((
                    rec["runId"].as_str().unwrap().to_string(),
                    p["index"].as_u64().unwrap(),
                ));
            }
        }
    }
    done
}

/// Follows each completed run's `_manifest.json` to its files and compares every one with
/// the MD5 of what the sandbox served; returns how many matched.
fn verify(sb: &GraphSandbox, runs: &[Value]) -> usize {
    let served: HashMap<(String, String), String> = sb
        .served_partitions()
        .into_iter()
        .map(|p| ((p.root_directory, p.name), p.md5))
        .collect();
    let mut verified = 0;
    for r in runs {
        assert_eq!(r["status"], "completed", "{r}");
        let manifest = PathBuf::from(r["manifest"].as_str().expect("manifest path"));
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let root = m["source"]["rootDirectory"].as_str().unwrap().to_string();
        for b in m["blobs"].as_array().unwrap() {
            let file = manifest
                .parent()
                .unwrap()
                .join(b["blobName"].as_str().unwrap());
            let bytes = std::fs::read(&file).unwrap();
            let got = hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes));
            let want = &served[&(root.clone(), b["sourceName"].as_str().unwrap().to_string())];
            assert_eq!(&got, want, "{} differs from the source", file.display());
            verified += 1;
        }
    }
    verified
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lands_every_partition_and_resumes_after_an_interrupt() {
    let sb = GraphSandbox::start(SandboxConfig {
        partitions: 4,
        blob_delay: Duration::from_millis(120),
        ..sandbox_config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exports");

    // First invocation: stopped with Ctrl-C (SIGINT) once a few partitions are in.
    let mut first = export(&sb, &out);
    first
        .args([
            "--months",
            "2026-09..2026-10",
            "--currency",
            "USD",
            "--json",
            "--concurrency",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = first.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while copied(&seen).len() < 3 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("partitions were copied within a minute")
            .unwrap()
            .expect("export still running");
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    while let Some(line) = tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("export stopped after SIGINT")
        .unwrap()
    {
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "interrupted: {seen:#?}");
    let first_summary = summary(&seen);
    assert_eq!(first_summary["interrupted"], true);
    let total_runs = first_summary["runs"].as_array().unwrap().len();
    assert_eq!(
        total_runs, 8,
        "3 invoices x 2 billed kinds + 2 unbilled kinds"
    );
    let unfinished = first_summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .count();
    assert!(unfinished > 0, "stopped mid-run: {first_summary}");
    let done_first = ledger_copies(&out);
    assert!(done_first.len() >= 3, "{done_first:?}");

    // Second invocation: the same command completes; nothing done before is copied again.
    let mut second = export(&sb, &out);
    second.args([
        "--months",
        "2026-09..2026-10",
        "--currency",
        "USD",
        "--json",
    ]);
    let ran = run(second).await;
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let lines = json_lines(&ran.stdout);
    let s = summary(&lines);
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), total_runs);
    assert!(
        runs.iter().any(|r| r["origin"] == "resumed"),
        "runs in progress were continued, not started again: {s}"
    );
    let again: BTreeSet<_> = copied(&lines).intersection(&done_first).cloned().collect();
    assert!(again.is_empty(), "copied twice: {again:?}");
    let before: u64 = runs
        .iter()
        .map(|r| r["partsDoneBefore"].as_u64().unwrap() + r["partsSkipped"].as_u64().unwrap())
        .sum();
    assert!(before > 0, "{s}");
    assert_eq!(s["partitions"], 32);
    assert_eq!(
        s["partsCopied"].as_u64().unwrap() + s["partsAlreadyThere"].as_u64().unwrap(),
        32
    );
    // Every partition is in place, byte-identical, with a _manifest.json per run.
    assert_eq!(verify(&sb, runs), 32);
    // The events of both invocations are beside the data, one completion per run at least.
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert_no_secrets(&events);
    let completed = events
        .lines()
        .filter(|l| l.contains("ExportCompleted"))
        .count();
    assert!(completed >= total_runs, "{events}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_output_shows_progress_and_the_closing_table() {
    let sb = GraphSandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut c = export(&sb, &out);
    c.args([
        "--kind",
        "billedUsage",
        "--invoice",
        "G026100001",
        "--dry-run",
    ]);
    let dry = run(c).await;
    assert_eq!(dry.code, Some(0), "{}{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("billedUsage G026100001"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("would start"), "{}", dry.stdout);
    assert_eq!(sb.stats().exports_started, 0, "a dry run starts nothing");

    let mut c = export(&sb, &out);
    c.args([
        "--kind",
        "billedUsage,unbilledUsage",
        "--invoice",
        "G026100001",
        "--currency",
        "USD",
    ]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    for want in [
        "started billedUsage G026100001",
        "billedUsage G026100001: polling",
        "unbilledUsage current USD: copying",
        "Runs:",
        "Summary: 2 runs (2 completed, 0 no data, 0 failed), 6 partitions (6 copied, 0 already there)",
        "Output:  ",
        "Ledger:  ",
        "events.jsonl",
    ] {
        assert!(ran.stdout.contains(want), "missing {want:?}:\n{}", ran.stdout);
    }
    assert!(
        !ran.stdout.contains('\x1b'),
        "no escape codes when not a terminal"
    );
    sb.shutdown().await;
}

/// Running the same command again over finished invoices asks Graph for nothing and reads no
/// blob (the ledger says they are exported); `--force` exports them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_finished_invoices_exports_nothing_unless_forced() {
    let sb = GraphSandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "--kind",
        "billedUsage,billedReconciliation",
        "--months",
        "2026-09..2026-10",
        "--json",
    ];
    let mut c = export(&sb, &out);
    c.args(args);
    let first = run(c).await;
    assert_eq!(first.code, Some(0), "{}{}", first.stdout, first.stderr);
    let exported = summary(&json_lines(&first.stdout))["runs"]
        .as_array()
        .unwrap()
        .len();
    assert!(exported >= 4, "{}", first.stdout);
    let before = sb.stats();
    assert_eq!(before.exports_started, exported as u64);

    let mut c = export(&sb, &out);
    c.args(args);
    let second = run(c).await;
    assert_eq!(second.code, Some(0), "{}{}", second.stdout, second.stderr);
    let after = sb.stats();
    assert_eq!(
        after.exports_started, before.exports_started,
        "no new Graph export"
    );
    assert_eq!(after.blob_gets, before.blob_gets, "no blob read");
    let lines = json_lines(&second.stdout);
    let s = summary(&lines);
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), exported, "{s}");
    assert!(
        runs.iter()
            .all(|r| r["origin"] == "already exported" && r["status"] == "completed"),
        "{s}"
    );
    assert_eq!(
        verify(&sb, runs),
        s["partitions"].as_u64().unwrap() as usize
    );

    // The dry run says so, and --force exports them again.
    let mut c = export(&sb, &out);
    c.args(args).arg("--dry-run");
    let dry = run(c).await;
    assert!(dry.stdout.contains("already exported"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("would start"), "{}", dry.stdout);
    // Its last line is the plan as GET /api/plan shows it: nothing to start, each export
    // skipped with its finished run.
    let plan: partner_billing_export::contracts::plan::TimerPlan = serde_json::from_value(
        json_lines(&dry.stdout)
            .iter()
            .find(|l| l["event"] == "dryRun")
            .unwrap_or_else(|| panic!("a dryRun line: {}", dry.stdout))["plan"]
            .clone(),
    )
    .unwrap();
    assert!(plan.start.is_empty(), "{plan:?}");
    assert_eq!(plan.skipped.len(), exported, "{plan:?}");
    assert!(
        plan.skipped
            .iter()
            .all(|s| s.reason.starts_with("already exported") && s.run_id.is_some()),
        "{plan:?}"
    );
    let mut c = export(&sb, &out);
    c.args(args).arg("--force");
    let forced = run(c).await;
    assert_eq!(forced.code, Some(0), "{}{}", forced.stdout, forced.stderr);
    assert_eq!(
        sb.stats().exports_started,
        before.exports_started + exported as u64,
        "each export started again"
    );
    sb.shutdown().await;
}

/// Runs the export for one invoice against a sandbox set up with `cfg`.
async fn refused(cfg: SandboxConfig, extra: &[&str], env: &[(&str, &str)]) -> Ran {
    let sb = GraphSandbox::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = export(&sb, &dir.path().join("out"));
    c.args(["--kind", "billedUsage"]).args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let ran = run(c).await;
    sb.shutdown().await;
    ran
}

fn refusal(status: u16, code: &str, message: &str) -> Option<GraphRefusal> {
    Some(GraphRefusal {
        status,
        code: code.into(),
        message: message.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permission_says_which() {
    let ran = refused(
        SandboxConfig {
            refuse_exports: refusal(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ),
            ..sandbox_config()
        },
        &["--invoice", "G026100001"],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(1), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("failed"), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("Hint:    missing permission PartnerBilling.Read.All"),
        "{}",
        ran.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_partner_tenant_says_so() {
    let ran = refused(
        SandboxConfig {
            refuse_exports: refusal(
                403,
                "Forbidden",
                "The tenant is not a partner tenant; partner billing reports are not available.",
            ),
            ..sandbox_config()
        },
        &["--invoice", "G026100001"],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stdout.contains("Hint:    not a partner tenant"),
        "{}",
        ran.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_invoice_says_so() {
    let ran = refused(
        SandboxConfig {
            known_invoices_only: true,
            ..sandbox_config()
        },
        &["--invoice", "G999999999"],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stdout.contains("Hint:    invoice not found"),
        "{}",
        ran.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_version_mistakes_name_the_setting() {
    let ran = refused(
        SandboxConfig {
            unsupported_versions: vec!["v1.0".into()],
            ..sandbox_config()
        },
        &["--invoice", "G026100001"],
        &[],
    )
    .await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stdout.contains(
            "Hint:    Graph API version v1.0 does not serve this export: set GRAPH_API_VERSION=beta"
        ),
        "{}",
        ran.stdout
    );
    let ran = refused(
        sandbox_config(),
        &["--invoice", "G026100001"],
        &[("GRAPH_API_VERSION", "v2.0")],
    )
    .await;
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("app setting GRAPH_API_VERSION: unknown Graph API version \"v2.0\""),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_logged_in_points_to_az_login() {
    // The Azure CLI, chosen with --credential; an `az` that answers as the real one does
    // before `az login`.
    let bin = tempfile::tempdir().unwrap();
    let az = bin.path().join("az");
    std::fs::write(
        &az,
        "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sb = GraphSandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = export(&sb, &dir.path().join("out"));
    c.env_remove("GRAPH_ACCESS_TOKEN")
        .env_remove("PARTNER_CENTER_ACCESS_TOKEN")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.path().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .args(["--invoice", "G026100001", "--credential", "azure-cli"]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("cannot get a Microsoft Graph token"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("hint: not signed in: run `az login`"),
        "{}",
        ran.stderr
    );
    assert_eq!(sb.stats().exports_started, 0);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_destination_is_refused_before_anything_starts() {
    let sb = GraphSandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let mut c = export(&sb, &file.join("out"));
    c.args(["--invoice", "G026100001"]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("cannot create the output folder")
            && ran.stderr.contains("choose another --out"),
        "{}",
        ran.stderr
    );
    assert_eq!(sb.stats().exports_started, 0);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_are_refused_for_real_endpoints() {
    let sb = GraphSandbox::start(sandbox_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = export(&sb, &dir.path().join("out"));
    c.env("GRAPH_BASE_URL", "https://graph.microsoft.com")
        .args(["--invoice", "G026100001"]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains(
            "GRAPH_ACCESS_TOKEN is accepted only for a test endpoint on loopback, but GRAPH_BASE_URL is https://graph.microsoft.com/"
        ),
        "{}",
        ran.stderr
    );
    sb.shutdown().await;
}

/// `export --partner ID` exports for one partner of a `PARTNERS` list, into its folder; with
/// several partners listed and no `--partner`, it says which to choose.
#[tokio::test]
async fn partner_selects_one_partner_of_the_list() {
    use partner_billing_local::graph_sandbox::SandboxPartner;
    use partner_billing_local::tokens::{partner_center_token, partner_graph_token};
    let contoso = SandboxPartner::new("contoso", today(), ("USD", "$"));
    let fabrikam = SandboxPartner::new("fabrikam", today(), ("EUR", "€"));
    let partners = format!(
        r#"{{"partners": [
            {{"id": "contoso", "tenantId": "{}", "credential": {{"kind": "azure-cli"}}}},
            {{"id": "fabrikam", "tenantId": "{}", "credential": {{"kind": "azure-cli"}}, "currencies": ["EUR"]}}]}}"#,
        contoso.tenant_id, fabrikam.tenant_id
    );
    let invoice = fabrikam.invoices[0].id.clone();
    let sb = GraphSandbox::start(SandboxConfig {
        partners: vec![contoso, fabrikam],
        ..sandbox_config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    let mut c = export(&sb, &out);
    c.env("PARTNERS", &partners).args(["--kind", "billedUsage"]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2), "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains("--partner is required: the configuration lists contoso, fabrikam"),
        "{}",
        ran.stderr
    );

    // Signed in to fabrikam's tenant (its tokens), exporting its invoice and its currency.
    let mut c = export(&sb, &out);
    c.env("PARTNERS", &partners)
        .env("GRAPH_ACCESS_TOKEN", partner_graph_token("fabrikam"))
        .env(
            "PARTNER_CENTER_ACCESS_TOKEN",
            partner_center_token("fabrikam"),
        )
        .args([
            "--partner",
            "fabrikam",
            "--kind",
            "billedUsage,unbilledUsage",
            "--months",
            "2026-10",
        ]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(0), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(&invoice), "{}", ran.stdout);
    assert!(ran.stdout.contains("EUR"), "{}", ran.stdout);
    let folder = out.join("partner-billing/fabrikam");
    assert!(folder.join("billed-usage").is_dir(), "{}", ran.stdout);
    assert!(folder.join("unbilled-usage").is_dir(), "{}", ran.stdout);
    assert!(!out.join("partner-billing/contoso").exists());
    sb.shutdown().await;
}

//! `serve` alone, as the Functions host runs it: readiness on `GET /`, and the documented
//! timer, Service Bus and HTTP payloads, quirks included.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::fixtures::json as fixture;
use test_support::{fast_sandbox, TestBed};

struct Handler {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Handler {
    async fn start(env: &[(String, String)]) -> Self {
        Self::start_with(env, Stdio::null).await
    }

    /// `output` makes the child's stdout and stderr (e.g. `Stdio::piped` to read them).
    async fn start_with(env: &[(String, String)], output: fn() -> Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_partner-billing-export"))
            .arg("serve")
            .envs(env.iter().cloned())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdout(output())
            .stderr(output())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{base}/")).send().await {
                assert_eq!(r.status(), 200);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "handler never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self {
            child,
            base,
            client,
        }
    }

    async fn invoke(&self, function: &str, envelope: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/{function}", self.base))
            .json(&envelope)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ct.starts_with("application/json"),
            "host requires JSON replies, got {ct}"
        );
        (status, r.json().await.unwrap())
    }
}

fn env_for(bed: &TestBed) -> Vec<(String, String)> {
    let mut env = bed.handler_identity.clone();
    env.extend([
        (
            "GRAPH_BASE_URL".into(),
            bed.sandbox.graph_base_url().to_string(),
        ),
        (
            "PARTNER_CENTER_BASE_URL".into(),
            bed.sandbox.partner_center_base_url().to_string(),
        ),
        (
            "SERVICEBUS_ENDPOINT".into(),
            format!("http://{}", "127.0.0.1:9"),
        ),
        ("DESTINATION_KIND".into(), "filesystem".into()),
        (
            "DESTINATION_DIRECTORY".into(),
            bed.dir.path().display().to_string(),
        ),
        // Unbilled only: a managed identity cannot discover invoices, and billed kinds with
        // neither discovery nor invoice ids are refused at start-up.
        ("EXPORT_KINDS".into(), "unbilledUsage".into()),
        ("INVOICE_DISCOVERY".into(), "off".into()),
        ("LOG_FORMAT".into(), "text".into()),
    ]);
    env
}

#[tokio::test]
async fn serve_handles_documented_payloads() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let h = Handler::start(&env_for(&bed)).await;

    // Timer with ScheduleStatus null (monitoring off); no billed kind configured → nothing to start.
    let (status, body) = h
        .invoke(
            "StartBilledExports",
            fixture("host/timer-start-exports-schedule-status-null.json"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["Logs"].to_string().contains("0 started"), "{body}");

    // HTTP payload mode: a list request, and a bad start naming the field.
    let (status, body) = h
        .invoke("Exports", fixture("host/http-get-exports.json"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["Outputs"]["res"]["statusCode"], 200);
    assert!(body["Outputs"]["res"]["body"]["runs"].is_array(), "{body}");
    let (_, body) = h
        .invoke(
            "Exports",
            fixture("host/http-post-exports-misspelled-field.json"),
        )
        .await;
    let res = &body["Outputs"]["res"];
    assert_eq!(res["statusCode"], 400);
    assert_eq!(res["headers"]["Content-Type"], "application/problem+json");
    assert!(res["body"]["detail"].as_str().unwrap().contains("inoiceId"));

    // Service Bus: a double-encoded poll for a run nobody knows is acknowledged (2xx) ...
    let (status, _) = h
        .invoke(
            "PollOperation",
            fixture("host/servicebus-poll-operation-double-encoded.json"),
        )
        .await;
    assert_eq!(status, 200);
    // ... and a body that is not a job fails the invocation so the message is redelivered / dead-lettered.
    let (status, body) = h
        .invoke("CopyPartition", json!({ "Data": { "message": "\"{\\\"hello\\\":1}\"" }, "Metadata": { "DeliveryCount": "1" } }))
        .await;
    assert_eq!(status, 500);
    assert!(body["Logs"].to_string().contains("copy job"), "{body}");
    // Unknown function.
    let (status, _) = h
        .invoke("NoSuchFunction", json!({"Data": {}, "Metadata": {}}))
        .await;
    assert_eq!(status, 404);
    drop(h.child);
}

#[tokio::test]
async fn serve_refuses_to_start_with_bad_settings() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_partner-billing-export"))
        .arg("serve")
        .env_clear()
        .env("DESTINATION_KIND", "filesystem")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DESTINATION_DIRECTORY"), "{err}");
}

/// The defaults must fit together: a plain managed identity cannot list invoices in Partner
/// Center, so billed exports with invoice discovery would never start. The handler refuses to
/// start and names the fix instead of failing every day.
#[tokio::test]
async fn serve_refuses_billed_discovery_with_a_plain_managed_identity() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_partner-billing-export"))
        .arg("serve")
        .env_clear()
        .env("DESTINATION_KIND", "filesystem")
        .env("DESTINATION_DIRECTORY", "/nonexistent-not-used")
        .env("SERVICEBUS_ENDPOINT", "http://127.0.0.1:9")
        .env("GRAPH_CREDENTIAL_KIND", "managed-identity")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GRAPH_CREDENTIAL_KIND"), "{err}");
    assert!(
        err.contains("cannot list invoices in Partner Center"),
        "{err}"
    );
    assert!(err.contains("federated-managed-identity"), "{err}");
    assert!(
        err.contains("INVOICE_DISCOVERY=off with EXPORT_INVOICE_IDS"),
        "{err}"
    );
}

/// The host grades a handler's stdout lines as Information and its stderr lines as Warning or
/// Error: info lines must reach stdout, warnings stderr, and neither the other stream.
#[tokio::test]
async fn serve_logs_info_to_stdout_and_warnings_to_stderr() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    // Unbilled only: this test is about where lines go, not about planning billed exports.
    let mut env = env_for(&bed);
    env.push(("EXPORT_KINDS".into(), "unbilledUsage".into()));
    let h = Handler::start_with(&env, Stdio::piped).await;
    // An invocation for a function that does not exist logs a warning.
    let (status, _) = h
        .invoke("NoSuchFunction", json!({"Data": {}, "Metadata": {}}))
        .await;
    assert_eq!(status, 404);
    let mut child = h.child;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("custom handler listening"),
        "stdout: {stdout}"
    );
    assert!(!stdout.contains("unknown function"), "stdout: {stdout}");
    assert!(
        stderr.contains("WARN") && stderr.contains("unknown function"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("listening"), "stderr: {stderr}");
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "no colour codes in pipes"
    );
}

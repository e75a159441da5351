//! Helpers shared by the Graph sandbox suites (`graph_sandbox_exports.rs`,
//! `graph_sandbox_data.rs`): a sandbox with test defaults and plain reqwest calls against it.
// Each suite uses its own subset of the helpers.
#![allow(dead_code, unused_imports)]

pub use std::io::Read;
pub use std::time::Duration;

pub use partner_billing_export::auth::Audience;
pub use partner_billing_export::billing::types::{AttributeSet, ExportKind};
pub use partner_billing_local::graph_sandbox::data::columns;
pub use partner_billing_local::graph_sandbox::{
    GraphSandbox, ManifestShape, SandboxConfig, SandboxInvoice,
};
pub use partner_billing_local::tokens::local_token;
pub use reqwest::{Client, Response, StatusCode};
pub use serde_json::{json, Value};

/// Defaults tuned for tests: no waiting, small partitions, a fixed "today".
pub fn base() -> SandboxConfig {
    SandboxConfig {
        retry_after_secs: 0,
        rows_per_partition: 20,
        today: Some(time::macros::date!(2026 - 02 - 14)),
        ..SandboxConfig::default()
    }
}

pub async fn sandbox(cfg: SandboxConfig) -> GraphSandbox {
    GraphSandbox::start(cfg).await.expect("sandbox starts")
}

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn export_url(sb: &GraphSandbox, version: &str, kind: ExportKind) -> String {
    format!(
        "{}{version}/reports/partners/billing/{}/export",
        sb.graph_base_url(),
        kind.api_path()
    )
}

pub fn body_for(kind: ExportKind, set: &str) -> Value {
    if kind.is_billed() {
        json!({"invoiceId": "G016907411", "attributeSet": set})
    } else {
        json!({"billingPeriod": "current", "currencyCode": "EUR", "attributeSet": set})
    }
}

pub async fn post(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> Response {
    client()
        .post(export_url(sb, "v1.0", kind))
        .bearer_auth(local_token(Audience::Graph))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs and returns the Location.
pub async fn start(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> String {
    let r = post(sb, kind, body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_string()
}

pub async fn get_graph(url: &str) -> Response {
    client()
        .get(url)
        .bearer_auth(local_token(Audience::Graph))
        .send()
        .await
        .unwrap()
}

/// Polls until the operation leaves the running states; returns every answer in order.
pub async fn poll_to_end(location: &str) -> Vec<(Option<String>, Value)> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        let r = get_graph(location).await;
        assert_eq!(r.status(), StatusCode::OK);
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let v: Value = r.json().await.unwrap();
        let running = v["@odata.type"] == "#microsoft.graph.partners.billing.runningOperation";
        seen.push((retry, v));
        if !running {
            return seen;
        }
    }
    panic!("operation never finished");
}

/// The manifest of a success answer, following the navigation link when there is one.
pub async fn manifest_of(op: &Value) -> Value {
    if op["resourceLocation"].is_object() {
        return op["resourceLocation"].clone();
    }
    let link = op["resourceLocation@odata.navigationLink"]
        .as_str()
        .unwrap();
    let r = get_graph(link).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub async fn export_manifest(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> Value {
    let loc = start(sb, kind, body).await;
    let answers = poll_to_end(&loc).await;
    manifest_of(&answers.last().unwrap().1).await
}

pub fn blob_url(manifest: &Value, i: usize) -> String {
    format!(
        "{}/{}?{}",
        manifest["rootDirectory"].as_str().unwrap(),
        manifest["blobs"][i]["name"].as_str().unwrap(),
        manifest["sasToken"].as_str().unwrap()
    )
}

pub async fn get_blob(url: &str) -> Response {
    client().get(url).send().await.unwrap()
}

pub fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

pub async fn assert_auth_failed(r: Response) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["x-ms-error-code"], "AuthenticationFailed");
    assert_eq!(r.headers()["content-type"], "application/xml");
    let body = r.text().await.unwrap();
    assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>"), "{body}");
}

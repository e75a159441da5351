//! The Graph partner billing sandbox, driven over loopback HTTP with plain reqwest, checked
//! against the wire format of docs/graph-api.md (202 + Location, operation shapes, manifest,
//! SAS-guarded blobs, Partner Center invoices).

use std::io::Read;
use std::time::Duration;

use partner_billing_export::auth::Audience;
use partner_billing_export::billing::types::{AttributeSet, ExportKind};
use partner_billing_local::graph_sandbox::data::columns;
use partner_billing_local::graph_sandbox::{
    GraphSandbox, ManifestShape, SandboxConfig, SandboxInvoice,
};
use partner_billing_local::tokens::local_token;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

/// Defaults tuned for tests: no waiting, small partitions, a fixed "today".
fn base() -> SandboxConfig {
    SandboxConfig {
        retry_after_secs: 0,
        rows_per_partition: 20,
        today: Some(time::macros::date!(2026 - 02 - 14)),
        ..SandboxConfig::default()
    }
}

async fn sandbox(cfg: SandboxConfig) -> GraphSandbox {
    GraphSandbox::start(cfg).await.expect("sandbox starts")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn export_url(sb: &GraphSandbox, version: &str, kind: ExportKind) -> String {
    format!(
        "{}{version}/reports/partners/billing/{}/export",
        sb.graph_base_url(),
        kind.api_path()
    )
}

fn body_for(kind: ExportKind, set: &str) -> Value {
    if kind.is_billed() {
        json!({"invoiceId": "G016907411", "attributeSet": set})
    } else {
        json!({"billingPeriod": "current", "currencyCode": "EUR", "attributeSet": set})
    }
}

async fn post(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> Response {
    client()
        .post(export_url(sb, "v1.0", kind))
        .bearer_auth(local_token(Audience::Graph))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POSTs and returns the Location.
async fn start(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> String {
    let r = post(sb, kind, body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_string()
}

async fn get_graph(url: &str) -> Response {
    client()
        .get(url)
        .bearer_auth(local_token(Audience::Graph))
        .send()
        .await
        .unwrap()
}

/// Polls until the operation leaves the running states; returns every answer in order.
async fn poll_to_end(location: &str) -> Vec<(Option<String>, Value)> {
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
async fn manifest_of(op: &Value) -> Value {
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

async fn export_manifest(sb: &GraphSandbox, kind: ExportKind, body: &Value) -> Value {
    let loc = start(sb, kind, body).await;
    let answers = poll_to_end(&loc).await;
    manifest_of(&answers.last().unwrap().1).await
}

fn blob_url(manifest: &Value, i: usize) -> String {
    format!(
        "{}/{}?{}",
        manifest["rootDirectory"].as_str().unwrap(),
        manifest["blobs"][i]["name"].as_str().unwrap(),
        manifest["sasToken"].as_str().unwrap()
    )
}

async fn get_blob(url: &str) -> Response {
    client().get(url).send().await.unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

async fn assert_auth_failed(r: Response) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["x-ms-error-code"], "AuthenticationFailed");
    assert_eq!(r.headers()["content-type"], "application/xml");
    let body = r.text().await.unwrap();
    assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>"), "{body}");
}

#[tokio::test]
async fn every_kind_and_version_answers_202_with_an_absolute_location() {
    let sb = sandbox(base()).await;
    for version in ["v1.0", "beta"] {
        for kind in ExportKind::ALL {
            let r = client()
                .post(export_url(&sb, version, kind))
                .bearer_auth(local_token(Audience::Graph))
                .json(&body_for(kind, "basic"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{version} {kind}");
            let loc = r.headers()["location"].to_str().unwrap().to_string();
            let prefix = format!(
                "{}{version}/reports/partners/billing/operations/",
                sb.graph_base_url()
            );
            assert!(loc.starts_with(&prefix), "{loc}");
            uuid::Uuid::parse_str(&loc[prefix.len()..]).unwrap();
            assert!(r.bytes().await.unwrap().is_empty());
        }
    }
    assert_eq!(sb.stats().exports_started, 8);
    sb.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let sb = sandbox(base()).await;
    let cases = [
        (ExportKind::BilledUsage, json!({}), "invoiceId"),
        (
            ExportKind::BilledReconciliation,
            json!({"invoiceId": 7}),
            "invoiceId",
        ),
        (
            ExportKind::BilledUsage,
            json!({"invoiceId": "G1", "attributeSet": "everything"}),
            "attributeSet",
        ),
        (
            ExportKind::UnbilledUsage,
            json!({"currencyCode": "USD"}),
            "billingPeriod",
        ),
        (
            ExportKind::UnbilledUsage,
            json!({"billingPeriod": "next", "currencyCode": "USD"}),
            "billingPeriod",
        ),
        (
            ExportKind::UnbilledReconciliation,
            json!({"billingPeriod": "last"}),
            "currencyCode",
        ),
        (
            ExportKind::UnbilledReconciliation,
            json!({"billingPeriod": "last", "currencyCode": "US"}),
            "currencyCode",
        ),
        (
            ExportKind::UnbilledUsage,
            json!({"billingPeriod": "last", "currencyCode": "USD", "invoiceId": "G1"}),
            "invoiceId",
        ),
    ];
    for (kind, body, field) in cases {
        let r = post(&sb, kind, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "BadRequest");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{msg} should name {field}");
    }
    // Not JSON at all, and not declared as JSON.
    let url = export_url(&sb, "v1.0", ExportKind::BilledUsage);
    let r = client()
        .post(&url)
        .bearer_auth(local_token(Audience::Graph))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client()
        .post(&url)
        .bearer_auth(local_token(Audience::Graph))
        .header("content-type", "text/plain")
        .body(r#"{"invoiceId":"G1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Bodies are bounded.
    let big = format!(r#"{{"invoiceId":"{}"}}"#, "G".repeat(100 * 1024));
    let r = client()
        .post(&url)
        .bearer_auth(local_token(Audience::Graph))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sb.stats().exports_started, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn graph_needs_the_graph_token_and_partner_center_its_own() {
    let sb = sandbox(base()).await;
    let url = export_url(&sb, "v1.0", ExportKind::BilledUsage);
    let body = body_for(ExportKind::BilledUsage, "full");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*format!("Bearer {}", local_token(Audience::PartnerCenter))),
        Some(&*format!("Basic {}", local_token(Audience::Graph))),
    ] {
        let mut rb = client().post(&url).json(&body);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
        assert!(v["error"]["message"].is_string());
    }
    // Operation GETs need it too.
    let loc = start(&sb, ExportKind::BilledUsage, &body).await;
    let r = client().get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let invoices = format!("{}/v1/invoices", sb.partner_center_base_url());
    let r = client()
        .get(&invoices)
        .bearer_auth(local_token(Audience::Graph))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client()
        .get(&invoices)
        .bearer_auth(local_token(Audience::PartnerCenter))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sb.stats().unauthorized, 6);
    sb.shutdown().await;
}

#[tokio::test]
async fn operation_runs_then_succeeds_with_retry_after() {
    let sb = GraphSandbox::start(SandboxConfig {
        polls_before_done: 3,
        retry_after_secs: 7,
        manifest_shape: ManifestShape::Link,
        ..base()
    })
    .await
    .unwrap();
    let loc = start(
        &sb,
        ExportKind::BilledUsage,
        &body_for(ExportKind::BilledUsage, "full"),
    )
    .await;
    let answers = poll_to_end(&loc).await;
    let statuses: Vec<&str> = answers
        .iter()
        .map(|(_, v)| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["notStarted", "running", "running", "succeeded"]);
    for (retry, v) in &answers[..3] {
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(
            v["@odata.type"],
            "#microsoft.graph.partners.billing.runningOperation"
        );
        let created = v["createdDateTime"].as_str().unwrap();
        assert_eq!(created.len(), 19, "no offset, no fraction: {created}");
        let last = v["lastActionDateTime"].as_str().unwrap();
        assert_eq!(last.len(), 28, "7 fractional digits and Z: {last}");
        assert!(last.ends_with('Z'));
        assert_eq!(v["id"].as_str().unwrap(), loc.rsplit('/').next().unwrap());
    }
    let (retry, done) = answers.last().unwrap();
    assert_eq!(retry, &None);
    assert_eq!(
        done["@odata.type"],
        "#microsoft.graph.partners.billing.exportSuccessOperation"
    );
    let link = done["resourceLocation@odata.navigationLink"]
        .as_str()
        .unwrap();
    assert!(link.starts_with(&format!(
        "{}v1.0/reports/partners/billing/manifests/",
        sb.graph_base_url()
    )));
    assert!(done.get("resourceLocation").is_none());
    let m = manifest_of(done).await;
    assert_eq!(m["schemaVersion"], "2");
    assert_eq!(m["dataFormat"], "compressedJSON");
    assert_eq!(m["partitionType"], "default");
    assert_eq!(m["blobCount"], 3);
    assert_eq!(m["partnerTenantId"], sb.partner_tenant_id().to_string());
    assert_eq!(m["id"], link.rsplit('/').next().unwrap());
    let root = m["rootDirectory"].as_str().unwrap();
    assert!(
        root.starts_with(&format!(
            "{}/billedusagefastpath/v1/PartnerTenantId={}/BillingMonth=202601/InvoiceId=G016907411/InvoiceVersion=202602/Fragment=full/PartitionType=default",
            sb.blob_base_url(),
            sb.partner_tenant_id()
        )),
        "{root}"
    );
    for b in m["blobs"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        assert!(name.starts_with("part-000") && name.ends_with(".c000.json.gz"));
        assert_eq!(b["partitionValue"], "default");
    }
    let sas = m["sasToken"].as_str().unwrap();
    assert!(sas.starts_with("skoid=") && sas.contains("&sr=d&sp=rl&sdd=7&sig="));
    assert!(sas.contains("%3A"));
    let s = sb.stats();
    assert_eq!((s.operation_gets, s.manifest_gets), (4, 1));
    sb.shutdown().await;
}

#[tokio::test]
async fn inline_manifest_and_completed_status_variants() {
    let sb = sandbox(SandboxConfig {
        manifest_shape: ManifestShape::Inline,
        success_status: "completed".into(),
        polls_before_done: 0,
        ..base()
    })
    .await;
    let loc = start(
        &sb,
        ExportKind::UnbilledUsage,
        &body_for(ExportKind::UnbilledUsage, "full"),
    )
    .await;
    let answers = poll_to_end(&loc).await;
    assert_eq!(answers.len(), 1);
    let done = &answers[0].1;
    assert_eq!(done["status"], "completed");
    assert!(done.get("resourceLocation@odata.navigationLink").is_none());
    let m = &done["resourceLocation"];
    let root = m["rootDirectory"].as_str().unwrap();
    let tail = root
        .strip_prefix(&format!("{}/unbilledusagefastpath/v1/", sb.blob_base_url()))
        .unwrap();
    let (snapshot, rest) = tail.split_once('/').unwrap();
    assert!(
        snapshot.len() == 12 && snapshot.starts_with("20260214"),
        "{snapshot}"
    );
    assert_eq!(
        rest,
        format!(
            "PartnerTenantId={}/BillingMonth=202602/Currency=EUR/Fragment=full/PartitionType=default",
            sb.partner_tenant_id()
        )
    );
    // The blob is readable straight from the inline manifest's SAS.
    let r = get_blob(&blob_url(m, 0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sb.stats().manifest_gets, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn alternate_shape_is_fixed_per_export_and_the_export_is_reserved_the_same() {
    let sb = sandbox(base()).await;
    let mut shapes = std::collections::HashSet::new();
    for n in 0..12 {
        let body = json!({"invoiceId": format!("G00000{n:04}")});
        let loc = start(&sb, ExportKind::BilledReconciliation, &body).await;
        let done = poll_to_end(&loc).await.pop().unwrap().1;
        let inline = done["resourceLocation"].is_object();
        shapes.insert(inline);
        // Asking again: same shape, same manifest id and eTag, fresh operation.
        let loc2 = start(&sb, ExportKind::BilledReconciliation, &body).await;
        assert_ne!(loc, loc2);
        let done2 = poll_to_end(&loc2).await.pop().unwrap().1;
        assert_eq!(done2["resourceLocation"].is_object(), inline);
        let (m1, m2) = (manifest_of(&done).await, manifest_of(&done2).await);
        assert_eq!(m1["id"], m2["id"]);
        assert_eq!(m1["eTag"], m2["eTag"]);
        assert_eq!(m1["rootDirectory"], m2["rootDirectory"]);
    }
    assert_eq!(shapes.len(), 2, "both shapes appear");
    sb.shutdown().await;
}

#[tokio::test]
async fn failing_invoice_and_currency_end_in_failed_operation_5000() {
    let sb = sandbox(SandboxConfig {
        fail_invoices: vec!["G000000404".into(), "JPY".into()],
        ..base()
    })
    .await;
    for (kind, body) in [
        (ExportKind::BilledUsage, json!({"invoiceId": "g000000404"})),
        (
            ExportKind::UnbilledReconciliation,
            json!({"billingPeriod": "last", "currencyCode": "jpy"}),
        ),
    ] {
        let loc = start(&sb, kind, &body).await;
        let done = poll_to_end(&loc).await.pop().unwrap().1;
        assert_eq!(
            done["@odata.type"],
            "#microsoft.graph.partners.billing.failedOperation"
        );
        assert_eq!(done["status"], "failed");
        assert_eq!(
            done["error"],
            json!({"message": "No data available", "code": "5000"})
        );
    }
    assert!(sb.served_partitions().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn first_operation_goes_gone_and_a_restarted_export_works() {
    let sb = sandbox(SandboxConfig {
        gone_after_polls: Some(1),
        polls_before_done: 2,
        ..base()
    })
    .await;
    let body = body_for(ExportKind::BilledUsage, "full");
    let loc = start(&sb, ExportKind::BilledUsage, &body).await;
    assert_eq!(get_graph(&loc).await.status(), StatusCode::OK);
    let r = get_graph(&loc).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["code"].is_string());
    let loc2 = start(&sb, ExportKind::BilledUsage, &body).await;
    let done = poll_to_end(&loc2).await.pop().unwrap().1;
    assert_eq!(done["status"], "succeeded");
    // An unknown operation is 404.
    let unknown = format!(
        "{}v1.0/reports/partners/billing/operations/{}",
        sb.graph_base_url(),
        uuid::Uuid::nil()
    );
    assert_eq!(get_graph(&unknown).await.status(), StatusCode::NOT_FOUND);
    sb.shutdown().await;
}

#[tokio::test]
async fn foreign_location_points_off_host() {
    let sb = sandbox(SandboxConfig {
        foreign_location: true,
        ..base()
    })
    .await;
    let loc = start(
        &sb,
        ExportKind::BilledUsage,
        &body_for(ExportKind::BilledUsage, "full"),
    )
    .await;
    assert!(loc.starts_with("https://graph.evil.example/v1.0/reports/partners/billing/operations/"));
    sb.shutdown().await;
}

#[tokio::test]
async fn blobs_hold_gzip_json_lines_with_the_documented_columns() {
    let sb = sandbox(SandboxConfig {
        partitions: 2,
        rows_per_partition: 17,
        ..base()
    })
    .await;
    for kind in ExportKind::ALL {
        for (set_name, set) in [("full", AttributeSet::Full), ("basic", AttributeSet::Basic)] {
            let m = export_manifest(&sb, kind, &body_for(kind, set_name)).await;
            let want: Vec<&str> = columns(kind, set);
            let expected_len = match (kind.is_usage(), set) {
                (true, AttributeSet::Full) => 54,
                (true, AttributeSet::Basic) => 30,
                (false, AttributeSet::Full) => 47,
                (false, AttributeSet::Basic) => 35,
            };
            assert_eq!(want.len(), expected_len);
            for i in 0..2 {
                let r = get_blob(&blob_url(&m, i)).await;
                assert_eq!(r.status(), StatusCode::OK);
                let h = r.headers().clone();
                assert_eq!(h["content-type"], "application/octet-stream");
                assert!(h.get("content-encoding").is_none());
                assert_eq!(h["x-ms-blob-type"], "BlockBlob");
                assert_eq!(h["accept-ranges"], "bytes");
                assert!(h.contains_key("etag") && h.contains_key("last-modified"));
                let bytes = r.bytes().await.unwrap();
                assert_eq!(h["content-length"], bytes.len().to_string().as_str());
                use base64::Engine;
                let md5 = base64::engine::general_purpose::STANDARD
                    .decode(h["content-md5"].as_bytes())
                    .unwrap();
                assert_eq!(hex::encode(md5), served_md5(&sb, &m, i));
                let text = gunzip(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                if !kind.is_usage() && i == 1 {
                    // A reconciliation export's last partition ends with its Azure lines.
                    assert!(lines.len() > 17, "{kind}: {} lines", lines.len());
                } else {
                    assert_eq!(lines.len(), 17);
                }
                for line in lines {
                    let obj: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
                    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                    let mut sorted_want = want.clone();
                    sorted_want.sort_unstable();
                    let mut sorted_keys = keys.clone();
                    sorted_keys.sort_unstable();
                    assert_eq!(sorted_keys, sorted_want, "{kind} {set_name}");
                    if kind.is_billed() {
                        assert_eq!(obj["InvoiceNumber"], "G016907411");
                    }
                    let ccy = if kind.is_usage() {
                        "BillingCurrency"
                    } else {
                        "Currency"
                    };
                    let want_ccy = if kind.is_billed() { "USD" } else { "EUR" };
                    assert_eq!(obj[ccy], want_ccy);
                    assert!(obj["UnitPrice"].is_number());
                    uuid::Uuid::parse_str(obj["CustomerId"].as_str().unwrap()).unwrap();
                }
            }
        }
    }
    let s = sb.stats();
    assert_eq!(s.blob_gets, 16);
    assert!(s.blob_bytes_served > 0);
    assert_eq!(sb.served_partitions().len(), 16);
    // Each served partition reports its real row count (Azure lines included).
    for p in sb.served_partitions() {
        assert_eq!(p.rows as usize, gunzip(&p.bytes).lines().count());
        assert!(p.rows >= 17);
    }
    sb.shutdown().await;
}

fn served_md5(sb: &GraphSandbox, m: &Value, i: usize) -> String {
    let name = m["blobs"][i]["name"].as_str().unwrap();
    sb.served_partitions()
        .into_iter()
        .find(|p| p.name == name && p.root_directory == m["rootDirectory"].as_str().unwrap())
        .unwrap()
        .md5
}

#[tokio::test]
async fn empty_exports_have_no_blobs() {
    let sb = sandbox(SandboxConfig {
        partitions: 0,
        ..base()
    })
    .await;
    let m = export_manifest(
        &sb,
        ExportKind::BilledUsage,
        &body_for(ExportKind::BilledUsage, "full"),
    )
    .await;
    assert_eq!(m["blobCount"], 0);
    assert_eq!(m["blobs"], json!([]));
    sb.shutdown().await;
}

#[tokio::test]
async fn sas_is_checked_tampering_revocation_and_expiry() {
    let sb = sandbox(base()).await;
    let body = body_for(ExportKind::BilledUsage, "full");
    let m = export_manifest(&sb, ExportKind::BilledUsage, &body).await;
    let url = blob_url(&m, 0);
    assert_eq!(get_blob(&url).await.status(), StatusCode::OK);

    // A changed signature, a widened permission, a missing SAS, another directory.
    let sig_at = url.find("&sig=").unwrap() + 5;
    let mut tampered = url.clone();
    let c = if &url[sig_at..sig_at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(sig_at..sig_at + 1, c);
    assert_auth_failed(get_blob(&tampered).await).await;
    assert_auth_failed(get_blob(&url.replace("sp=rl", "sp=rwl")).await).await;
    assert_auth_failed(get_blob(url.split('?').next().unwrap()).await).await;
    assert_auth_failed(
        get_blob(&url.replace("InvoiceId=G016907411", "InvoiceId=G016907412")).await,
    )
    .await;

    // Revocation: the old SAS stops, a fresh manifest GET mints a working one.
    sb.expire_all_sas();
    assert_auth_failed(get_blob(&url).await).await;
    let loc = start(&sb, ExportKind::BilledUsage, &body).await;
    let fresh = manifest_of(&poll_to_end(&loc).await.pop().unwrap().1).await;
    assert_ne!(fresh["sasToken"], m["sasToken"]);
    assert_eq!(
        get_blob(&blob_url(&fresh, 0)).await.status(),
        StatusCode::OK
    );
    assert_eq!(sb.stats().sas_rejections, 5);
    sb.shutdown().await;

    // Time: a zero lifetime mints tokens that are expired on arrival.
    let sb = sandbox(SandboxConfig {
        sas_ttl: Duration::ZERO,
        ..base()
    })
    .await;
    let m = export_manifest(&sb, ExportKind::BilledUsage, &body).await;
    let r = get_blob(&blob_url(&m, 0)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Signed expiry time"));
    sb.shutdown().await;
}

#[tokio::test]
async fn ranges_head_and_unknown_blobs() {
    let sb = sandbox(base()).await;
    let m = export_manifest(
        &sb,
        ExportKind::UnbilledUsage,
        &body_for(ExportKind::UnbilledUsage, "full"),
    )
    .await;
    let url = blob_url(&m, 1);
    let whole = get_blob(&url).await.bytes().await.unwrap();
    let len = whole.len();
    assert!(len > 100);

    for (header, value) in [("range", "bytes=10-49"), ("x-ms-range", "bytes=10-49")] {
        let r = client()
            .get(&url)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes 10-49/{len}").as_str()
        );
        assert_eq!(r.headers()["content-length"], "40");
        assert_eq!(r.bytes().await.unwrap(), whole.slice(10..50));
    }
    let r = client()
        .get(&url)
        .header("range", format!("bytes={}-", len - 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), whole.slice(len - 5..));
    let r = client()
        .get(&url)
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let r = client().head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    assert!(r.headers().contains_key("content-md5"));

    // Same directory (so the SAS is valid), unknown name.
    let missing = url.replace(
        m["blobs"][1]["name"].as_str().unwrap(),
        "part-99999-x.c000.json.gz",
    );
    let r = get_blob(&missing).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["x-ms-error-code"], "BlobNotFound");
    // Traversal attempts never reach a lookup.
    let root = m["rootDirectory"].as_str().unwrap();
    let sas = m["sasToken"].as_str().unwrap();
    for evil in ["%2e%2e/%2e%2e/x", "a%2Fb", "x%00"] {
        let r = get_blob(&format!("{root}/{evil}?{sas}")).await;
        assert!(r.status().is_client_error(), "{evil}: {}", r.status());
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_bytes_other_seed_other_bytes() {
    async fn partitions(seed: u64) -> Vec<(String, bytes::Bytes)> {
        let sb = sandbox(SandboxConfig { seed, ..base() }).await;
        for kind in [ExportKind::BilledUsage, ExportKind::UnbilledReconciliation] {
            export_manifest(&sb, kind, &body_for(kind, "full")).await;
        }
        // Strip the port: two sandboxes listen on different ones.
        let origin = sb.blob_base_url().to_string();
        let out = sb
            .served_partitions()
            .into_iter()
            .map(|p| {
                (
                    format!("{}/{}", p.root_directory.replacen(&origin, "", 1), p.name),
                    p.bytes,
                )
            })
            .collect();
        sb.shutdown().await;
        out
    }
    let a = partitions(42).await;
    let b = partitions(42).await;
    let c = partitions(43).await;
    assert_eq!(a.len(), 6);
    assert_eq!(a, b);
    for ((na, ba), (nc, bc)) in a.iter().zip(&c) {
        assert_ne!(na, nc);
        assert_ne!(ba, bc);
    }
}

#[tokio::test]
async fn partner_center_pages_invoices() {
    let inv = |n: u32| SandboxInvoice {
        id: format!("G{n:09}"),
        invoice_date: time::macros::date!(2026 - 01 - 08),
        billing_period_start: time::macros::date!(2025 - 12 - 01),
        billing_period_end: time::macros::date!(2025 - 12 - 31),
        total_charges: 100.0 + f64::from(n),
        paid_amount: 0.0,
        currency_code: "USD".into(),
        currency_symbol: "$".into(),
        document_type: "Invoice".into(),
        invoice_type: "Recurring".into(),
    };
    let sb = sandbox(SandboxConfig {
        invoices: (0..5).map(inv).collect(),
        ..base()
    })
    .await;
    let mut url = format!(
        "{}/v1/invoices?size=2&offset=0",
        sb.partner_center_base_url()
    );
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let v: Value = client()
            .get(&url)
            .bearer_auth(local_token(Audience::PartnerCenter))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        assert_eq!(v["totalCount"], 5);
        assert_eq!(v["attributes"]["objectType"], "Collection");
        assert_eq!(v["links"]["self"]["method"], "GET");
        for item in v["items"].as_array().unwrap() {
            assert_eq!(item["documentType"], "Invoice");
            assert_eq!(item["invoiceType"], "Recurring");
            assert_eq!(item["billingPeriodStartDate"], "2025-12-01T00:00:00Z");
            assert!(item["totalCharges"].is_number());
            ids.push(item["id"].as_str().unwrap().to_string());
        }
        match v["links"]["next"]["uri"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, (0..5).map(|n| inv(n).id).collect::<Vec<_>>());
    sb.shutdown().await;

    // The default list: previous month's G invoices, a credit note and a legacy D invoice.
    let sb = sandbox(base()).await;
    let v: Value = client()
        .get(format!("{}/v1/invoices", sb.partner_center_base_url()))
        .bearer_auth(local_token(Audience::PartnerCenter))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["documentType"] == "Credit Note"));
    assert!(items
        .iter()
        .any(|i| i["id"].as_str().unwrap().starts_with('D')));
    assert!(v["links"].get("next").is_none());
    sb.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_graph_errors() {
    let sb = sandbox(base()).await;
    let base_url = sb.graph_base_url();
    for path in [
        "v1.0/reports/partners/billing/usage/everything/export",
        "v2.0/reports/partners/billing/usage/billed/export",
        "nothing/here",
    ] {
        let r = client()
            .post(format!("{base_url}{path}"))
            .bearer_auth(local_token(Audience::Graph))
            .json(&json!({"invoiceId": "G1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string());
    }
    let r = get_graph(&export_url(&sb, "v1.0", ExportKind::BilledUsage)).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A beta export's navigation link stays on beta.
    let sb2 = sandbox(SandboxConfig {
        manifest_shape: ManifestShape::Link,
        ..base()
    })
    .await;
    let r = client()
        .post(export_url(&sb2, "beta", ExportKind::BilledUsage))
        .bearer_auth(local_token(Audience::Graph))
        .json(&json!({"invoiceId": "G1"}))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let done = poll_to_end(&loc).await.pop().unwrap().1;
    let link = done["resourceLocation@odata.navigationLink"]
        .as_str()
        .unwrap();
    assert!(
        link.contains("/beta/reports/partners/billing/manifests/"),
        "{link}"
    );
    sb.shutdown().await;
    sb2.shutdown().await;
}

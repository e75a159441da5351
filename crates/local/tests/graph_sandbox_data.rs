//! The Graph sandbox's data: SAS-guarded blobs of gzip JSON lines, deterministic per seed, and
//! Partner Center invoices, driven over loopback HTTP with plain reqwest and checked against
//! docs/graph-api.md.

mod sandbox_support;

use sandbox_support::*;

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

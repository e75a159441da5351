//! The Graph sandbox's export endpoints and operations, driven over loopback HTTP with plain
//! reqwest, checked against the wire format of docs/graph-api.md (202 + Location, request
//! validation, tokens per audience, operation shapes, manifests).

mod sandbox_support;

use sandbox_support::*;

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

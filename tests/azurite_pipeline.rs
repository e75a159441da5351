//! The pipeline with the production blob sink on Azurite: Microsoft's partitions in one Azurite
//! account (served by the sandbox with real SAS), copied server-side into the partner account.

use std::time::Duration;

use partner_billing_export::adapters::storage::CopyMethod;
use partner_billing_export::billing::{AttributeSet, ExportKind, ExportRequest};
use partner_billing_export::pipeline::{RunState, Trigger};
use partner_billing_local::azurite::{Azurite, DEV_ACCOUNT, PARTNER_ACCOUNT, SAS_VERSION};
use partner_billing_local::graph_sandbox::{ExternalBlobStore, SandboxConfig};
use test_support::{fast_sandbox, TestBed};

#[tokio::test]
async fn server_side_copies_and_a_rerun_that_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let az = Azurite::start(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &dir.path().join("azurite"),
    )
    .await
    .expect("Azurite (run scripts/test.sh, or npm ci)");
    let http = reqwest::Client::new();
    az.create_container(&http, PARTNER_ACCOUNT, "billing-exports")
        .await
        .unwrap();
    let sandbox = SandboxConfig {
        blob_store: Some(ExternalBlobStore {
            account_url: az.account_url(DEV_ACCOUNT),
            account: az.account(DEV_ACCOUNT).clone(),
        }),
        ..fast_sandbox()
    };
    let sas = az.account(PARTNER_ACCOUNT).sas(
        "rwdlac",
        time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
    );
    let account_url = az.account_url(PARTNER_ACCOUNT).to_string();
    let bed = TestBed::start(
        sandbox,
        &[
            ("DESTINATION_KIND", "blob"),
            ("DESTINATION_ACCOUNT_URL", &account_url),
            ("DESTINATION_SAS", &sas),
        ],
    )
    .await;
    let req = ExportRequest::billed(
        ExportKind::BilledReconciliation,
        "G000000201".parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap();

    let first = bed.start_new(req.clone(), Trigger::Timer).await;
    bed.drain(Duration::from_secs(60)).await;
    let first = bed.run(&first.run_id).await;
    assert_eq!(first.state, RunState::Completed, "{:?}", first.failure);
    assert!(
        first
            .parts
            .iter()
            .all(|p| p.method == Some(CopyMethod::ServerSide)),
        "{:?}",
        first.parts
    );
    // The partner account holds exactly what the sandbox served, byte for byte.
    let served = bed.sandbox.served_partitions();
    for p in &first.parts {
        let url = format!("{account_url}/billing-exports/{}?{sas}", p.dest);
        let got = http
            .get(url)
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let want = served.iter().find(|s| s.name == p.name).unwrap();
        assert_eq!(&got[..], &want.bytes[..], "{}", p.name);
    }

    // The same export again: same data version, every copy skipped by its recorded identity.
    let second = bed.start_new(req, Trigger::Http).await;
    bed.drain(Duration::from_secs(60)).await;
    let second = bed.run(&second.run_id).await;
    assert_eq!(second.state, RunState::Completed);
    assert_eq!(second.output_folder, first.output_folder);
    assert!(
        second
            .parts
            .iter()
            .all(|p| p.method == Some(CopyMethod::Skipped)),
        "{:?}",
        second.parts
    );
    let completed = bed.events_of_type("ExportCompleted");
    assert_eq!(completed.len(), 2);
    assert!(completed.iter().all(|e| !e.to_string().contains("sig=")));
    az.stop().await;
}

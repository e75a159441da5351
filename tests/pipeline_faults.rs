//! The pipeline against the Graph sandbox and the stand-ins, one message at a time, with the
//! faults users meet: duplicated starts, redelivered messages, expired SAS, failed operations,
//! expired operations, and a Location on a foreign host.

use std::time::Duration;

use partner_billing_export::billing::{AttributeSet, ExportKind, ExportRequest};
use partner_billing_export::pipeline::{CopyJob, Handled, RunState, StartOutcome, Trigger};
use partner_billing_local::graph_sandbox::SandboxConfig;
use test_support::{fast_sandbox, TestBed};

const DRAIN: Duration = Duration::from_secs(60);

fn billed(invoice: &str) -> ExportRequest {
    ExportRequest::billed(
        ExportKind::BilledUsage,
        invoice.parse().unwrap(),
        AttributeSet::Full,
    )
    .unwrap()
}

fn unbilled_usd() -> ExportRequest {
    ExportRequest::unbilled(
        ExportKind::UnbilledReconciliation,
        "current".parse().unwrap(),
        "USD".parse().unwrap(),
        AttributeSet::Basic,
    )
    .unwrap()
}

#[tokio::test]
async fn duplicate_start_and_redelivered_copy_produce_no_duplicate_data() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let first = bed
        .app
        .pipeline
        .start(billed("G000000101"), Trigger::Http)
        .await
        .unwrap();
    let StartOutcome::Started(run) = first else {
        panic!("expected a new run, got {first:?}")
    };
    let again = bed
        .app
        .pipeline
        .start(billed("G000000101"), Trigger::Timer)
        .await
        .unwrap();
    assert!(
        matches!(&again, StartOutcome::Duplicate(r) if r.run_id == run.run_id),
        "{again:?}"
    );
    assert_eq!(
        bed.sandbox.stats().exports_started,
        1,
        "a duplicate start must not POST again"
    );

    bed.drain(DRAIN).await;
    let done = bed.run(&run.run_id).await;
    assert_eq!(done.state, RunState::Completed);
    let files_before = bed.output_files();

    // At-least-once delivery: the same copy job arrives again after completion.
    let job = CopyJob::new(run.run_id.clone(), 0);
    let h = bed.app.pipeline.handle_copy(&job, 2).await.unwrap();
    assert!(matches!(h, Handled::Ignored(_)), "{h:?}");
    // And a redelivered poll of an already consumed sequence number.
    let h = bed
        .app
        .pipeline
        .handle_poll(&partner_billing_export::pipeline::PollJob::new(
            run.run_id.clone(),
            0,
        ))
        .await
        .unwrap();
    assert!(matches!(h, Handled::Ignored(_)), "{h:?}");

    assert_eq!(
        bed.output_files(),
        files_before,
        "redelivery must not change the output"
    );
    assert_eq!(
        bed.events_of_type("ExportCompleted").len(),
        1,
        "exactly one completion event"
    );
    assert_eq!(bed.events_of_type("ExportStarted").len(), 1);
    assert_eq!(done.parts_done(), done.parts.len());
}

#[tokio::test]
async fn redelivered_copy_while_copying_is_counted_once() {
    let bed = TestBed::start(
        SandboxConfig {
            partitions: 3,
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let run = bed.start_new(billed("G000000102"), Trigger::Http).await;
    // Pump polls until the fan-out, keeping the copy jobs queued.
    let copies = bed.pump_until_copies(3).await;
    // Deliver part 0 twice (a crash after copying but before completing the message).
    let h1 = bed.process(&copies[0]).await.unwrap();
    let again = bed
        .app
        .pipeline
        .handle_copy(&CopyJob::new(run.run_id.clone(), 0), 2)
        .await
        .unwrap();
    assert!(matches!(h1, Handled::Copied { part: 0, .. }), "{h1:?}");
    assert!(matches!(again, Handled::Ignored(_)), "{again:?}");
    for d in &copies[1..] {
        bed.process(d).await.unwrap();
    }
    let done = bed.run(&run.run_id).await;
    assert_eq!(done.state, RunState::Completed);
    let data_files = bed
        .output_files()
        .keys()
        .filter(|k| k.ends_with(".json.gz") && !k.contains("/."))
        .count();
    assert_eq!(data_files, 3, "one file per partition");
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

#[tokio::test]
async fn expired_sas_during_copy_is_refreshed_from_graph() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let run = bed.start_new(unbilled_usd(), Trigger::Http).await;
    let copies = bed.pump_until_copies(2).await;
    // The SAS the pipeline cached at fan-out stops working before any copy runs.
    bed.sandbox.expire_all_sas();
    for d in &copies {
        bed.process(d).await.unwrap();
    }
    let done = bed.run(&run.run_id).await;
    assert_eq!(done.state, RunState::Completed, "{:?}", done.failure);
    assert!(
        bed.sandbox.stats().sas_rejections >= 1,
        "the old SAS must have been refused"
    );
    // Every landed byte equals what the sandbox served.
    let served = bed.sandbox.served_partitions();
    for p in &done.parts {
        let file = std::fs::read(bed.dir.path().join(p.dest.as_str())).unwrap();
        let src = served
            .iter()
            .find(|s| s.name == p.name)
            .expect("served partition");
        assert_eq!(&file[..], &src.bytes[..], "partition {} differs", p.name);
    }
}

#[tokio::test]
async fn failed_operation_emits_export_failed() {
    let bed = TestBed::start(
        SandboxConfig {
            fail_invoices: vec!["G000000666".into()],
            fail_code: "5001".into(),
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let run = bed.start_new(billed("G000000666"), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let r = bed.run(&run.run_id).await;
    assert_eq!(r.state, RunState::Failed);
    assert!(!r.no_data);
    assert_eq!(r.failure.as_ref().unwrap().code.as_str(), "5001");
    let failed = bed.events_of_type("ExportFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["code"], "5001");
    assert_eq!(failed[0]["data"]["runId"], run.run_id.as_str());
    assert!(bed.events_of_type("ExportCompleted").is_empty());
}

/// Graph's code 5000 ("No data available", e.g. an invoice without Azure usage) is not a
/// failure: the run completes with no data, in the event, the status API and `_manifest.json`.
#[tokio::test]
async fn no_data_completes_the_run_without_a_failure() {
    let bed = TestBed::start(
        SandboxConfig {
            fail_invoices: vec!["G000000666".into()],
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let run = bed.start_new(billed("G000000666"), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let r = bed.run(&run.run_id).await;
    assert_eq!(r.state, RunState::Completed);
    assert!(r.no_data);
    assert!(r.failure.is_none());
    assert!(r.parts.is_empty());
    assert!(r.final_event_sent);
    assert!(bed.events_of_type("ExportFailed").is_empty(), "no alert");
    let done = bed.events_of_type("ExportCompleted");
    assert_eq!(done.len(), 1);
    let data = &done[0]["data"];
    assert_eq!(data["noData"], true);
    assert_eq!(data["rowCount"], 0);
    assert_eq!(data["blobCount"], 0);
    assert_eq!(data["noDataReason"], "No data available");

    let view = partner_billing_export::pipeline::status::view(&r, bed.app.pipeline.destination());
    assert_eq!(view.status, RunState::Completed);
    let result = view.result.as_ref().expect("a completed run's result");
    assert!(result.no_data);
    assert_eq!(result.row_count, Some(0));
    assert!(view.failure.is_none());

    let files = bed.output_files();
    let (path, bytes) = files
        .iter()
        .find(|(p, _)| p.ends_with("_manifest.json"))
        .expect("a run manifest");
    assert!(path.contains("/no-data/"), "{path}");
    // Besides the ledger: the run manifest, and the export's pointer naming the no-data
    // folder as current (a reader following it reads no rows).
    assert_eq!(
        files.len(),
        files.keys().filter(|p| p.contains("_ledger")).count() + 2,
        "{:?}",
        files.keys().collect::<Vec<_>>()
    );
    let (_, pointer) = files
        .iter()
        .find(|(p, _)| p.ends_with("/_current.json"))
        .expect("a current pointer");
    let pointer: serde_json::Value = serde_json::from_slice(pointer).unwrap();
    assert_eq!(pointer["currentVersion"], "no-data");
    assert_eq!(pointer["noData"], true);
    assert_eq!(pointer["files"], serde_json::json!([]));
    let m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(m["noData"], true);
    assert_eq!(m["blobCount"], 0);
    assert_eq!(m["dataRowCount"], 0);
    assert_eq!(m["runInfo"]["runId"], run.run_id.as_str());
}

#[tokio::test]
async fn gone_operation_is_restarted() {
    let bed = TestBed::start(
        SandboxConfig {
            gone_after_polls: Some(1),
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let run = bed.start_new(billed("G000000103"), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let r = bed.run(&run.run_id).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.failure);
    assert_eq!(r.restarts, 1);
    assert_eq!(bed.sandbox.stats().exports_started, 2);
}

#[tokio::test]
async fn location_on_a_foreign_host_is_refused() {
    let bed = TestBed::start(
        SandboxConfig {
            foreign_location: true,
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let out = bed
        .app
        .pipeline
        .start(billed("G000000104"), Trigger::Http)
        .await
        .unwrap();
    let StartOutcome::Rejected(run) = out else {
        panic!("expected a refusal, got {out:?}")
    };
    let f = run.failure.unwrap();
    assert!(f.message.contains("allow-list"), "{}", f.message);
    assert!(f.message.contains("graph.evil.example"), "{}", f.message);
    assert_eq!(bed.events_of_type("ExportFailed").len(), 1);
    // Nothing was queued for a refused operation.
    assert!(bed.sb.depth().values().all(|d| *d == 0));
}

#[tokio::test]
async fn rerun_of_unchanged_data_copies_nothing() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let first = bed.start_new(billed("G000000105"), Trigger::Timer).await;
    bed.drain(DRAIN).await;
    let first = bed.run(&first.run_id).await;
    assert_eq!(first.state, RunState::Completed);
    let data_before: Vec<_> = bed
        .output_files()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".json.gz"))
        .collect();
    let blob_gets = bed.sandbox.stats().blob_gets;

    // The same export again, after the first finished: Graph serves the same data version.
    let second = bed.start_new(billed("G000000105"), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let second = bed.run(&second.run_id).await;
    assert_eq!(second.state, RunState::Completed);
    assert_eq!(
        second.output_folder, first.output_folder,
        "same data, same folder"
    );
    assert!(
        second
            .parts
            .iter()
            .all(|p| p.method
                == Some(partner_billing_export::adapters::storage::CopyMethod::Skipped)),
        "{:?}",
        second.parts
    );
    assert_eq!(
        bed.sandbox.stats().blob_gets,
        blob_gets,
        "no partition was read again"
    );
    let data_after: Vec<_> = bed
        .output_files()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".json.gz"))
        .collect();
    assert_eq!(data_before, data_after);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 2);
}

/// A listener standing in for a storage host the handler must never contact: it counts the
/// connections it accepts. On loopback only (127.0.0.2, or `localhost` where that address
/// cannot be bound), but not on the Graph sandbox's host, so it is not an allowed source.
async fn foreign_storage_host() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let (listener, host) = match tokio::net::TcpListener::bind("127.0.0.2:0").await {
        Ok(l) => (l, "127.0.0.2"),
        Err(_) => (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            "localhost",
        ),
    };
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(conn);
        }
    });
    (format!("http://{host}:{port}/blob"), hits, task)
}

#[tokio::test]
async fn manifest_on_a_foreign_storage_host_fails_the_run_without_contacting_it() {
    use partner_billing_local::graph_sandbox::ManifestShape;
    // Both manifest shapes: inline in the operation, and behind the navigation link.
    for shape in [ManifestShape::Inline, ManifestShape::Link] {
        let (root, hits, listener) = foreign_storage_host().await;
        let bed = TestBed::start(
            SandboxConfig {
                manifest_shape: shape,
                root_directory_base: Some(root.clone()),
                ..fast_sandbox()
            },
            &[],
        )
        .await;
        let run = bed.start_new(billed("G000000107"), Trigger::Http).await;
        bed.drain(DRAIN).await;
        let r = bed.run(&run.run_id).await;
        assert_eq!(r.state, RunState::Failed, "{shape:?}");
        let f = r.failure.as_ref().unwrap();
        assert_eq!(f.code.as_str(), "manifest", "{shape:?}: {f:?}");
        assert!(
            f.message.contains("not an allowed source storage host")
                && f.message.contains("SOURCE_STORAGE_HOSTS"),
            "{}",
            f.message
        );
        let failed = bed.events_of_type("ExportFailed");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["data"]["code"], "manifest");
        assert!(r.parts.is_empty(), "no copy was planned: {:?}", r.parts);
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{shape:?}: a request reached the foreign host"
        );
        assert_eq!(bed.sandbox.stats().blob_gets, 0);
        assert!(bed.sb.depth().values().all(|d| *d == 0));
        listener.abort();
    }
}

#[tokio::test]
async fn blob_names_that_mimic_ours_collide_or_are_too_long_land_apart() {
    let long = format!("part-{}.c000.json.gz", "x".repeat(230));
    let names = vec![
        "_manifest.json".to_string(),
        "sub/part-a.json.gz".to_string(),
        "00001-part-a.json.gz".to_string(),
        long.clone(),
    ];
    let bed = TestBed::start(
        SandboxConfig {
            blob_names: Some(names.clone()),
            ..fast_sandbox()
        },
        &[],
    )
    .await;
    let run = bed.start_new(billed("G000000109"), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let r = bed.run(&run.run_id).await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.failure);
    assert_eq!(r.parts.len(), 4);
    let dests: std::collections::BTreeSet<_> = r.parts.iter().map(|p| p.dest.clone()).collect();
    assert_eq!(dests.len(), 4, "distinct destinations: {dests:?}");
    let folder = r.output_folder.clone().unwrap();
    let files = bed.output_files();
    // Our run manifest is ours, and lists the source `_manifest.json` under another name.
    let ours: serde_json::Value =
        serde_json::from_slice(&files[&format!("{folder}/_manifest.json")]).unwrap();
    assert_eq!(ours["runInfo"]["runId"], run.run_id.as_str());
    let listed: Vec<_> = ours["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["sourceName"].clone(), b["blobName"].clone()))
        .collect();
    assert_eq!(listed.len(), 4);
    // Every partition is byte-identical to what the sandbox served under its source name.
    let served = bed.sandbox.served_partitions();
    for p in &r.parts {
        let src = served.iter().find(|s| s.name == p.name).unwrap();
        let got = &files[p.dest.as_str()];
        assert_eq!(got.as_slice(), &src.bytes[..], "{} -> {}", p.name, p.dest);
        assert!(p.dest.as_str().len() <= 1024);
        assert!(p.dest.file_name().len() <= 200, "{}", p.dest);
    }
    let by_name = |n: &str| r.parts.iter().find(|p| p.name == n).unwrap().dest.clone();
    assert_eq!(
        by_name("_manifest.json").file_name(),
        "00000-_manifest.json"
    );
    assert_eq!(
        by_name("00001-part-a.json.gz").file_name(),
        "00001-part-a.json.gz"
    );
    assert!(by_name("sub/part-a.json.gz")
        .file_name()
        .starts_with("00001-part-a~"));
    assert!(by_name(&long).file_name().ends_with(".c000.json.gz"));
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

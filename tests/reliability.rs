//! No run is stuck, lost or doubled: each scenario below could leave a run without a final
//! event, or burn its retries, and must end `Completed` or `Failed` with exactly one event.
//! Time is moved forward with `Pipeline::watchdog_at`, never slept.

use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::app::App;
use partner_billing_export::config::{Config, Settings};
use partner_billing_export::pipeline::run::{FollowUp, FollowUpState};
use partner_billing_export::pipeline::{
    CopyJob, FailureCode, Handled, PipelineError, RunRecord, RunState, Trigger,
    MAX_FOLLOW_UP_ATTEMPTS, MAX_LANDING_ATTEMPTS,
};
use partner_billing_local::graph_sandbox::SandboxConfig;
use partner_billing_local::tokens::local_token_source;
use test_support::{fast_sandbox, unbilled_usd, TestBed};
use time::OffsetDateTime;

/// A loopback port nothing listens on: calls fail at once with "connection refused".
const DEAD: &str = "http://127.0.0.1:9/";
const DRAIN: Duration = Duration::from_secs(60);

/// Another instance of the app over the same ledger and stand-ins, with some settings changed
/// (a dead Graph or Event Grid), and quick retries so an outage is noticed fast.
fn instance(bed: &TestBed, changed: &[(&str, &str)]) -> Arc<App> {
    let mut settings = bed.settings.clone();
    for (k, v) in changed {
        settings.insert(k.to_string(), v.to_string());
    }
    let mut config = Config::load(&Settings::new(move |k| settings.get(k).cloned())).unwrap();
    config.graph.max_attempts = 2;
    config.graph.backoff_base = Duration::from_millis(1);
    App::with_tokens(config, Arc::new(local_token_source())).unwrap()
}

fn later() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(3600)
}

async fn only_run(bed: &TestBed) -> RunRecord {
    let runs = bed.app.pipeline.ledger().list(10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs.into_iter().next().unwrap()
}

/// The start fails after the run is claimed (Graph 503 at 06:00). The watchdog
/// submits it again; the run completes with one Graph export and one final event.
#[tokio::test]
async fn a_start_that_failed_after_the_claim_is_resumed() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let down = instance(&bed, &[("GRAPH_BASE_URL", DEAD)]);
    let err = down
        .pipeline
        .start(unbilled_usd(), Trigger::Timer)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Billing(ref e) if e.is_transient()),
        "{err}"
    );
    assert_eq!(only_run(&bed).await.state, RunState::Starting);

    let report = bed.app.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(report.resubmitted, 1, "{report:?}");
    bed.drain(DRAIN).await;
    let run = only_run(&bed).await;
    assert_eq!(run.state, RunState::Completed);
    assert_eq!(bed.sandbox.stats().exports_started, 1);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

/// With several instances, two watchdogs resuming the same stuck start at once ask
/// Graph for one export, not two.
#[tokio::test]
async fn concurrent_resumptions_start_one_graph_export() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let down = instance(&bed, &[("GRAPH_BASE_URL", DEAD)]);
    down.pipeline
        .start(unbilled_usd(), Trigger::Timer)
        .await
        .unwrap_err();
    let other = instance(&bed, &[]);
    let t = later();
    let (a, b) = tokio::join!(
        bed.app.pipeline.watchdog_at(t),
        other.pipeline.watchdog_at(t)
    );
    let resubmitted = a.unwrap().resubmitted + b.unwrap().resubmitted;
    assert!(resubmitted >= 1);
    bed.drain(DRAIN).await;
    assert_eq!(bed.sandbox.stats().exports_started, 1, "one Graph export");
    assert_eq!(only_run(&bed).await.state, RunState::Completed);
}

/// A partition that keeps failing (here the destination refuses it: a folder sits
/// where the file must go) fails the run with `copyFailed` and ExportFailed after the bounded
/// attempts, instead of dead-lettering and leaving the run `Copying` forever.
#[tokio::test]
async fn a_copy_that_keeps_failing_fails_its_run_with_an_event() {
    let bed = TestBed::start(fast_sandbox(), &[("MAX_COPY_ATTEMPTS", "3")]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let copies = bed.pump_until_copies(2).await;
    let job: CopyJob = {
        let body: serde_json::Value = serde_json::from_slice(&copies[0].body).unwrap();
        CopyJob::try_from(&body).unwrap()
    };
    let run = only_run(&bed).await;
    let blocked = bed
        .dir
        .path()
        .join(run.parts[job.part as usize].dest.as_str());
    std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
    // Each failure sends the copy again after a backoff (a scheduled message with its own
    // id), instead of an immediate redelivery that would spend the attempts in seconds.
    let mut job = job;
    for attempt in 1..3 {
        let scheduled = bed.sb.stats().scheduled;
        let handled = bed.app.pipeline.handle_copy(&job, 1).await.unwrap();
        assert!(matches!(handled, Handled::Rescheduled), "{handled:?}");
        assert_eq!(bed.sb.stats().scheduled, scheduled + 1, "attempt {attempt}");
        assert_eq!(only_run(&bed).await.state, RunState::Copying);
        job = job.retry();
    }
    let last = bed.app.pipeline.handle_copy(&job, 1).await.unwrap();
    assert!(matches!(last, Handled::Failed), "{last:?}");
    let run = only_run(&bed).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(run.failure.unwrap().code, FailureCode::CopyFailed);
    let failed = bed.events_of_type("ExportFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["code"], "copyFailed");
}

/// The final event of a run that failed on the poll path could not be published
/// (Event Grid down). The watchdog publishes it, once.
#[tokio::test]
async fn an_unpublished_final_event_is_sent_by_the_watchdog() {
    let cfg = SandboxConfig {
        fail_invoices: vec!["USD".into()],
        fail_code: "5001".into(),
        ..fast_sandbox()
    };
    let bed = TestBed::start(cfg, &[]).await;
    let healthy = bed.app.clone();
    let eg_down = instance(
        &bed,
        &[("EVENTGRID_TOPIC_ENDPOINT", &format!("{DEAD}api/events"))],
    );
    let bed = bed.with_app(eg_down);
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    bed.drain(DRAIN).await;
    let run = only_run(&bed).await;
    assert_eq!(run.state, RunState::Failed);
    assert!(!run.final_event_sent);
    assert!(bed.events_of_type("ExportFailed").is_empty());

    let report = healthy.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(report.final_events_resent, 1, "{report:?}");
    let again = healthy.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(again.final_events_resent, 0, "{again:?}");
    let failed = bed.events_of_type("ExportFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["code"], "5001");
}

/// The operation expired (410) while Graph refuses new exports (an outage): the poll
/// is rescheduled, not failed back to the host where it would burn its deliveries.
#[tokio::test]
async fn a_restart_during_an_outage_is_rescheduled() {
    let cfg = SandboxConfig {
        gone_after_polls: Some(0),
        ..fast_sandbox()
    };
    let bed = TestBed::start(cfg, &[]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let down = instance(&bed, &[("GRAPH_BASE_URL", DEAD)]);
    // More refused restarts than MAX_EXPORT_RESTARTS (3): an outage is not a restart.
    for refused in 1..=5u32 {
        let poll = bed.next(Duration::from_secs(10)).await.expect("a poll");
        let body: serde_json::Value = serde_json::from_slice(&poll.body).unwrap();
        let job = partner_billing_export::pipeline::PollJob::try_from(&body).unwrap();
        let handled = down.pipeline.handle_poll(&job).await.unwrap();
        assert!(matches!(handled, Handled::Rescheduled), "{handled:?}");
        bed.sb.complete(&poll);
        let run = only_run(&bed).await;
        assert_eq!(
            run.state,
            RunState::Polling,
            "after {refused} refused restarts"
        );
        assert_eq!(run.polls, job.seq + 1, "the next poll is scheduled");
        assert_eq!(run.restarts, 0, "no export was restarted");
    }
    // Graph is back: the next poll restarts the export and the run completes.
    bed.drain(DRAIN).await;
    let run = only_run(&bed).await;
    assert_eq!(run.state, RunState::Completed);
    assert_eq!(run.restarts, 1, "the one restart that started an export");
    assert_eq!(
        bed.sandbox.stats().exports_started,
        2,
        "the first export and one restart"
    );
}

/// Stalled copies are re-sent once per stall period, with fresh message ids, not on
/// every look at the run.
#[tokio::test]
async fn stalled_copies_are_resent_once_per_stall() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let lost = bed.pump_until_copies(2).await;
    for d in &lost {
        bed.sb.complete(d); // the copy messages are lost
    }
    let t = later();
    let first = bed.app.pipeline.watchdog_at(t).await.unwrap();
    assert_eq!(first.copies_resent, 2, "{first:?}");
    let second = bed.app.pipeline.watchdog_at(t).await.unwrap();
    assert_eq!(second.copies_resent, 0, "{second:?}");
    bed.drain(DRAIN).await;
    assert_eq!(only_run(&bed).await.state, RunState::Completed);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

/// A run that never moves again fails as `stalled` after the allowed resumptions, with its
/// event: the bound of the guarantee.
#[tokio::test]
async fn a_run_that_never_moves_fails_as_stalled() {
    let bed = TestBed::start(fast_sandbox(), &[("MAX_REPAIRS", "2")]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let lost = bed.pump_until_copies(2).await;
    for d in &lost {
        bed.sb.complete(d);
    }
    let mut t = later();
    for _ in 0..2 {
        let r = bed.app.pipeline.watchdog_at(t).await.unwrap();
        assert_eq!(r.copies_resent, 2, "{r:?}");
        // The re-sent messages are lost too.
        while let Some(d) = bed.next(Duration::from_millis(200)).await {
            bed.sb.complete(&d);
        }
        t += Duration::from_secs(3600);
    }
    let r = bed.app.pipeline.watchdog_at(t).await.unwrap();
    assert_eq!(r.failed, 1, "{r:?}");
    let run = only_run(&bed).await;
    assert_eq!(run.failure.unwrap().code, FailureCode::Stalled);
    assert_eq!(bed.events_of_type("ExportFailed").len(), 1);
}

/// A bed whose single unbilled run completed while the FinOps hubs container could not be
/// written (a file stands where its folder should be).
async fn completed_with_hubs_blocked() -> TestBed {
    let bed = TestBed::start(
        fast_sandbox(),
        &[
            ("OUTPUT_FORMATS", "jsonl.gz,parquet"),
            ("HUBS_INGESTION_CONTAINER", "ingestion"),
        ],
    )
    .await;
    std::fs::write(bed.dir.path().join("ingestion"), b"not a folder").unwrap();
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    bed.drain(DRAIN).await;
    bed
}

fn follow_up_of(run: &RunRecord) -> FollowUp {
    run.follow_up
        .clone()
        .expect("a completed run with Parquet has a follow-up")
}

/// The hubs landing fails for good: the run is completed with one `ExportCompleted` at once,
/// and the landing is retried a bounded number of times, then given up, never repeating the
/// completion.
#[tokio::test]
async fn a_hubs_landing_that_keeps_failing_never_holds_up_or_repeats_the_completion() {
    let bed = completed_with_hubs_blocked().await;
    let run = only_run(&bed).await;
    assert_eq!(run.state, RunState::Completed);
    assert!(run.final_event_sent);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
    let f = follow_up_of(&run);
    assert_eq!((f.state, f.attempts), (FollowUpState::Pending, 1), "{f:?}");
    assert!(f.error.is_some());

    let mut t = OffsetDateTime::now_utc();
    let mut retried = 0;
    for _ in 0..10 {
        t += Duration::from_secs(3 * 3600);
        retried += bed
            .app
            .pipeline
            .watchdog_at(t)
            .await
            .unwrap()
            .follow_ups_retried;
    }
    let f = follow_up_of(&only_run(&bed).await);
    assert_eq!(f.state, FollowUpState::GaveUp, "{f:?}");
    assert_eq!(f.attempts, MAX_FOLLOW_UP_ATTEMPTS);
    assert_eq!(
        retried as u32,
        MAX_FOLLOW_UP_ATTEMPTS - 1,
        "one retry per due pass"
    );
    assert_eq!(
        bed.events_of_type("ExportCompleted").len(),
        1,
        "the completion is never repeated"
    );
    let status = partner_billing_export::pipeline::status::view(
        &only_run(&bed).await,
        bed.app.pipeline.destination(),
    );
    assert_eq!(
        status.result.and_then(|r| r.follow_up).map(|f| f.state),
        Some(FollowUpState::GaveUp),
        "the status API shows the outcome"
    );
}

/// The hubs container comes back: the next due watchdog pass lands the files, once.
#[tokio::test]
async fn a_hubs_landing_that_failed_once_lands_on_the_next_due_pass() {
    let bed = completed_with_hubs_blocked().await;
    std::fs::remove_file(bed.dir.path().join("ingestion")).unwrap();
    let early = bed
        .app
        .pipeline
        .watchdog_at(OffsetDateTime::now_utc() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(early.follow_ups_retried, 0, "not due before its backoff");
    let due = bed.app.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(due.follow_ups_retried, 1, "{due:?}");
    let f = follow_up_of(&only_run(&bed).await);
    assert_eq!((f.state, f.attempts), (FollowUpState::Done, 2), "{f:?}");
    let manifests = bed
        .output_files()
        .into_keys()
        .filter(|k| k.starts_with("ingestion/") && k.ends_with("/manifest.json"))
        .count();
    assert_eq!(manifests, 1, "the hubs files landed with their manifest");
    let again = bed.app.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(again.follow_ups_retried, 0);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

/// A fresh instance receives many copies of a run whose SAS is too short-lived to cache: they
/// share one manifest refresh instead of each asking Graph.
#[tokio::test]
async fn concurrent_copies_share_one_sas_refresh() {
    let cfg = SandboxConfig {
        partitions: 8,
        // Inside the cache's expiry margin: no cached SAS counts as fresh.
        sas_ttl: Duration::from_secs(100),
        ..fast_sandbox()
    };
    let bed = TestBed::start(cfg, &[]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let copies = bed.pump_until_copies(8).await;
    let jobs: Vec<CopyJob> = copies
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
            CopyJob::try_from(&body).unwrap()
        })
        .collect();
    let fresh = instance(&bed, &[]);
    let before = bed.sandbox.stats().operation_gets;
    let handled =
        futures::future::join_all(jobs.iter().map(|j| fresh.pipeline.handle_copy(j, 1))).await;
    assert!(handled.iter().all(|h| h.is_ok()), "{handled:?}");
    assert_eq!(
        bed.sandbox.stats().operation_gets - before,
        1,
        "one Graph call for eight copies"
    );
    assert_eq!(only_run(&bed).await.state, RunState::Completed);
}

/// Every partition is copied but `_manifest.json` can never be written (a directory stands in
/// its place, as an immutability policy or a deleted container would refuse it): the landing
/// is retried a bounded number of times, then the run fails with one `ExportFailed`.
#[tokio::test]
async fn a_landing_that_keeps_failing_fails_the_run_with_one_event() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let copies = bed.pump_until_copies(1).await;
    let folder = only_run(&bed).await.output_folder.expect("folder decided");
    std::fs::create_dir_all(
        bed.dir
            .path()
            .join(folder.as_str())
            .join("_manifest.json/x"),
    )
    .unwrap();
    for d in &copies {
        bed.sb.abandon(d, "handled below");
    }
    bed.drain(DRAIN).await;
    let mut run = only_run(&bed).await;
    for _ in 0..MAX_LANDING_ATTEMPTS {
        if run.state == RunState::Failed {
            break;
        }
        bed.app.pipeline.watchdog_at(later()).await.unwrap();
        run = only_run(&bed).await;
    }
    assert_eq!(run.state, RunState::Failed, "{run:#?}");
    assert_eq!(run.failure.unwrap().code, FailureCode::LandingFailed);
    assert_eq!(run.landing_attempts, MAX_LANDING_ATTEMPTS);
    assert!(bed.events_of_type("ExportCompleted").is_empty());
    assert_eq!(bed.events_of_type("ExportFailed").len(), 1);
    assert!(bed.sb.dead_letters().is_empty(), "no silent dead letter");
}

/// One copy message of a 40-part run (two shards) is lost: the repair resends that part only,
/// not the 39 whose markers are there, and the run completes with one event.
#[tokio::test]
async fn a_repair_resends_only_the_parts_without_a_marker() {
    let mut cfg = fast_sandbox();
    cfg.partitions = 40;
    cfg.rows_per_partition = 2;
    let bed = TestBed::start(cfg, &[]).await;
    bed.start_new(unbilled_usd(), Trigger::Http).await;
    let copies = bed.pump_until_copies(40).await;
    let (lost, rest) = copies.split_first().unwrap();
    bed.sb.complete(lost);
    for d in rest {
        bed.process(d).await.unwrap();
        bed.sb.complete(d);
    }
    let report = bed.app.pipeline.watchdog_at(later()).await.unwrap();
    assert_eq!(report.copies_resent, 1, "{report:?}");
    bed.drain(DRAIN).await;
    assert_eq!(only_run(&bed).await.state, RunState::Completed);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

/// Starts of one export from the timer, HTTP and the CLI at once, on separate instances:
/// one run, one Graph export, one completion.
#[tokio::test]
async fn concurrent_starts_make_one_run() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let apps: Vec<Arc<App>> = (0..6).map(|_| instance(&bed, &[])).collect();
    let triggers = [Trigger::Timer, Trigger::Http, Trigger::Cli];
    let starts = apps
        .iter()
        .enumerate()
        .map(|(i, a)| a.pipeline.start(unbilled_usd(), triggers[i % 3]));
    let outcomes = futures::future::join_all(starts).await;
    let ids: std::collections::BTreeSet<_> = outcomes
        .iter()
        .map(|o| o.as_ref().unwrap().run().run_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "{outcomes:#?}");
    bed.drain(DRAIN).await;
    assert_eq!(only_run(&bed).await.state, RunState::Completed);
    assert_eq!(bed.sandbox.stats().exports_started, 1);
    assert_eq!(bed.events_of_type("ExportCompleted").len(), 1);
}

//! The watchdog and the status list cost what is open, not what history holds: a pass reads
//! the open-run index, settled runs leave it, a ledger from before the index is indexed once,
//! a pass out of time resumes where it stopped, and status pages follow a cursor over months.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::app::App;
use partner_billing_export::config::{Config, Settings};
use partner_billing_export::contracts::status::{ListQuery, StateFilter};
use partner_billing_export::pipeline::{status, Ledger, RunId, RunRecord, RunState, Trigger};
use partner_billing_local::tokens::local_token_source;
use test_support::{fast_sandbox, unbilled_usd, TestBed};
use time::macros::datetime;
use time::OffsetDateTime;

/// A run record created at `at` in `state`; terminal ones have sent their final event.
async fn seed(ledger: &Ledger, at: OffsetDateTime, state: RunState) -> RunId {
    let deadline = at + Duration::from_secs(60 * 86_400);
    let rec = RunRecord::new(
        RunId::generate(at),
        unbilled_usd(),
        Trigger::Timer,
        at,
        deadline,
    );
    assert!(ledger.create_run(&rec).await.unwrap());
    ledger
        .update(&rec.run_id, |r| {
            r.state = state;
            r.final_event_sent = state.is_terminal();
            if state == RunState::Polling {
                // Waiting for a Retry-After far ahead: nothing for the watchdog to do.
                r.next_poll_at = Some(at + Duration::from_secs(30 * 86_400));
            }
            Some(())
        })
        .await
        .unwrap();
    rec.run_id
}

fn ledger_dir(bed: &TestBed) -> PathBuf {
    bed.dir.path().join("partner-billing").join("_ledger")
}

fn instance_with_budget(bed: &TestBed, budget: Duration) -> Arc<App> {
    let settings = bed.settings.clone();
    let mut config = Config::load(&Settings::new(move |k| settings.get(k).cloned())).unwrap();
    config.pipeline.watchdog_budget = budget;
    App::with_tokens(config, Arc::new(local_token_source())).unwrap()
}

#[tokio::test]
async fn a_watchdog_pass_reads_open_runs_not_history() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let ledger = bed.app.pipeline.ledger();
    let now = OffsetDateTime::now_utc();
    for i in 0..120 {
        let state = if i % 3 == 0 {
            RunState::Failed
        } else {
            RunState::Completed
        };
        seed(ledger, now - Duration::from_secs(86_400 * (1 + i)), state).await;
    }
    let live = bed.start_new(unbilled_usd(), Trigger::Timer).await.run_id;

    // The first pass reads each run once and takes the 120 settled ones out of the index.
    let first = bed.app.pipeline.watchdog_at(now).await.unwrap();
    assert_eq!((first.open, first.checked, first.closed), (121, 121, 120));
    // From then on a pass reads the one open run, however long the history.
    let second = bed.app.pipeline.watchdog_at(now).await.unwrap();
    assert_eq!((second.open, second.checked, second.closed), (1, 1, 0));

    bed.drain(Duration::from_secs(60)).await;
    assert_eq!(bed.run(&live).await.state, RunState::Completed);
    let third = bed.app.pipeline.watchdog_at(now).await.unwrap();
    assert_eq!((third.open, third.closed), (1, 1));
    let fourth = bed.app.pipeline.watchdog_at(now).await.unwrap();
    assert_eq!((fourth.open, fourth.checked), (0, 0));
    assert_eq!(
        ledger.list(usize::MAX).await.unwrap().len(),
        121,
        "records are kept"
    );
}

#[tokio::test]
async fn a_ledger_from_before_the_index_is_indexed_once() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let ledger = bed.app.pipeline.ledger();
    let now = OffsetDateTime::now_utc();
    for i in 0..20 {
        seed(
            ledger,
            now - Duration::from_secs(3600 * (2 + i)),
            RunState::Completed,
        )
        .await;
    }
    // A start whose process died before submitting: the watchdog must still find it.
    let stuck = seed(ledger, now - Duration::from_secs(3600), RunState::Starting).await;
    let dir = ledger_dir(&bed);
    std::fs::write(
        dir.join("runs").join("20260101t000000-badbadbadbad.json"),
        b"{ not json",
    )
    .unwrap();
    // As an older version left the ledger: no open-run markers, no index note.
    std::fs::remove_dir_all(dir.join("open")).unwrap();
    let _ = std::fs::remove_file(dir.join("notices").join("open-index.json"));
    // A marker whose record never came (its creator crashed two days ago).
    let orphan = RunId::generate(now - Duration::from_secs(2 * 86_400));
    std::fs::create_dir_all(dir.join("open")).unwrap();
    std::fs::write(
        dir.join("open").join(format!("{orphan}.json")),
        format!(
            r#"{{"runId":"{orphan}","createdAt":"{}"}}"#,
            (now - Duration::from_secs(2 * 86_400))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        ),
    )
    .unwrap();

    let later = now + Duration::from_secs(3600);
    let first = bed.app.pipeline.watchdog_at(later).await.unwrap();
    // Indexed: the stuck start and the unreadable record (reported each pass until repaired),
    // beside the orphan marker, which is dropped.
    assert_eq!(first.open, 3, "{first:?}");
    assert_eq!((first.resubmitted, first.skipped), (1, 1), "{first:?}");
    assert!(!dir.join("open").join(format!("{orphan}.json")).exists());
    bed.drain(Duration::from_secs(60)).await;
    assert_eq!(bed.run(&stuck).await.state, RunState::Completed);

    let _ = bed.app.pipeline.watchdog_at(later).await.unwrap();
    let settled = bed.app.pipeline.watchdog_at(later).await.unwrap();
    assert_eq!(
        (settled.open, settled.checked, settled.skipped),
        (1, 0, 1),
        "{settled:?}"
    );
}

#[tokio::test]
async fn a_pass_out_of_time_resumes_where_it_stopped() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let ledger = bed.app.pipeline.ledger();
    let now = OffsetDateTime::now_utc();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            seed(
                ledger,
                now - Duration::from_secs(60 * (10 + i)),
                RunState::Polling,
            )
            .await,
        );
    }
    // No time at all: each pass handles one run, then records where it stopped. Past the
    // polls' time every run is stalled, and a run repaired once looks alive to the next pass,
    // so five repaired runs show that the five passes took five different runs.
    let far = now + Duration::from_secs(31 * 86_400);
    let hurried = instance_with_budget(&bed, Duration::ZERO);
    for pass in 0..5 {
        let r = hurried.pipeline.watchdog_at(far).await.unwrap();
        assert_eq!(
            (r.open, r.checked, r.polls_resent, r.deferred),
            (5, 1, 1, 4),
            "pass {pass}: {r:?}"
        );
    }
    for id in &ids {
        assert_eq!(bed.run(id).await.repairs, 1);
    }
    let r = bed.app.pipeline.watchdog_at(far).await.unwrap();
    assert_eq!((r.checked, r.polls_resent, r.deferred), (5, 0, 0), "{r:?}");
}

#[tokio::test]
async fn status_pages_follow_a_cursor_across_months() {
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let ledger = bed.app.pipeline.ledger();
    let now = OffsetDateTime::now_utc();
    let mut seeded = Vec::new();
    for (i, at) in [
        datetime!(2026-09-30 23:59 UTC),
        datetime!(2026-10-01 00:00 UTC),
        datetime!(2026-10-15 12:00 UTC),
        datetime!(2026-11-02 08:00 UTC),
        datetime!(2026-11-20 08:00 UTC),
    ]
    .into_iter()
    .enumerate()
    {
        let state = if i == 2 {
            RunState::Polling
        } else {
            RunState::Completed
        };
        seeded.push(seed(ledger, at, state).await);
    }
    seeded.push(seed(ledger, now, RunState::Completed).await);
    seeded.sort();
    seeded.reverse();

    let mut query = ListQuery {
        limit: 2,
        ..ListQuery::default()
    };
    let first = status::list(ledger, &query, now).await.unwrap();
    assert_eq!(first.total, None, "counting would read everything");
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        seen.extend(page.runs.iter().map(|r| r.run_id.clone()));
        let Some(next) = page.next else { break };
        query = next;
        page = status::list(ledger, &query, now).await.unwrap();
    }
    assert_eq!(seen, seeded, "every run once, newest first");

    let everything = ListQuery::default();
    assert_eq!(
        status::list(ledger, &everything, now).await.unwrap().total,
        Some(6)
    );
    let polling = ListQuery {
        state: Some(StateFilter::Polling),
        ..ListQuery::default()
    };
    let running = status::list(ledger, &polling, now).await.unwrap();
    assert_eq!(running.runs.len(), 1);
    assert_eq!(running.runs[0].run_id, seeded[3]);
}

//! Which data version is current: three daily unbilled exports land three version folders of
//! the same export; `_current.json` names the newest, the older ones are marked superseded,
//! and a reader following the pointer counts every row once.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use functions_runtime::TimerInfo;
use partner_billing_export::functions::start_exports;
use partner_billing_export::pipeline::current::CurrentPointer;
use partner_billing_export::planner::KindGroup;
use partner_billing_local::graph_sandbox::{SandboxClock, SandboxConfig};
use test_support::{fast_sandbox, TestBed};
use time::macros::{date, time};
use time::OffsetDateTime;

fn rows_of(gz: &[u8]) -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .expect("partitions are gzip text");
    text.lines().map(str::to_string).collect()
}

/// A bed whose unbilled-usage timer fired on three days of changing data, each run drained.
async fn three_daily_unbilled_exports() -> TestBed {
    let first = date!(2026 - 11 - 10);
    let clock = SandboxClock::new(first);
    let bed = TestBed::start(
        SandboxConfig {
            clock: Some(clock.clone()),
            today: Some(first),
            ..fast_sandbox()
        },
        &[
            ("EXPORT_UNBILLED_PERIODS", "current"),
            ("EXPORT_UNBILLED_CURRENCIES", "USD"),
            ("EXPORT_KINDS", "unbilledUsage"),
        ],
    )
    .await;
    let mut day = first;
    for _ in 0..3 {
        clock.set(day);
        let now = OffsetDateTime::new_utc(day, time!(06:30));
        let timer = TimerInfo {
            is_past_due: false,
            schedule_status: None,
        };
        start_exports::run(&bed.app, timer, now, KindGroup::Unbilled)
            .await
            .unwrap_or_else(|e| panic!("unbilled firing on {day}: {}", e.message));
        bed.drain(Duration::from_secs(60)).await;
        day = day.next_day().unwrap();
    }
    bed
}

#[tokio::test]
async fn reading_through_the_current_pointer_counts_each_row_once() {
    let bed = three_daily_unbilled_exports().await;

    let files = bed.output_files();
    let export = "partner-billing/unbilled-usage/202611/USD/full";
    let versions: BTreeMap<&str, Vec<&String>> = files
        .keys()
        .filter(|k| k.ends_with(".json.gz"))
        .filter_map(|k| {
            let rest = k.strip_prefix(export)?.strip_prefix('/')?;
            Some((rest.split('/').next()?, k))
        })
        .fold(BTreeMap::new(), |mut m, (v, k)| {
            m.entry(v).or_default().push(k);
            m
        });
    assert_eq!(
        versions.len(),
        3,
        "one folder per day's data version: {versions:?}"
    );

    let pointer: CurrentPointer = serde_json::from_slice(
        files
            .get(&format!("{export}/_current.json"))
            .expect("the export has a current pointer"),
    )
    .unwrap();
    let runs = bed.app.pipeline.ledger().list(10).await.unwrap();
    let newest = runs.first().expect("three runs");
    assert_eq!(pointer.run_id, newest.run_id, "the newest run is current");
    assert_eq!(
        Some(&pointer.folder),
        newest.output_folder.as_ref(),
        "the pointer names the newest run's folder"
    );

    // All versions together hold three days of rows; through the pointer, one day's.
    let all_rows: usize = versions
        .values()
        .flatten()
        .map(|k| rows_of(&files[*k]).len())
        .sum();
    let current_rows: Vec<String> = pointer
        .files
        .iter()
        .flat_map(|f| rows_of(&files[&format!("{}/{f}", pointer.folder.as_str())]))
        .collect();
    assert_eq!(
        Some(current_rows.len() as u64),
        pointer.data_row_count,
        "the pointer's row count matches its files"
    );
    assert!(
        all_rows >= 3 * current_rows.len() - 2,
        "{all_rows} vs {}",
        current_rows.len()
    );
    let distinct: std::collections::BTreeSet<&String> = current_rows.iter().collect();
    assert_eq!(
        distinct.len(),
        current_rows.len(),
        "no row twice through the pointer"
    );

    // The README's query, run by DuckDB over the output, reads the same rows.
    let readme = include_str!("../README.md");
    let query = readme
        .split("<!-- current-data-query -->")
        .nth(1)
        .and_then(|s| s.split("<!-- /current-data-query -->").next())
        .and_then(|s| s.split("```sql").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has the current-data query between its markers");
    let counted = test_support::duckdb::rows(
        bed.dir.path(),
        &format!(
            "SELECT count(*) FROM ({})",
            query.trim().trim_end_matches(';')
        ),
    );
    assert_eq!(
        counted[0][0].as_deref(),
        Some(current_rows.len().to_string().as_str()),
        "the README's query counts each row once"
    );

    // The two older versions are marked as superseded; the current one is not.
    for version in versions.keys() {
        let marker = format!("{export}/{version}/_superseded.json");
        let current = *version == pointer.current_version;
        assert_eq!(files.contains_key(&marker), !current, "{marker}");
    }

    // The completion event tells where the pointer is.
    let completed = bed.events_of_type("ExportCompleted");
    let last = completed.last().expect("completion events");
    assert!(
        last["data"]["current"]
            .as_str()
            .is_some_and(|c| c.ends_with("unbilled-usage/202611/USD/full/_current.json")),
        "{last}"
    );
}

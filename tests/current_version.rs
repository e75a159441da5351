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

const EXPORT: &str = "partner-billing/unbilled-usage/202611/USD/full";

/// The export's version folders and the partitions in each.
fn version_folders(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<&str, Vec<&String>> {
    files
        .keys()
        .filter(|k| k.ends_with(".json.gz"))
        .filter_map(|k| {
            let rest = k.strip_prefix(EXPORT)?.strip_prefix('/')?;
            Some((rest.split('/').next()?, k))
        })
        .fold(BTreeMap::new(), |mut m, (v, k)| {
            m.entry(v).or_default().push(k);
            m
        })
}

fn rows_of(gz: &[u8]) -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .expect("partitions are gzip text");
    text.lines().map(str::to_string).collect()
}

/// A bed whose unbilled-usage timer fired on `days` days of changing data, each run drained.
async fn daily_unbilled_exports(days: usize, extra: &[(&str, &str)]) -> TestBed {
    let first = date!(2026 - 11 - 10);
    let clock = SandboxClock::new(first);
    let bed = TestBed::start(
        SandboxConfig {
            clock: Some(clock.clone()),
            today: Some(first),
            ..fast_sandbox()
        },
        &[
            &[
                ("EXPORT_UNBILLED_PERIODS", "current"),
                ("EXPORT_UNBILLED_CURRENCIES", "USD"),
                ("EXPORT_KINDS", "unbilledUsage"),
            ],
            extra,
        ]
        .concat(),
    )
    .await;
    let mut day = first;
    for _ in 0..days {
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
    let bed = daily_unbilled_exports(3, &[]).await;

    let files = bed.output_files();
    let versions = version_folders(&files);
    assert_eq!(
        versions.len(),
        3,
        "one folder per day's data version: {versions:?}"
    );

    let pointer: CurrentPointer = serde_json::from_slice(
        files
            .get(&format!("{EXPORT}/_current.json"))
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
        let marker = format!("{EXPORT}/{version}/_superseded.json");
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

/// Retention at one previous version: five daily versions land, two stay (the current one and
/// the day before), and the completion events count what went.
#[tokio::test]
async fn retention_deletes_superseded_versions_beyond_the_setting_and_counts_them() {
    let bed = daily_unbilled_exports(5, &[("KEEP_SUPERSEDED_VERSIONS", "1")]).await;

    let files = bed.output_files();
    let versions = version_folders(&files);
    let pointer: CurrentPointer =
        serde_json::from_slice(&files[&format!("{EXPORT}/_current.json")]).unwrap();
    let runs = bed.app.pipeline.ledger().list(10).await.unwrap();
    assert_eq!(runs.len(), 5, "five daily runs");
    let kept: Vec<_> = runs[..2]
        .iter()
        .map(|r| r.output_folder.as_ref().unwrap().file_name().to_string())
        .collect();
    assert_eq!(
        versions.keys().map(|v| v.to_string()).collect::<Vec<_>>(),
        {
            let mut k = kept.clone();
            k.sort();
            k
        },
        "the two newest versions stay"
    );
    assert_eq!(pointer.current_version, kept[0], "the newest is current");
    for gone in &runs[2..] {
        let folder = gone.output_folder.as_ref().unwrap().as_str();
        assert!(
            !files.keys().any(|k| k.starts_with(&format!("{folder}/"))),
            "nothing of {folder} is left"
        );
    }

    let deleted: Vec<(u64, u64)> = bed
        .events_of_type("ExportCompleted")
        .iter()
        .filter_map(|e| {
            let r = &e["data"]["retention"];
            Some((r["versionsDeleted"].as_u64()?, r["filesDeleted"].as_u64()?))
        })
        .collect();
    assert_eq!(
        deleted.iter().map(|d| d.0).sum::<u64>(),
        3,
        "three versions deleted in all: {deleted:?}"
    );
    assert!(
        deleted.iter().all(|&(_, files)| files > 1),
        "each deleted version had its partitions and manifest: {deleted:?}"
    );
}

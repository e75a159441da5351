//! Fan-in that costs the same at part 10 and at part 10,000.
//!
//! Rewriting the whole run record (every part in it) to mark a part done would be one
//! compare-and-swap per part: quadratic in the number of partitions, with every copy of a run
//! contending for one document. Instead a part's result is a *marker* of its own
//! (`parts/{run}/{shard}/{part}.json`, created once, no contention); parts are grouped in
//! shards of [`PARTS_PER_SHARD`] consecutive parts, and a copy that finds its shard's markers
//! all present (one listing of at most that many names) adds the shard to the run's fan-in
//! document (`fanin/{run}.json`, one small write per shard; shards complete one after another
//! as the copies progress, so these writes rarely meet); the write that completes the last
//! shard folds every result into the run record once and finishes the run.
//!
//! Every step is idempotent (a result, a completed shard are recorded once whatever the
//! redeliveries), and each step re-checks what follows it, so a crash between two steps is
//! finished by the next delivery or by the watchdog.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::derived::Converted;
use super::run::{RunId, RunRecord};
use crate::pipeline::ports::storage::{CopyMethod, CopyOutcome, ObjectPath};

/// Parts per shard document (at most): small documents, little contention.
pub const PARTS_PER_SHARD: u32 = 32;

/// Shards for a run of `parts` partitions.
pub fn shard_count(parts: usize) -> u32 {
    (parts as u32).div_ceil(PARTS_PER_SHARD).max(1)
}

/// The result of one copied part, as recorded in its shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartResult {
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub method: CopyMethod,
    /// The derived Parquet files, when `OUTPUT_FORMATS` asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted: Option<Converted>,
}

impl From<&CopyOutcome> for PartResult {
    fn from(o: &CopyOutcome) -> Self {
        Self {
            bytes: o.bytes,
            md5: o.md5.clone(),
            rows: o.rows,
            method: o.method,
            converted: None,
        }
    }
}

/// One part's marker: its result and when it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartMarker {
    pub part: u32,
    pub result: PartResult,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Which shards of a run hold all their parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaninDoc {
    pub completed: BTreeSet<u32>,
    /// When the last shard was added: the run's latest progress among complete shards, so a
    /// check of a copying run reads markers of incomplete shards only.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_at: Option<OffsetDateTime>,
}

/// What one completion of a shard found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCompletion {
    /// Every shard of the run is complete.
    pub all: bool,
    /// This call added the shard (so, with `all`, it is the one call that folds the run).
    pub added: bool,
}

/// A copying run's progress, from the fan-in document and the markers of incomplete shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Parts with a marker.
    pub done: BTreeSet<u32>,
    /// When the latest progress was recorded.
    pub last_at: Option<OffsetDateTime>,
}

impl Progress {
    /// Marks the recorded parts done in `run` (results themselves stay in the markers).
    pub fn apply(&self, run: &mut RunRecord) {
        for p in &mut run.parts {
            if self.done.contains(&p.index) {
                p.done = true;
            }
        }
    }
}

/// The folder of one shard's markers.
pub fn shard_prefix(run: &RunId, shard: u32) -> ObjectPath {
    ObjectPath::new(format!("parts/{run}/{shard}")).expect("run ids are path-safe")
}

/// One part's marker.
pub fn marker_key(run: &RunId, shard: u32, part: u32) -> ObjectPath {
    ObjectPath::new(format!("parts/{run}/{shard}/{part}.json")).expect("run ids are path-safe")
}

pub fn fanin_key(run: &RunId) -> ObjectPath {
    ObjectPath::new(format!("fanin/{run}.json")).expect("run ids are path-safe")
}

/// The run's shard layout, from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards {
    pub parts: u32,
    pub count: u32,
}

impl Shards {
    pub fn of(run: &RunRecord) -> Self {
        let parts = run.parts.len() as u32;
        Self {
            parts,
            count: shard_count(run.parts.len()),
        }
    }
    pub fn shard_of(&self, part: u32) -> u32 {
        part / PARTS_PER_SHARD
    }
    /// How many parts shard `k` holds.
    pub fn members(&self, k: u32) -> u32 {
        self.parts
            .saturating_sub(k * PARTS_PER_SHARD)
            .min(PARTS_PER_SHARD)
    }
    /// Parts held by the shards in `completed`.
    pub fn parts_in(&self, completed: &BTreeSet<u32>) -> u32 {
        completed.iter().map(|k| self.members(*k)).sum()
    }
}

/// Fills recorded part results into a run's parts (the fan-in's fold, and live views).
pub fn apply_results(run: &mut RunRecord, results: &BTreeMap<u32, PartResult>) {
    for p in &mut run.parts {
        if let Some(r) = results.get(&p.index) {
            p.done = true;
            p.bytes = Some(r.bytes);
            p.md5 = r.md5.clone();
            p.rows = r.rows.or(r.converted.as_ref().map(|c| c.rows));
            p.method = Some(r.method);
            p.parquet_bytes = r.converted.as_ref().map(|c| c.typed_bytes + c.focus_bytes);
            p.rounded_values = r
                .converted
                .as_ref()
                .map(|c| c.rounded_values)
                .filter(|n| *n > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_part_once() {
        for parts in [1u32, 2, 31, 32, 33, 100, 1000, 10_000] {
            let s = Shards {
                parts,
                count: shard_count(parts as usize),
            };
            let mut counts = vec![0u32; s.count as usize];
            for p in 0..parts {
                counts[s.shard_of(p) as usize] += 1;
            }
            for (k, n) in counts.iter().enumerate() {
                assert_eq!(*n, s.members(k as u32), "parts {parts} shard {k}");
                assert!(*n <= PARTS_PER_SHARD);
            }
            let all: BTreeSet<u32> = (0..s.count).collect();
            assert_eq!(s.parts_in(&all), parts);
        }
    }
}

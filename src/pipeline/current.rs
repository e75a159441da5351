//! Which data version of an export is current.
//!
//! Every new source eTag lands in its own `v-{eTag}` folder, so a daily unbilled export leaves
//! one folder per day: a reader adding them all up counts each row many times. Beside the
//! version folders of an export, `_current.json` names the one version to read. It moves only
//! forward (to the run created last), after that version is complete (its `_manifest.json`
//! written), and before the completion event is sent, so a consumer reacting to the event
//! already sees it. The superseded folder gets a `_superseded.json` marker; the pointer is the
//! authority, the marker a convenience for people browsing the container.
//!
//! Concurrency: the decision is a compare-and-swap on a ledger document, the blob is written
//! after it and checked again afterwards, so whatever the interleaving of two finishers the
//! last pointer written names the newest run (see `Pipeline::publish_current`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::run::{RunId, RunRecord};
use crate::pipeline::ports::storage::{ObjectPath, StorageError};

pub const CURRENT_POINTER_NAME: &str = "_current.json";
pub const SUPERSEDED_MARKER_NAME: &str = "_superseded.json";
/// Version of the pointer document's shape; readers should check it.
pub const POINTER_SCHEMA: u32 = 1;

/// `_current.json`: the data version of an export that readers should read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentPointer {
    pub schema: u32,
    /// The export's folder (the parent of its version folders).
    pub export_folder: ObjectPath,
    /// The current version folder's name: `v-{eTag}`, or `no-data`.
    pub current_version: String,
    /// The current version folder, in full.
    pub folder: ObjectPath,
    pub run_id: RunId,
    /// When the run was created: what orders versions (a later run asked Graph later).
    #[serde(with = "time::serde::rfc3339")]
    pub run_created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<String>,
    pub no_data: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_row_count: Option<u64>,
    /// The data files of the version, relative to `folder`.
    pub files: Vec<String>,
}

/// `_superseded.json`, written into a version folder that is no longer current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersededMarker {
    pub superseded_by: String,
    pub run_id: RunId,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The ledger's copy of the pointer, changed only by compare-and-swap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentDoc {
    #[serde(default)]
    pub pointer: Option<CurrentPointer>,
    /// Versions of the export still in storage that are not current, oldest first: what
    /// retention deletes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededVersion>,
}

/// A data version folder of an export that is not (or never became) its current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersededVersion {
    pub folder: ObjectPath,
    pub run_id: RunId,
    #[serde(with = "time::serde::rfc3339")]
    pub run_created_at: OffsetDateTime,
}

impl SupersededVersion {
    fn of(p: &CurrentPointer) -> Self {
        Self {
            folder: p.folder.clone(),
            run_id: p.run_id.clone(),
            run_created_at: p.run_created_at,
        }
    }
}

/// How many superseded versions of an export stay in storage (setting
/// `KEEP_SUPERSEDED_VERSIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Nothing is deleted (a storage lifecycle rule may expire data instead).
    KeepAll,
    /// The current version and this many previous ones stay; older ones are deleted.
    KeepPrevious(u32),
}

impl std::str::FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "all" => Ok(Retention::KeepAll),
            n => n
                .parse::<u32>()
                .map(Retention::KeepPrevious)
                .map_err(|_| format!("{n:?} is neither a count of versions nor `all`")),
        }
    }
}

impl CurrentDoc {
    /// Records that `candidate` finished: it becomes the pointer if it is newer, and whichever
    /// version loses (the old pointer, or the late candidate itself) joins the superseded
    /// list. Returns whether the document changed.
    pub fn offer(&mut self, candidate: &CurrentPointer) -> bool {
        let before = self.clone();
        let loser = match &self.pointer {
            Some(held) if held.run_id == candidate.run_id => return false,
            Some(held) if !candidate.supersedes(held) => Some(candidate.clone()),
            _ => self.pointer.replace(candidate.clone()),
        };
        let current = self.pointer.as_ref().map(|p| &p.folder);
        // A version whose eTag comes back is current again, not superseded.
        self.superseded.retain(|v| Some(&v.folder) != current);
        if let Some(loser) = loser.filter(|l| {
            Some(&l.folder) != current && self.superseded.iter().all(|v| v.folder != l.folder)
        }) {
            self.superseded.push(SupersededVersion::of(&loser));
            self.superseded
                .sort_by(|a, b| (a.run_created_at, &a.run_id).cmp(&(b.run_created_at, &b.run_id)));
        }
        *self != before
    }

    /// The superseded versions `retention` no longer keeps, oldest first.
    pub fn expired(&self, retention: Retention) -> Vec<SupersededVersion> {
        let Retention::KeepPrevious(keep) = retention else {
            return Vec::new();
        };
        let current = self.pointer.as_ref().map(|p| &p.folder);
        let candidates: Vec<_> = self
            .superseded
            .iter()
            .filter(|v| Some(&v.folder) != current)
            .collect();
        let doomed = candidates.len().saturating_sub(keep as usize);
        candidates.into_iter().take(doomed).cloned().collect()
    }
}

impl CurrentPointer {
    /// The pointer a completed run proposes, or `None` for a run without an output folder.
    pub fn for_run(run: &RunRecord, now: OffsetDateTime) -> Option<Self> {
        let folder = run.output_folder.clone()?;
        let (parent, version) = folder.as_str().rsplit_once('/')?;
        Some(Self {
            schema: POINTER_SCHEMA,
            export_folder: ObjectPath::new(parent).ok()?,
            current_version: version.to_string(),
            run_id: run.run_id.clone(),
            run_created_at: run.created_at,
            completed_at: run.finished_at.unwrap_or(now),
            source_etag: run.manifest.as_ref().map(|m| m.etag.clone()),
            no_data: run.no_data,
            data_row_count: if run.no_data {
                Some(0)
            } else {
                run.rows_copied()
            },
            files: run
                .parts
                .iter()
                .map(|p| p.dest.file_name().to_string())
                .collect(),
            folder,
        })
    }

    /// Whether this pointer should replace `other`: a later run wins; the run id breaks ties.
    pub fn supersedes(&self, other: &CurrentPointer) -> bool {
        (self.run_created_at, &self.run_id) > (other.run_created_at, &other.run_id)
    }

    pub fn path(&self) -> Result<ObjectPath, StorageError> {
        self.export_folder.join(CURRENT_POINTER_NAME)
    }

    /// Where the ledger keeps its copy: bounded whatever the folder's length.
    pub fn ledger_key(export_folder: &ObjectPath) -> ObjectPath {
        let digest = <md5::Md5 as md5::Digest>::digest(export_folder.as_str().as_bytes());
        ObjectPath::new(format!("current/{}.json", hex::encode(digest))).expect("hex is path-safe")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{AttributeSet, CurrencyCode, ExportKind, ExportRequest};
    use crate::pipeline::run::Trigger;
    use time::macros::datetime;

    fn run(at: OffsetDateTime, folder: &str) -> RunRecord {
        let req = ExportRequest::unbilled(
            ExportKind::UnbilledUsage,
            crate::billing::BillingPeriod::Current,
            "USD".parse::<CurrencyCode>().unwrap(),
            AttributeSet::Full,
        )
        .unwrap();
        let mut r = RunRecord::new(RunId::generate(at), req, Trigger::Timer, at, at);
        r.output_folder = Some(ObjectPath::new(folder).unwrap());
        r
    }

    #[test]
    fn a_later_run_supersedes_an_earlier_one_never_the_reverse() {
        let now = datetime!(2026-11-20 06:00 UTC);
        let a = CurrentPointer::for_run(&run(now, "p/unbilled-usage/202611/USD/full/v-a"), now)
            .unwrap();
        let b = CurrentPointer::for_run(
            &run(
                now + time::Duration::days(1),
                "p/unbilled-usage/202611/USD/full/v-b",
            ),
            now,
        )
        .unwrap();
        assert!(b.supersedes(&a));
        assert!(!a.supersedes(&b));
        assert!(!a.supersedes(&a), "a rerun of the same run changes nothing");
        assert_eq!(a.export_folder.as_str(), "p/unbilled-usage/202611/USD/full");
        assert_eq!(a.current_version, "v-a");
        assert_eq!(
            a.path().unwrap().as_str(),
            "p/unbilled-usage/202611/USD/full/_current.json"
        );
    }

    fn pointer(day: i64, version: &str) -> CurrentPointer {
        let at = datetime!(2026-11-20 06:00 UTC) + time::Duration::days(day);
        let folder = format!("p/unbilled-usage/202611/USD/full/{version}");
        CurrentPointer::for_run(&run(at, &folder), at).unwrap()
    }

    fn folders(v: &[SupersededVersion]) -> Vec<&str> {
        v.iter().map(|v| v.folder.file_name()).collect()
    }

    #[test]
    fn retention_keeps_the_current_version_and_the_newest_superseded_ones() {
        let mut doc = CurrentDoc::default();
        for day in 0..5 {
            assert!(doc.offer(&pointer(day, &format!("v-{day}"))));
        }
        assert_eq!(doc.pointer.as_ref().unwrap().current_version, "v-4");
        assert_eq!(folders(&doc.superseded), ["v-0", "v-1", "v-2", "v-3"]);
        assert_eq!(
            folders(&doc.expired(Retention::KeepPrevious(2))),
            ["v-0", "v-1"],
            "the oldest go first"
        );
        assert!(doc.expired(Retention::KeepPrevious(9)).is_empty());
        assert!(doc.expired(Retention::KeepAll).is_empty());
        assert_eq!(doc.expired(Retention::KeepPrevious(0)).len(), 4);
    }

    #[test]
    fn a_late_finisher_is_superseded_at_once_and_a_returning_version_is_current_again() {
        let mut doc = CurrentDoc::default();
        doc.offer(&pointer(2, "v-new"));
        let late = pointer(1, "v-late");
        assert!(doc.offer(&late), "the late version is recorded");
        assert_eq!(doc.pointer.as_ref().unwrap().current_version, "v-new");
        assert_eq!(folders(&doc.superseded), ["v-late"]);
        assert!(!doc.offer(&late), "offering it again changes nothing");

        // Graph's data went back to what `v-late` holds: that folder is current again and
        // must never be deleted as superseded.
        doc.offer(&pointer(3, "v-late"));
        assert_eq!(folders(&doc.superseded), ["v-new"]);
        assert_eq!(folders(&doc.expired(Retention::KeepPrevious(0))), ["v-new"]);
    }

    #[test]
    fn retention_reads_a_count_or_all() {
        assert_eq!("2".parse(), Ok(Retention::KeepPrevious(2)));
        assert_eq!(" all ".parse(), Ok(Retention::KeepAll));
        assert!("-1".parse::<Retention>().unwrap_err().contains("all"));
    }

    #[test]
    fn ledger_keys_are_bounded_and_distinct() {
        let long = ObjectPath::new(format!("p/{}", "x".repeat(900))).unwrap();
        let k = CurrentPointer::ledger_key(&long);
        assert!(k.as_str().len() < 64);
        assert_ne!(
            k,
            CurrentPointer::ledger_key(&ObjectPath::new("p/other").unwrap())
        );
    }
}

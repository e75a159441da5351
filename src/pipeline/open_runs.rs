//! Indexes that keep the watchdog's and the status list's cost following open work rather than
//! history.
//!
//! - **Open runs**: an `open/{runId}.json` marker per run, written before the run record and
//!   removed once the run is settled ([`RunRecord::is_settled`]). A watchdog pass lists these
//!   markers instead of every record ever written.
//! - **Months**: run ids start with their creation time (`20261205t…`), so one month of run
//!   records is one prefix listing (`runs/202612…`); the status list reads months newest first
//!   and stops when its page is full.
//!
//! Ledgers written before the open-run index existed are indexed once, by the first caller that
//! finds no `notices/open-index.json` (one full listing, then never again).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ledger::{Ledger, LedgerError};
use super::run::{RunId, RunRecord};
use crate::pipeline::ports::storage::ObjectPath;

const OPEN_FOLDER: &str = "open";
const RUNS_FOLDER: &str = "runs";
const INDEX_KEY: &str = "notices/open-index.json";
const CURSOR_KEY: &str = "notices/watchdog-cursor.json";

/// The open-run marker of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenMarker {
    pub run_id: RunId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The ledger's note that the open-run index is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenIndex {
    #[serde(with = "time::serde::rfc3339")]
    pub built_at: OffsetDateTime,
    /// The oldest creation month (`yyyymm`) any run record can have: listing months stops here.
    pub earliest_month: u32,
    /// Open runs the one-time indexing found.
    pub indexed: usize,
}

/// Where the last watchdog pass that ran out of time stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    after: Option<RunId>,
}

/// `yyyymm` of a time.
pub fn month_of(t: OffsetDateTime) -> u32 {
    t.year() as u32 * 100 + u32::from(u8::from(t.month()))
}

/// `yyyymm` of the month before.
pub fn previous_month(m: u32) -> u32 {
    if m % 100 <= 1 {
        (m / 100 - 1) * 100 + 12
    } else {
        m - 1
    }
}

/// The run id a ledger key names (`runs/{id}.json`, `open/{id}.json`).
fn id_of(key: &ObjectPath) -> Option<RunId> {
    key.file_name().strip_suffix(".json")?.parse().ok()
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("index documents serialize")
}

fn static_path(name: &str) -> ObjectPath {
    ObjectPath::new(name).expect("static")
}

impl Ledger {
    fn open_key(id: &RunId) -> ObjectPath {
        ObjectPath::new(format!("{OPEN_FOLDER}/{id}.json")).expect("run ids are path-safe")
    }

    /// Adds `rec` to the open-run index (already there is fine).
    pub(super) async fn mark_open(&self, rec: &RunRecord) -> Result<(), LedgerError> {
        self.put_marker(&rec.run_id, rec.created_at).await
    }

    async fn put_marker(&self, id: &RunId, created_at: OffsetDateTime) -> Result<(), LedgerError> {
        let marker = OpenMarker {
            run_id: id.clone(),
            created_at,
        };
        self.store
            .create(&Self::open_key(id), json(&marker))
            .await?;
        Ok(())
    }

    /// The runs in the open-run index, oldest first.
    pub async fn open_run_ids(&self) -> Result<Vec<RunId>, LedgerError> {
        let keys = self.store.list(&static_path(OPEN_FOLDER)).await?;
        let mut ids: Vec<RunId> = keys.iter().filter_map(id_of).collect();
        ids.sort();
        Ok(ids)
    }

    pub async fn open_marker(&self, id: &RunId) -> Result<Option<OpenMarker>, LedgerError> {
        Ok(self.read_json(&Self::open_key(id)).await?.map(|(m, _)| m))
    }

    /// Takes a settled run (or a marker whose run was never written) out of the index.
    pub async fn close_open(&self, id: &RunId) -> Result<bool, LedgerError> {
        Ok(self.store.delete(&Self::open_key(id)).await?)
    }

    /// The ids of the runs created in `month` (`yyyymm`), oldest first: one prefix listing.
    pub async fn run_ids_of_month(&self, month: u32) -> Result<Vec<RunId>, LedgerError> {
        let keys = self
            .store
            .list_starting(&static_path(RUNS_FOLDER), &format!("{month:06}"))
            .await?;
        let mut ids: Vec<RunId> = keys.iter().filter_map(id_of).collect();
        ids.sort();
        Ok(ids)
    }

    /// The open-run index's note, indexing the ledger first if nobody has (one full listing,
    /// once per ledger). Indexing twice at once is harmless: markers are create-if-absent.
    pub async fn open_index(&self, now: OffsetDateTime) -> Result<OpenIndex, LedgerError> {
        let key = static_path(INDEX_KEY);
        if let Some((index, _)) = self.read_json::<OpenIndex>(&key).await? {
            return Ok(index);
        }
        let keys = self.store.list(&static_path(RUNS_FOLDER)).await?;
        let mut earliest = month_of(now);
        let mut indexed = 0;
        for k in &keys {
            let Some(id) = id_of(k) else { continue };
            if let Some(m) = id.as_str().get(..6).and_then(|m| m.parse::<u32>().ok()) {
                earliest = earliest.min(m);
            }
            let open = match self.read_json::<RunRecord>(k).await {
                Ok(Some((run, _))) => !run.is_settled(),
                Ok(None) => false,
                // Unreadable: indexed, so every pass reports it until someone repairs it.
                Err(_) => true,
            };
            if open {
                self.put_marker(&id, now).await?;
                indexed += 1;
            }
        }
        // A month of margin for instances whose clocks run behind.
        let index = OpenIndex {
            built_at: now,
            earliest_month: previous_month(earliest),
            indexed,
        };
        if self.store.create(&key, json(&index)).await?.is_none() {
            if let Some((theirs, _)) = self.read_json::<OpenIndex>(&key).await? {
                return Ok(theirs);
            }
        }
        tracing::info!(
            runs = keys.len(),
            open = indexed,
            "run ledger indexed: open runs and months"
        );
        Ok(index)
    }

    /// Where the previous watchdog pass ran out of time, if it did.
    pub async fn watchdog_cursor(&self) -> Result<Option<RunId>, LedgerError> {
        Ok(self
            .read_json::<Cursor>(&static_path(CURSOR_KEY))
            .await?
            .and_then(|(c, _)| c.after))
    }

    /// Records where this pass stopped (`None`: it got through every open run).
    pub async fn set_watchdog_cursor(&self, after: Option<RunId>) -> Result<(), LedgerError> {
        let key = static_path(CURSOR_KEY);
        let body = json(&Cursor { after });
        match self.store.read(&key).await? {
            None => {
                self.store.create(&key, body).await?;
            }
            // Last writer wins: two passes at once cover the same runs either way.
            Some((_, etag)) => {
                self.store.replace(&key, body, &etag).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_step_back_over_new_year() {
        assert_eq!(previous_month(202601), 202512);
        assert_eq!(previous_month(202612), 202611);
        assert_eq!(
            month_of(time::macros::datetime!(2026-03-31 23:59 UTC)),
            202603
        );
    }
}

//! The typed run ledger over a [`LedgerStore`]: read-modify-write with compare-and-swap, retried
//! on conflicts, so concurrent invocations (fan-in of many copies) never lose an update.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::storage::{ETag, LedgerStore, ObjectPath, StorageError};

use super::run::{RequestIndex, RunId, RunRecord};

const MAX_CAS_ATTEMPTS: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("ledger document {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("run {0} is not in the ledger")]
    UnknownRun(RunId),
    #[error("too much contention updating {0}; giving up for now")]
    Contention(String),
}

#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
}

/// What a claim of a request key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller's new run now serves the key.
    New,
    /// Another run is still active for the key.
    Active(Box<RunRecord>),
}

impl Ledger {
    pub fn new(store: Arc<dyn LedgerStore>) -> Self {
        Self { store }
    }

    fn run_key(id: &RunId) -> ObjectPath {
        ObjectPath::new(format!("runs/{id}.json")).expect("run ids are path-safe")
    }

    fn request_key(request_key: &str) -> Result<ObjectPath, StorageError> {
        ObjectPath::new(format!("requests/{request_key}.json"))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &ObjectPath,
    ) -> Result<Option<(T, ETag)>, LedgerError> {
        match self.store.read(key).await? {
            None => Ok(None),
            Some((bytes, etag)) => serde_json::from_slice(&bytes)
                .map(|v| Some((v, etag)))
                .map_err(|e| LedgerError::Corrupt {
                    key: key.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    pub async fn get(&self, id: &RunId) -> Result<Option<RunRecord>, LedgerError> {
        Ok(self.read_json(&Self::run_key(id)).await?.map(|(r, _)| r))
    }

    pub async fn create_run(&self, rec: &RunRecord) -> Result<bool, LedgerError> {
        let body = serde_json::to_vec_pretty(rec).expect("run records serialize");
        Ok(self
            .store
            .create(&Self::run_key(&rec.run_id), body)
            .await?
            .is_some())
    }

    /// Applies `f` to the current record and stores the result if `f` returns `Some`; retries on
    /// conflicting writers. Returns the stored record and `f`'s value, or `None` if `f` declined.
    pub async fn update<T>(
        &self,
        id: &RunId,
        mut f: impl FnMut(&mut RunRecord) -> Option<T>,
    ) -> Result<Option<(RunRecord, T)>, LedgerError> {
        let key = Self::run_key(id);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some((mut rec, etag)) = self.read_json::<RunRecord>(&key).await? else {
                return Err(LedgerError::UnknownRun(id.clone()));
            };
            let Some(out) = f(&mut rec) else {
                return Ok(None);
            };
            rec.updated_at = time::OffsetDateTime::now_utc();
            let body = serde_json::to_vec_pretty(&rec).expect("run records serialize");
            if self.store.replace(&key, body, &etag).await?.is_some() {
                return Ok(Some((rec, out)));
            }
            // Lost a race with another invocation: back off a little and try again.
            let ms = 2
                + u64::from(attempt.min(8)) * 3
                + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Err(LedgerError::Contention(key.to_string()))
    }

    /// Makes `run` the active run of its request key unless another active run holds it.
    /// `load` reads the holder's record to decide whether it is still active.
    pub async fn claim_request(&self, rec: &RunRecord) -> Result<Claim, LedgerError> {
        let key = Self::request_key(&rec.request.key())?;
        let body = serde_json::to_vec(&RequestIndex {
            run_id: rec.run_id.clone(),
        })
        .expect("index serializes");
        for _ in 0..MAX_CAS_ATTEMPTS {
            match self.read_json::<RequestIndex>(&key).await? {
                None => {
                    if self.store.create(&key, body.clone()).await?.is_some() {
                        return Ok(Claim::New);
                    }
                }
                Some((idx, etag)) => {
                    if let Some(holder) = self.get(&idx.run_id).await? {
                        if !holder.state.is_terminal() {
                            return Ok(Claim::Active(Box::new(holder)));
                        }
                    }
                    if self
                        .store
                        .replace(&key, body.clone(), &etag)
                        .await?
                        .is_some()
                    {
                        return Ok(Claim::New);
                    }
                }
            }
        }
        Err(LedgerError::Contention(key.to_string()))
    }

    /// All runs, newest first.
    pub async fn list(&self, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        let keys = self
            .store
            .list(&ObjectPath::new("runs").expect("static"))
            .await?;
        let mut runs = Vec::new();
        for k in keys.iter().rev().take(limit) {
            if let Some((r, _)) = self.read_json::<RunRecord>(k).await? {
                runs.push(r);
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(runs)
    }
}

//! The typed run ledger over a [`LedgerStore`]: read-modify-write with compare-and-swap, retried
//! on conflicts, so concurrent invocations (fan-in of many copies) never lose an update.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::ports::storage::{ETag, LedgerStore, ObjectPath, StorageError};

use super::current::{CurrentDoc, CurrentPointer};
use super::fanin::{
    apply_results, fanin_key, marker_key, shard_prefix, FaninDoc, PartMarker, PartResult, Progress,
    ShardCompletion, Shards,
};
use super::hubs::HubsMonth;
use super::run::{Attempts, RequestIndex, RunId, RunRecord};

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
    pub(super) store: Arc<dyn LedgerStore>,
}

/// What a claim of a request key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller's new run now serves the key.
    New,
    /// Another run is still active for the key.
    Active(Box<RunRecord>),
}

fn index_body(rec: &RunRecord, earlier: Attempts) -> Vec<u8> {
    serde_json::to_vec(&RequestIndex {
        run_id: rec.run_id.clone(),
        earlier,
    })
    .expect("index serializes")
}

impl Ledger {
    pub fn new(store: Arc<dyn LedgerStore>) -> Self {
        Self { store }
    }

    pub(super) fn run_key(id: &RunId) -> ObjectPath {
        ObjectPath::new(format!("runs/{id}.json")).expect("run ids are path-safe")
    }

    fn request_key(request_key: &str) -> Result<ObjectPath, StorageError> {
        ObjectPath::new(format!("requests/{request_key}.json"))
    }

    pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
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

    /// Creates the run's record, after its open-run marker: a crash between the two leaves a
    /// marker the watchdog clears, never a run the watchdog cannot see.
    pub async fn create_run(&self, rec: &RunRecord) -> Result<bool, LedgerError> {
        self.mark_open(rec).await?;
        let body = serde_json::to_vec_pretty(rec).expect("run records serialize");
        Ok(self
            .store
            .create(&Self::run_key(&rec.run_id), body)
            .await?
            .is_some())
    }

    /// Applies `f` to the current record and stores the result if `f` returns `Some`; retries on
    /// conflicting writers. Returns the stored record and `f`'s value, or `None` if `f` declined.
    pub async fn update<T: Clone>(
        &self,
        id: &RunId,
        mut f: impl FnMut(&mut RunRecord) -> Option<T>,
    ) -> Result<Option<(RunRecord, T)>, LedgerError> {
        let key = Self::run_key(id);
        let mut last_write: Option<String> = None;
        let mut last_result: Option<T> = None;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some((mut rec, etag)) = self.read_json::<RunRecord>(&key).await? else {
                return Err(LedgerError::UnknownRun(id.clone()));
            };
            // Our previous attempt may have been applied although its answer was lost (the
            // store retried a write that had succeeded and then saw the new ETag): the record
            // then carries our write id, and re-applying `f` would wrongly decline.
            if let (Some(ours), Some(done)) = (&last_write, &last_result) {
                if rec.write_id.as_deref() == Some(ours.as_str()) {
                    return Ok(Some((rec, done.clone())));
                }
            }
            let Some(out) = f(&mut rec) else {
                return Ok(None);
            };
            let write_id = uuid::Uuid::new_v4().to_string();
            rec.write_id = Some(write_id.clone());
            rec.updated_at = time::OffsetDateTime::now_utc();
            let body = serde_json::to_vec_pretty(&rec).expect("run records serialize");
            if self.store.replace(&key, body, &etag).await?.is_some() {
                return Ok(Some((rec, out)));
            }
            last_write = Some(write_id);
            last_result = Some(out);
            // Lost a race with another invocation: back off a little and try again.
            let ms = 2
                + u64::from(attempt.min(8)) * 3
                + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Err(LedgerError::Contention(key.to_string()))
    }

    /// Makes `run` the active run of its request key unless another active run holds it. A
    /// holder without a record (its claimer has not created it yet) is adopted, never replaced.
    /// `load` reads the holder's record to decide whether it is still active; a finished
    /// holder's outcome is added to the index's attempt counts.
    pub async fn claim_request(&self, rec: &RunRecord) -> Result<Claim, LedgerError> {
        let key = Self::request_key(&rec.ledger_key())?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            match self.read_json::<RequestIndex>(&key).await? {
                None => {
                    let body = index_body(rec, Attempts::default());
                    if self.store.create(&key, body).await?.is_some() {
                        return Ok(Claim::New);
                    }
                }
                Some((idx, etag)) => {
                    let mut holder = self.get(&idx.run_id).await?;
                    if holder.is_none() {
                        // The holder claimed the key and has not written its run yet (or died
                        // in between): adopt its run by writing it under its id, so every
                        // claimer of the key ends up with one run, whoever writes first.
                        let mut adopted = rec.clone();
                        adopted.run_id = idx.run_id.clone();
                        self.create_run(&adopted).await?;
                        holder = self.get(&idx.run_id).await?;
                    }
                    if let Some(holder) = &holder {
                        if !holder.state.is_terminal() {
                            return Ok(Claim::Active(Box::new(holder.clone())));
                        }
                    }
                    let earlier = match &holder {
                        Some(h) => idx.earlier.with(h),
                        None => idx.earlier,
                    };
                    let body = index_body(rec, earlier);
                    if self.store.replace(&key, body, &etag).await?.is_some() {
                        return Ok(Claim::New);
                    }
                }
            }
        }
        Err(LedgerError::Contention(key.to_string()))
    }

    /// The run that last claimed `request_key` (see [`Ledger::claim_request`]), if any: one
    /// index read and one record read, however long the history.
    pub async fn run_of_request(
        &self,
        request_key: &str,
    ) -> Result<Option<RunRecord>, LedgerError> {
        Ok(self.request_history(request_key).await?.map(|(r, _)| r))
    }

    /// The latest run of `request_key` and the outcomes of every run of it, that one included.
    pub async fn request_history(
        &self,
        request_key: &str,
    ) -> Result<Option<(RunRecord, Attempts)>, LedgerError> {
        let key = Self::request_key(request_key)?;
        let Some((idx, _)) = self.read_json::<RequestIndex>(&key).await? else {
            return Ok(None);
        };
        Ok(self.get(&idx.run_id).await?.map(|run| {
            let attempts = idx.earlier.with(&run);
            (run, attempts)
        }))
    }

    /// Creates-or-updates a small document with compare-and-swap; `f` returns `None` when there
    /// is nothing to change. Returns the document as stored (or as found).
    async fn upsert<T>(
        &self,
        key: &ObjectPath,
        mut f: impl FnMut(&mut T) -> bool,
    ) -> Result<T, LedgerError>
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let (mut doc, etag) = match self.read_json::<T>(key).await? {
                Some((d, e)) => (d, Some(e)),
                None => (T::default(), None),
            };
            if !f(&mut doc) {
                return Ok(doc);
            }
            let body = serde_json::to_vec(&doc).expect("ledger documents serialize");
            let stored = match &etag {
                Some(e) => self.store.replace(key, body, e).await?,
                None => self.store.create(key, body).await?,
            };
            if stored.is_some() {
                return Ok(doc);
            }
            let ms = 1
                + u64::from(attempt.min(8)) * 2
                + u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 4);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Err(LedgerError::Contention(key.to_string()))
    }

    /// The recorded result of one part, if any (one small read).
    pub async fn part_result(
        &self,
        run: &RunRecord,
        part: u32,
    ) -> Result<Option<PartResult>, LedgerError> {
        let shard = Shards::of(run).shard_of(part);
        Ok(self
            .read_json::<PartMarker>(&marker_key(&run.run_id, shard, part))
            .await?
            .map(|(m, _)| m.result))
    }

    /// Records a part's result (once: a redelivery keeps the first marker). Returns whether
    /// the part's shard now has all its markers.
    pub async fn record_part(
        &self,
        run: &RunRecord,
        part: u32,
        result: &PartResult,
    ) -> Result<bool, LedgerError> {
        let shard = Shards::of(run).shard_of(part);
        let marker = PartMarker {
            part,
            result: result.clone(),
            at: time::OffsetDateTime::now_utc(),
        };
        let body = serde_json::to_vec(&marker).expect("markers serialize");
        // Already there (a redelivery): the first result stands.
        self.store
            .create(&marker_key(&run.run_id, shard, part), body)
            .await?;
        self.shard_complete(run, shard).await
    }

    /// Whether every part of `shard` has its marker (one listing).
    pub async fn shard_complete(&self, run: &RunRecord, shard: u32) -> Result<bool, LedgerError> {
        let present = self
            .store
            .list(&shard_prefix(&run.run_id, shard))
            .await?
            .len() as u32;
        Ok(present >= Shards::of(run).members(shard))
    }

    /// Marks a shard complete (once), and says whether every shard of the run is now complete
    /// and whether this call added the shard: of all the calls that see the run complete, only
    /// the one that added the last shard goes on to fold it.
    pub async fn complete_shard(
        &self,
        run: &RunRecord,
        shard: u32,
    ) -> Result<ShardCompletion, LedgerError> {
        let shards = Shards::of(run);
        let now = time::OffsetDateTime::now_utc();
        let mut added = false;
        let doc: FaninDoc = self
            .upsert(&fanin_key(&run.run_id), |d: &mut FaninDoc| {
                added = d.completed.insert(shard);
                if added {
                    d.last_at = Some(now);
                }
                added
            })
            .await?;
        Ok(ShardCompletion {
            all: doc.completed.len() as u32 >= shards.count,
            added,
        })
    }

    /// A copying run's progress: the fan-in document, then a listing and the markers of each
    /// shard not complete yet. Costs what is still missing, not what was copied.
    pub async fn progress(&self, run: &RunRecord) -> Result<Progress, LedgerError> {
        let shards = Shards::of(run);
        let fanin = self.fanin(&run.run_id).await?;
        let mut out = Progress {
            done: BTreeSet::new(),
            last_at: fanin.last_at,
        };
        for k in 0..shards.count {
            if fanin.completed.contains(&k) {
                let first = k * super::fanin::PARTS_PER_SHARD;
                out.done.extend(first..first + shards.members(k));
                continue;
            }
            for key in self.store.list(&shard_prefix(&run.run_id, k)).await? {
                if let Some((m, _)) = self.read_json::<PartMarker>(&key).await? {
                    out.last_at = out.last_at.max(Some(m.at));
                    out.done.insert(m.part);
                }
            }
        }
        Ok(out)
    }

    /// The run's fan-in progress: completed shards (one small read).
    pub async fn fanin(&self, run: &RunId) -> Result<FaninDoc, LedgerError> {
        Ok(self
            .read_json::<FaninDoc>(&fanin_key(run))
            .await?
            .map(|(d, _)| d)
            .unwrap_or_default())
    }

    /// Every recorded part result of a run (one read per marker), and when the last one was
    /// recorded.
    pub async fn part_results(
        &self,
        run: &RunRecord,
    ) -> Result<(BTreeMap<u32, PartResult>, Option<time::OffsetDateTime>), LedgerError> {
        let prefix =
            ObjectPath::new(format!("parts/{}", run.run_id)).expect("run ids are path-safe");
        let keys = self.store.list(&prefix).await?;
        let mut all = BTreeMap::new();
        let mut last = None;
        for k in keys {
            if let Some((m, _)) = self.read_json::<PartMarker>(&k).await? {
                last = last.max(Some(m.at));
                all.insert(m.part, m.result);
            }
        }
        Ok((all, last))
    }

    /// The run with the results recorded so far filled into its parts (a copying run's record
    /// holds them only once the fan-in folds them in). Costs one read per recorded part.
    pub async fn get_live(&self, id: &RunId) -> Result<Option<RunRecord>, LedgerError> {
        let Some(mut run) = self.get(id).await? else {
            return Ok(None);
        };
        if run.state == super::run::RunState::Copying {
            let (results, _) = self.part_results(&run).await?;
            apply_results(&mut run, &results);
        }
        Ok(Some(run))
    }

    /// Records a one-off notice (e.g. "the invoices of 2026-11 are missing") under `notices/`.
    /// True only for the caller that created it, so the notice is given once however often
    /// (and on however many instances) the same condition is seen.
    pub async fn record_notice(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<bool, LedgerError> {
        let key = ObjectPath::new(format!("notices/{name}.json"))?;
        let body = serde_json::to_vec(body).expect("JSON values serialize");
        Ok(self.store.create(&key, body).await?.is_some())
    }

    /// Offers `candidate` as the current version of its export. Returns the pointer the
    /// ledger holds afterwards (the candidate if it won, else the newer one already there)
    /// and, when the candidate replaced an older pointer, that older one; with the whole
    /// document, whose superseded list retention works from.
    pub async fn advance_current(
        &self,
        candidate: &CurrentPointer,
    ) -> Result<(CurrentPointer, Option<CurrentPointer>, CurrentDoc), LedgerError> {
        let key = CurrentPointer::ledger_key(&candidate.export_folder);
        let mut replaced = None;
        let doc = self
            .upsert::<CurrentDoc>(&key, |doc| {
                let before = doc.pointer.clone();
                let changed = doc.offer(candidate);
                let won = doc.pointer.as_ref().map(|p| &p.run_id) == Some(&candidate.run_id);
                replaced = before.filter(|b| won && b.run_id != candidate.run_id);
                changed
            })
            .await?;
        let held = doc.pointer.clone().unwrap_or_else(|| candidate.clone());
        let replaced = replaced.filter(|_| held.run_id == candidate.run_id);
        Ok((held, replaced, doc))
    }

    /// Removes deleted versions from an export's superseded list.
    pub async fn forget_superseded(
        &self,
        export_folder: &ObjectPath,
        deleted: &[ObjectPath],
    ) -> Result<(), LedgerError> {
        let key = CurrentPointer::ledger_key(export_folder);
        self.upsert::<CurrentDoc>(&key, |doc| {
            let before = doc.superseded.len();
            doc.superseded.retain(|v| !deleted.contains(&v.folder));
            doc.superseded.len() != before
        })
        .await?;
        Ok(())
    }

    /// The ledger's current pointer of an export folder, if any.
    pub async fn current(
        &self,
        export_folder: &ObjectPath,
    ) -> Result<Option<CurrentPointer>, LedgerError> {
        let key = CurrentPointer::ledger_key(export_folder);
        Ok(self
            .read_json::<CurrentDoc>(&key)
            .await?
            .and_then(|(d, _)| d.pointer))
    }

    /// Changes one partner's month in FinOps hubs (`hubs/{tenant}/{yyyymm}.json`) with `f`
    /// (compare-and-swap; `f` may run more than once and returns whether it changed the
    /// document); returns the document as stored and what `f` last returned.
    pub async fn update_hubs_month<R: Default>(
        &self,
        tenant: &str,
        month: &str,
        mut f: impl FnMut(&mut HubsMonth) -> (bool, R),
    ) -> Result<(HubsMonth, R), LedgerError> {
        let key = ObjectPath::new(format!("hubs/{tenant}/{month}.json"))?;
        let mut out = R::default();
        let doc = self
            .upsert::<HubsMonth>(&key, |d| {
                let (changed, r) = f(d);
                out = r;
                changed
            })
            .await?;
        Ok((doc, out))
    }

    /// A notice recorded by [`Ledger::record_notice`], if any.
    pub async fn notice(&self, name: &str) -> Result<Option<serde_json::Value>, LedgerError> {
        let key = ObjectPath::new(format!("notices/{name}.json"))?;
        Ok(self.read_json(&key).await?.map(|(v, _)| v))
    }

    /// Replaces a notice's document (e.g. to record that its event went out).
    pub async fn update_notice(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        let key = ObjectPath::new(format!("notices/{name}.json"))?;
        self.upsert::<serde_json::Value>(&key, |v| {
            *v = body.clone();
            true
        })
        .await?;
        Ok(())
    }

    /// All runs, newest first. A record that cannot be read or understood is skipped (and
    /// logged), so one bad document never hides the others.
    pub async fn list(&self, limit: usize) -> Result<Vec<RunRecord>, LedgerError> {
        Ok(self.list_readable(limit).await?.0)
    }

    /// [`Ledger::list`], with the keys it skipped and why.
    pub async fn list_readable(
        &self,
        limit: usize,
    ) -> Result<(Vec<RunRecord>, Vec<(String, String)>), LedgerError> {
        let keys = self
            .store
            .list(&ObjectPath::new("runs").expect("static"))
            .await?;
        let mut runs = Vec::new();
        let mut bad = Vec::new();
        for k in keys.iter().rev().take(limit) {
            match self.read_json::<RunRecord>(k).await {
                Ok(Some((r, _))) => runs.push(r),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key = %k, error = %e, "run record skipped: unreadable");
                    bad.push((k.to_string(), e.to_string()));
                }
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok((runs, bad))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::billing::{AttributeSet, BillingPeriod, ExportKind, ExportRequest};
    use crate::pipeline::run::{RunState, Trigger};

    /// An in-memory store whose first `replace` is applied but answered as a conflict: what a
    /// client sees when storage applied a conditional write, the response was lost, and the
    /// retried request met the new ETag (412).
    #[derive(Debug, Default)]
    struct LostAnswerStore {
        docs: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        lost_once: AtomicBool,
    }

    #[async_trait]
    impl LedgerStore for LostAnswerStore {
        async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
            let docs = self.docs.lock().unwrap();
            Ok(docs
                .get(key.as_str())
                .map(|(b, v)| (b.clone(), ETag(v.to_string()))))
        }
        async fn create(
            &self,
            key: &ObjectPath,
            body: Vec<u8>,
        ) -> Result<Option<ETag>, StorageError> {
            let mut docs = self.docs.lock().unwrap();
            if docs.contains_key(key.as_str()) {
                return Ok(None);
            }
            docs.insert(key.to_string(), (body, 1));
            Ok(Some(ETag("1".into())))
        }
        async fn replace(
            &self,
            key: &ObjectPath,
            body: Vec<u8>,
            if_match: &ETag,
        ) -> Result<Option<ETag>, StorageError> {
            let mut docs = self.docs.lock().unwrap();
            let Some((_, v)) = docs.get(key.as_str()).cloned() else {
                return Ok(None);
            };
            if v.to_string() != if_match.0 {
                return Ok(None);
            }
            docs.insert(key.to_string(), (body, v + 1));
            if !self.lost_once.swap(true, Ordering::SeqCst) {
                return Ok(None);
            }
            Ok(Some(ETag((v + 1).to_string())))
        }
        async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
            let p = format!("{}/", prefix.as_str());
            let docs = self.docs.lock().unwrap();
            let mut keys: Vec<ObjectPath> = docs
                .keys()
                .filter(|k| k.starts_with(&p))
                .filter_map(|k| ObjectPath::new(k.clone()).ok())
                .collect();
            keys.sort();
            Ok(keys)
        }
        async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
            Ok(self.docs.lock().unwrap().remove(key.as_str()).is_some())
        }
    }

    #[tokio::test]
    async fn a_write_applied_with_its_answer_lost_counts_as_done() {
        let ledger = Ledger::new(Arc::new(LostAnswerStore::default()));
        let t = time::OffsetDateTime::now_utc();
        let req = ExportRequest::unbilled(
            ExportKind::UnbilledUsage,
            BillingPeriod::Current,
            "USD".parse().unwrap(),
            AttributeSet::Full,
        )
        .unwrap();
        let rec = RunRecord::new(RunId::generate(t), req, Trigger::Http, t, t);
        ledger.create_run(&rec).await.unwrap();
        // "Mark done once": re-applied to the record our lost write produced, it would decline.
        let out = ledger
            .update(&rec.run_id, |r| {
                (r.state == RunState::Starting).then(|| r.state = RunState::Polling)
            })
            .await
            .unwrap();
        let (stored, ()) = out.expect("the caller learns its write was applied");
        assert_eq!(stored.state, RunState::Polling);
    }

    fn usd() -> ExportRequest {
        ExportRequest::unbilled(
            ExportKind::UnbilledUsage,
            BillingPeriod::Current,
            "USD".parse().unwrap(),
            AttributeSet::Full,
        )
        .unwrap()
    }

    /// A plain store (its one lost answer already spent).
    fn plain() -> Ledger {
        let store = LostAnswerStore::default();
        store.lost_once.store(true, Ordering::SeqCst);
        Ledger::new(Arc::new(store))
    }

    #[tokio::test]
    async fn a_claimer_that_finds_the_holder_unwritten_adopts_its_run() {
        let ledger = plain();
        let t = time::OffsetDateTime::now_utc();
        let a = RunRecord::new(RunId::generate(t), usd(), Trigger::Timer, t, t);
        let b = RunRecord::new(RunId::generate(t), usd(), Trigger::Http, t, t);
        assert_eq!(ledger.claim_request(&a).await.unwrap(), Claim::New);
        // `a` has not written its run yet when `b` claims the same request.
        let Claim::Active(held) = ledger.claim_request(&b).await.unwrap() else {
            panic!("the second claimer took the key over");
        };
        assert_eq!(held.run_id, a.run_id);
        assert!(!ledger.create_run(&a).await.unwrap(), "one record, one id");
        assert_eq!(ledger.list(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unreadable_record_is_skipped_not_fatal() {
        let ledger = plain();
        let t = time::OffsetDateTime::now_utc();
        let a = RunRecord::new(RunId::generate(t), usd(), Trigger::Timer, t, t);
        ledger.create_run(&a).await.unwrap();
        ledger
            .store
            .create(&ObjectPath::new("runs/stray.json").unwrap(), b"{".to_vec())
            .await
            .unwrap();
        let (runs, bad) = ledger.list_readable(usize::MAX).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(bad.len(), 1, "{bad:?}");
    }
}

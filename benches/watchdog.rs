//! `cargo bench --bench watchdog` (or `scripts/bench.sh`): what one watchdog pass and one
//! status page cost beside a long history. 100 open runs (polling, waiting for Graph) sit
//! beside 0, 10,000 and 100,000 settled runs spread over the months before; the ledger is an
//! in-memory store that lists by name prefix on the server side, as blob storage does, and
//! counts every document read and every name listed. Prints the counts and wall time of the
//! first pass after an upgrade (which indexes the ledger once), of a pass after that, and of
//! the newest status page; nothing is asserted. `cargo bench --bench watchdog -- 0 1000`
//! picks the history sizes.

// Only the pipeline and sandbox of the shared module are needed here.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use partner_billing_export::adapters::memory_queue::MemoryQueue;
use partner_billing_export::adapters::storage::{ETag, LedgerStore, ObjectPath, StorageError};
use partner_billing_export::billing::{AttributeSet, BillingPeriod, ExportKind, ExportRequest};
use partner_billing_export::contracts::status::ListQuery;
use partner_billing_export::pipeline::{status, Ledger, RunId, RunRecord, RunState, Trigger};
use time::OffsetDateTime;

const OPEN: usize = 100;

/// Documents in memory; reads and listed names counted.
#[derive(Debug, Default)]
struct Memory {
    docs: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    reads: AtomicU64,
    listed: AtomicU64,
}

impl Memory {
    fn counts(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.listed.load(Ordering::SeqCst),
        )
    }

    fn names(&self, starts: &str) -> Vec<ObjectPath> {
        let docs = self.docs.lock().unwrap();
        let keys: Vec<ObjectPath> = docs
            .range(starts.to_string()..)
            .take_while(|(k, _)| k.starts_with(starts))
            .filter_map(|(k, _)| ObjectPath::new(k.clone()).ok())
            .collect();
        self.listed
            .fetch_add(keys.len() as u64 + 1, Ordering::SeqCst);
        keys
    }
}

#[async_trait]
impl LedgerStore for Memory {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let docs = self.docs.lock().unwrap();
        Ok(docs
            .get(key.as_str())
            .map(|(b, v)| (b.clone(), ETag(v.to_string()))))
    }
    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError> {
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
        match docs.get(key.as_str()) {
            Some((_, v)) if v.to_string() == if_match.0 => {
                let v = v + 1;
                docs.insert(key.to_string(), (body, v));
                Ok(Some(ETag(v.to_string())))
            }
            _ => Ok(None),
        }
    }
    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
        Ok(self.names(&format!("{prefix}/")))
    }
    async fn list_starting(
        &self,
        folder: &ObjectPath,
        starts: &str,
    ) -> Result<Vec<ObjectPath>, StorageError> {
        Ok(self.names(&format!("{folder}/{starts}")))
    }
    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
        Ok(self.docs.lock().unwrap().remove(key.as_str()).is_some())
    }
}

fn request() -> anyhow::Result<ExportRequest> {
    Ok(ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "USD".parse()?,
        AttributeSet::Full,
    )?)
}

/// `settled` finished runs over the 100 months before `now`, written as an older version
/// left them (no open-run markers), and `OPEN` polling runs this month through the ledger.
async fn seed(
    store: &Memory,
    ledger: &Ledger,
    settled: usize,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let req = request()?;
    for i in 0..settled {
        let at = now - Duration::from_secs(40 * 86_400 + (i as u64 % 100) * 30 * 86_400 + i as u64);
        let mut r = RunRecord::new(RunId::generate(at), req.clone(), Trigger::Timer, at, at);
        r.state = if i % 10 == 0 {
            RunState::Failed
        } else {
            RunState::Completed
        };
        r.final_event_sent = true;
        store.docs.lock().unwrap().insert(
            format!("runs/{}.json", r.run_id),
            (serde_json::to_vec_pretty(&r)?, 1),
        );
    }
    for i in 0..OPEN {
        let at = now - Duration::from_secs(60 * i as u64);
        let mut r = RunRecord::new(
            RunId::generate(at),
            req.clone(),
            Trigger::Timer,
            at,
            at + Duration::from_secs(86_400),
        );
        ledger.create_run(&r).await?;
        r.state = RunState::Polling;
        ledger
            .update(&r.run_id, |x| {
                x.state = RunState::Polling;
                x.next_poll_at = Some(now + Duration::from_secs(3600));
                Some(())
            })
            .await?;
    }
    Ok(())
}

/// Reads, names listed and milliseconds of `f`.
async fn measure<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    store: &Memory,
    f: F,
) -> anyhow::Result<(T, u64, u64, f64)> {
    let (r0, l0) = store.counts();
    let t = Instant::now();
    let out = f.await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let (r1, l1) = store.counts();
    Ok((out, r1 - r0, l1 - l0, ms))
}

async fn one_size(settled: usize) -> anyhow::Result<()> {
    let sandbox = support::sandbox(1).await?;
    let store = Arc::new(Memory::default());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(600)));
    let p = support::pipeline(&sandbox, store.clone(), queue)?;
    let now = OffsetDateTime::now_utc();
    seed(&store, p.ledger(), settled, now).await?;

    let (first, r_up, l_up, ms_up) =
        measure(&store, async { Ok(p.watchdog_at(now).await?) }).await?;
    let (pass, r_pass, l_pass, ms_pass) =
        measure(&store, async { Ok(p.watchdog_at(now).await?) }).await?;
    let query = ListQuery::default();
    let (page, r_page, l_page, ms_page) = measure(&store, async {
        Ok(status::list(p.ledger(), &query, now).await?)
    })
    .await?;
    anyhow::ensure!(
        first.open == OPEN && pass.checked == OPEN,
        "{first:?} {pass:?}"
    );
    anyhow::ensure!(page.runs.len() == query.limit, "a full page");
    println!(
        "watchdog: {OPEN} open beside {settled:>6} settled runs: one pass {r_pass} reads, \
         {l_pass} names listed, {ms_pass:.1} ms; newest status page ({} runs) {r_page} reads, \
         {l_page} names listed, {ms_page:.1} ms; first pass after an upgrade (indexing once) \
         {r_up} reads, {l_up} names listed, {ms_up:.0} ms",
        page.runs.len()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    for n in support::sizes(vec![0, 10_000, 100_000]) {
        one_size(n).await?;
    }
    Ok(())
}

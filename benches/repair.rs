//! `cargo bench --bench repair` (or `scripts/bench.sh`): what one lost copy message costs a
//! large run. 10,000 partitions are fanned out, one copy message is lost, every other copy is
//! handled on one instance, 100 of them are delivered again to a second instance whose cache
//! is cold (stale duplicates), the watchdog repairs the run, and the repaired copy finishes
//! it. The ledger is the real filesystem ledger behind a counter of storage calls; copies are
//! answered at once. Prints storage reads per phase and the messages the repair sent; nothing
//! is asserted. `cargo bench --bench repair -- 1000` picks the size.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use partner_billing_export::adapters::filesystem::FilesystemLedger;
use partner_billing_export::adapters::memory_queue::MemoryQueue;
use partner_billing_export::adapters::storage::{ETag, LedgerStore, ObjectPath, StorageError};
use partner_billing_export::pipeline::{CopyJob, RunState};

/// The ledger store with every read (a document, or one key of a listing) counted.
#[derive(Debug)]
struct Counted {
    inner: FilesystemLedger,
    reads: AtomicU64,
}

impl Counted {
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LedgerStore for Counted {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(key).await
    }
    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError> {
        self.inner.create(key, body).await
    }
    async fn replace(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        if_match: &ETag,
    ) -> Result<Option<ETag>, StorageError> {
        self.inner.replace(key, body, if_match).await
    }
    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
        let keys = self.inner.list(prefix).await?;
        self.reads
            .fetch_add(1 + keys.len() as u64, Ordering::SeqCst);
        Ok(keys)
    }
}

async fn one_run(partitions: u32) -> anyhow::Result<()> {
    let sandbox = support::sandbox(partitions).await?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Counted {
        inner: FilesystemLedger::new(dir.path().join("_ledger")),
        reads: AtomicU64::new(0),
    });
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(600)));
    let a = support::pipeline(&sandbox, store.clone(), queue.clone())?;
    let b = support::pipeline(&sandbox, store.clone(), queue.clone())?;
    let (run, _) = support::start_and_fan_out(&a, &queue).await?;
    let mut jobs = support::due_copies(&queue)?;
    let lost = jobs.remove(0);
    let duplicates: Vec<CopyJob> = jobs.iter().take(100).cloned().collect();
    let n_dup = duplicates.len() as u64;

    let r0 = store.reads();
    support::handle_all(&a, jobs, 1).await?;
    let copy_reads = store.reads() - r0;

    let r1 = store.reads();
    support::handle_all(&b, duplicates, 2).await?;
    let dup_reads = store.reads() - r1;

    let r2 = store.reads();
    let report = b.watchdog_at(support::far()).await?;
    let resent = support::due_copies(&queue)?;
    let repair_reads = store.reads() - r2;
    anyhow::ensure!(
        resent.iter().any(|j| j.part == lost.part),
        "the lost part was not resent"
    );

    let r3 = store.reads();
    support::handle_all(&b, resent.clone(), 1).await?;
    let finish_reads = store.reads() - r3;
    let done = b
        .ledger()
        .get(&run.run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run vanished"))?;
    anyhow::ensure!(
        done.state == RunState::Completed,
        "run ended {:?}",
        done.state
    );

    let total = copy_reads + dup_reads + repair_reads + finish_reads;
    let n = u64::from(partitions);
    println!(
        "repair: {partitions:>6} parts, one lost copy: copies {copy_reads} reads ({:.1}/part), \
         {n_dup} stale duplicates {dup_reads} reads ({:.1} each), repair {repair_reads} reads and \
         {} message(s) (watchdog: {} resent), finish {finish_reads} reads; total {total} reads \
         ({:.1}/part)",
        copy_reads as f64 / n as f64,
        dup_reads as f64 / n_dup.max(1) as f64,
        resent.len(),
        report.copies_resent,
        total as f64 / n as f64,
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    for n in support::sizes(vec![10_000]) {
        one_run(n).await?;
    }
    Ok(())
}

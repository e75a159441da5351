//! `cargo bench --bench fanin` (or `scripts/bench.sh`): orchestration overhead of one run, from
//! the poll that sees the operation succeed to `ExportCompleted`, for 100, 1,000 and 10,000
//! partitions: fan-out (manifest, run record, one copy job per partition), every copy job
//! handled (manifest cache, the part recorded in the ledger) and the fan-in that writes
//! `_manifest.json` and the final event. Copies themselves are excluded: the destination is a
//! stand-in that answers every copy at once, so what is measured is our own work. The ledger
//! is the real filesystem ledger; Graph is the loopback sandbox. Figures are printed, never
//! asserted. `cargo bench --bench fanin -- 100 1000` picks the sizes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::adapters::filesystem::FilesystemLedger;
use partner_billing_export::adapters::memory_queue::MemoryQueue;
use partner_billing_export::pipeline::RunState;

async fn one_run(partitions: u32) -> anyhow::Result<(Duration, usize)> {
    let sandbox = support::sandbox(partitions).await?;
    let dir = tempfile::tempdir()?;
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(600)));
    let pipeline = support::pipeline(
        &sandbox,
        Arc::new(FilesystemLedger::new(dir.path().join("_ledger"))),
        queue.clone(),
    )?;
    // The clock starts at the poll that sees the operation succeed.
    let (run, t0) = support::start_and_fan_out(&pipeline, &queue).await?;
    let mut handled = 0usize;
    loop {
        let batch = support::due_copies(&queue)?;
        if batch.is_empty() {
            break;
        }
        handled += batch.len();
        support::handle_all(&pipeline, batch, 1).await?;
    }
    let elapsed = t0.elapsed();
    let done = pipeline
        .ledger()
        .get(&run.run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run vanished"))?;
    anyhow::ensure!(
        done.state == RunState::Completed,
        "run ended {:?}",
        done.state
    );
    anyhow::ensure!(done.parts.len() == partitions as usize);
    Ok((elapsed, handled))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    for n in support::sizes(vec![100, 1_000, 10_000]) {
        let (elapsed, jobs) = one_run(n).await?;
        println!(
            "fan-in: {n:>6} partitions  orchestration {:>8.2} s  {:>7.1} µs per partition  ({jobs} copy jobs)",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / f64::from(n)
        );
    }
    Ok(())
}

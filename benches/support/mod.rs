//! What the orchestration benches share: a destination that answers every copy at once (they
//! measure our own work, not bytes), and a pipeline over the loopback Graph sandbox and a
//! ledger store of the caller's choosing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use partner_billing_export::adapters::events::LogOnlyPublisher;
use partner_billing_export::adapters::memory_queue::MemoryQueue;
use partner_billing_export::adapters::storage::{
    CopyMethod, CopyOutcome, Destination, LedgerStore, ObjectPath, SourceIdentity, StorageError,
};
use partner_billing_export::auth::{http_client, AllowList, Audience, AuthorizedHttp};
use partner_billing_export::billing::{
    AttributeSet, BillingClient, BillingPeriod, ExportKind, ExportRequest, GraphConfig, PartnerId,
};
use partner_billing_export::pipeline::current::Retention;
use partner_billing_export::pipeline::messages::{OPERATIONS_QUEUE, PARTITIONS_QUEUE};
use partner_billing_export::pipeline::{
    CopyJob, Handled, Ledger, PartnerRuntime, Pipeline, PipelineConfig, PollJob, PollPolicy,
    RunRecord, Trigger,
};
use partner_billing_local::graph_sandbox::{GraphSandbox, SandboxConfig};
use partner_billing_local::tokens::local_token_source;
use time::OffsetDateTime;

/// Answers every copy at once.
#[derive(Debug)]
pub struct InstantDestination;

#[async_trait]
impl Destination for InstantDestination {
    async fn copy_from_url(
        &self,
        _source: &url::Url,
        _dest: &ObjectPath,
        _identity: &SourceIdentity,
    ) -> Result<CopyOutcome, StorageError> {
        Ok(CopyOutcome {
            bytes: 1024,
            md5: Some("0123456789abcdef0123456789abcdef".into()),
            rows: Some(10),
            method: CopyMethod::ServerSide,
        })
    }
    async fn put_bytes(&self, _: &ObjectPath, _: Bytes, _: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn locate(&self, dest: &ObjectPath) -> String {
        dest.to_string()
    }
}

/// A pipeline instance (its own caches) over `store` and `queue`, polling `sandbox`.
pub fn pipeline(
    sandbox: &GraphSandbox,
    store: Arc<dyn LedgerStore>,
    queue: Arc<MemoryQueue>,
) -> anyhow::Result<Pipeline> {
    let graph = GraphConfig {
        base_url: sandbox.graph_base_url(),
        ..GraphConfig::default()
    };
    let mut allow = AllowList::default();
    allow.allow_url(Audience::Graph, &graph.base_url);
    let http = AuthorizedHttp::new(http_client(), Arc::new(local_token_source()), allow);
    Ok(Pipeline::new(
        queue,
        Arc::new(LogOnlyPublisher),
        Arc::new(InstantDestination),
        Ledger::new(store),
        PipelineConfig {
            poll: PollPolicy {
                default_retry_after: Duration::ZERO,
                min_retry_after: Duration::ZERO,
                max_retry_after: Duration::from_secs(1),
                max_restarts: 1,
            },
            poll_deadline: Duration::from_secs(3600),
            event_source: "/bench".into(),
            output_prefix: ObjectPath::new("bench")?,
            max_copy_attempts: 5,
            stall_after: Duration::from_secs(900),
            max_repairs: 3,
            watchdog_budget: partner_billing_export::pipeline::WATCHDOG_BUDGET,
            formats: Default::default(),
            invoice_tolerance: Default::default(),
            retention: Retention::KeepAll,
        },
    )
    .with_partner(
        PartnerId::default_partner(),
        PartnerRuntime::new(BillingClient::new(http, graph)),
    ))
}

/// The loopback Graph sandbox with one export of `partitions` one-row partitions, done at once.
pub async fn sandbox(partitions: u32) -> anyhow::Result<GraphSandbox> {
    GraphSandbox::start(SandboxConfig {
        partitions,
        rows_per_partition: 1,
        polls_before_done: 0,
        retry_after_secs: 0,
        ..SandboxConfig::default()
    })
    .await
}

/// Far enough ahead that every scheduled message is due.
pub fn far() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(24 * 3600)
}

/// Starts an unbilled USD export on `p` and polls it until it fans out. Returns the run and
/// when the fanning poll began.
pub async fn start_and_fan_out(
    p: &Pipeline,
    queue: &MemoryQueue,
) -> anyhow::Result<(RunRecord, Instant)> {
    let request = ExportRequest::unbilled(
        ExportKind::UnbilledUsage,
        BillingPeriod::Current,
        "USD".parse()?,
        AttributeSet::Full,
    )?;
    let run = p.start(request, Trigger::Cli).await?.run().clone();
    loop {
        let d = queue
            .receive_due(OPERATIONS_QUEUE, far())
            .ok_or_else(|| anyhow::anyhow!("no poll queued"))?;
        let job = PollJob::try_from(&d.json()?)?;
        let t = Instant::now();
        if let Handled::FannedOut(_) = p.handle_poll(&job).await? {
            return Ok((run, t));
        }
    }
}

/// Every copy job due now, parsed.
pub fn due_copies(queue: &MemoryQueue) -> anyhow::Result<Vec<CopyJob>> {
    let mut jobs = Vec::new();
    while let Some(d) = queue.receive_due(PARTITIONS_QUEUE, far()) {
        jobs.push(CopyJob::try_from(&d.json()?)?);
    }
    Ok(jobs)
}

/// Handles `jobs` on `p`, 16 at a time, as deliveries number `delivery`.
pub async fn handle_all(p: &Pipeline, jobs: Vec<CopyJob>, delivery: u32) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(jobs)
        .map(|job| async move { p.handle_copy(&job, delivery).await })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// The sizes given on the command line (`cargo bench --bench x -- 100 1000`), or `default`.
pub fn sizes<T: std::str::FromStr>(default: Vec<T>) -> Vec<T> {
    let given: Vec<T> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if given.is_empty() {
        default
    } else {
        given
    }
}

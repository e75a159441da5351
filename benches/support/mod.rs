//! What the orchestration benches share: a destination that answers every copy at once (they
//! measure our own work, not bytes), and a pipeline over the loopback Graph sandbox and a
//! ledger store of the caller's choosing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use partner_billing_export::adapters::events::LogOnlyPublisher;
use partner_billing_export::adapters::memory_queue::MemoryQueue;
use partner_billing_export::adapters::storage::{
    CopyMethod, CopyOutcome, Destination, LedgerStore, ObjectPath, SourceIdentity, StorageError,
};
use partner_billing_export::auth::{http_client, AllowList, Audience, AuthorizedHttp};
use partner_billing_export::billing::{BillingClient, GraphConfig, PartnerId};
use partner_billing_export::pipeline::current::Retention;
use partner_billing_export::pipeline::{
    Ledger, PartnerRuntime, Pipeline, PipelineConfig, PollPolicy,
};
use partner_billing_local::graph_sandbox::GraphSandbox;
use partner_billing_local::tokens::local_token_source;

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

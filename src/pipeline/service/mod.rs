//! The export pipeline: start → poll (scheduled messages) → fan out copies → fan in. Every
//! step is a short idempotent invocation; the ledger decides what a redelivered or duplicated
//! message still has to do.

mod convert;
mod copy;
mod current;
mod finops;
mod follow_up;
mod hubs;
mod poll;
mod start;
mod watchdog;

pub use copy::MAX_LANDING_ATTEMPTS;
pub use follow_up::MAX_FOLLOW_UP_ATTEMPTS;
pub use watchdog::WatchdogReport;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use super::decide::PollPolicy;
use super::ledger::{Ledger, LedgerError};
use super::manifest_cache::ManifestCache;
use super::run::{RunId, RunRecord};
use crate::billing::{
    BillingClient, BillingError, InvalidInput, Manifest, OperationState, PartnerId, PollOutcome,
};
use crate::pipeline::ports::events::{CloudEvent, EventError, EventPublisher};
use crate::pipeline::ports::queue::{MessageQueue, QueueError};
use crate::pipeline::ports::storage::{Destination, ObjectPath, StorageError};

/// A run that has stood still this long past its next poll gets its poll message sent again.
pub(super) const STALL_GRACE: Duration = Duration::from_secs(300);
/// A finisher that claimed the final event this long ago and did not send it is presumed dead.
pub(super) const FINISH_CLAIM_TTL: Duration = Duration::from_secs(120);
/// Copy jobs sent concurrently when fanning out.
pub(super) const FANOUT_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub poll: PollPolicy,
    pub poll_deadline: Duration,
    /// CloudEvents `source`.
    pub event_source: String,
    /// Folder prefix of every run's output.
    pub output_prefix: ObjectPath,
    /// Deliveries of one copy job before its run fails (below the queue's maxDeliveryCount, so
    /// the run fails with an event instead of the message dead-lettering silently).
    pub max_copy_attempts: u32,
    /// A run that has not moved for this long is resumed by the watchdog.
    pub stall_after: Duration,
    /// A run the watchdog has resumed this often without progress is failed (`stalled`).
    pub max_repairs: u32,
    /// Formats derived from each copied partition.
    pub formats: super::derived::OutputFormats,
    /// Largest difference between an invoice and its reconciliation data that still balances.
    pub invoice_tolerance: super::derived::Amount,
    /// How many superseded data versions of an export stay in storage.
    pub retention: super::current::Retention,
    /// How long one watchdog pass may work before it leaves the rest to the next pass.
    pub watchdog_budget: Duration,
}

/// Default for [`PipelineConfig::watchdog_budget`]: half the host's ten-minute function
/// timeout (host.json), so a pass always ends and records where it stopped.
pub const WATCHDOG_BUDGET: Duration = Duration::from_secs(300);

/// Default for [`PipelineConfig::max_copy_attempts`]; the queue's maxDeliveryCount is 10.
pub const MAX_COPY_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("{0}")]
    Source(String),
    #[error("partner {0} is not in the configuration (PARTNERS)")]
    UnknownPartner(PartnerId),
}

/// What a start request led to.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Started(Box<RunRecord>),
    /// The same export is already running: nothing new was started.
    Duplicate(Box<RunRecord>),
    /// Graph refused the export (e.g. an unknown invoice); the run is recorded as failed.
    Rejected(Box<RunRecord>),
}

impl StartOutcome {
    pub fn run(&self) -> &RunRecord {
        match self {
            StartOutcome::Started(r) | StartOutcome::Duplicate(r) | StartOutcome::Rejected(r) => r,
        }
    }
}

/// What a queue message led to (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Ignored(&'static str),
    Rescheduled,
    FannedOut(usize),
    Copied { part: u32, skipped: bool },
    Completed,
    Failed,
    Restarted,
}

/// One partner tenant as the pipeline sees it: its own Graph client (own credential, own
/// concurrency bound, own throttling), where its output goes, the tenant its data must come
/// from, and its invoices. Built from the configuration (`config` decides every field).
#[derive(Debug, Clone)]
pub struct PartnerRuntime {
    pub billing: BillingClient,
    /// Folder below the output prefix; `None`: the output prefix itself.
    pub folder: Option<ObjectPath>,
    /// The partner's Entra ID tenant, when known: its manifests must name it, and its runs'
    /// events carry it (`data.partnerTenantId`).
    pub tenant_id: Option<String>,
    /// Its invoices, for the invoice check (its own Partner Center credential).
    pub invoices: Option<Arc<dyn super::invoice_check::InvoiceSource>>,
}

impl PartnerRuntime {
    /// A partner served by `billing` alone: output under the prefix itself, no tenant to check,
    /// no invoice check.
    pub fn new(billing: BillingClient) -> Self {
        Self {
            billing,
            folder: None,
            tenant_id: None,
            invoices: None,
        }
    }
}

pub struct Pipeline {
    partners: std::collections::HashMap<PartnerId, PartnerRuntime>,
    queue: Arc<dyn MessageQueue>,
    events: Arc<dyn EventPublisher>,
    dest: Arc<dyn Destination>,
    ledger: Ledger,
    cfg: PipelineConfig,
    manifests: ManifestCache,
    copying: std::sync::Mutex<std::collections::HashMap<RunId, Arc<RunRecord>>>,
    /// The FinOps hubs ingestion container (none: no hubs landing).
    hubs: Option<Arc<dyn Destination>>,
    clock: Arc<dyn super::clock::Clock>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline serving no partner yet: register each with [`Pipeline::with_partner`].
    pub fn new(
        queue: Arc<dyn MessageQueue>,
        events: Arc<dyn EventPublisher>,
        dest: Arc<dyn Destination>,
        ledger: Ledger,
        cfg: PipelineConfig,
    ) -> Self {
        Self {
            partners: Default::default(),
            queue,
            events,
            dest,
            ledger,
            cfg,
            manifests: ManifestCache::default(),
            copying: Default::default(),
            hubs: None,
            clock: Arc::new(super::clock::SystemClock),
        }
    }

    /// Reads time from `clock` instead of the wall clock (tests, the simulation).
    pub fn set_clock(&mut self, clock: Arc<dyn super::clock::Clock>) {
        self.clock = clock;
    }

    /// The pipeline's time.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Registers (or replaces) a partner tenant.
    pub fn with_partner(mut self, id: PartnerId, partner: PartnerRuntime) -> Self {
        self.partners.insert(id, partner);
        self
    }

    fn partner(&self, partner: &PartnerId) -> Result<&PartnerRuntime, PipelineError> {
        self.partners
            .get(partner)
            .ok_or_else(|| PipelineError::UnknownPartner(partner.clone()))
    }

    /// The Graph client of `partner`'s tenant. A run of a partner no longer configured fails
    /// here instead of reaching Graph with another tenant's credential.
    pub fn billing_for(&self, partner: &PartnerId) -> Result<&BillingClient, PipelineError> {
        Ok(&self.partner(partner)?.billing)
    }

    /// The tenant `partner`'s data must come from, when known.
    pub(super) fn expected_tenant(&self, partner: &PartnerId) -> Option<&str> {
        self.partners
            .get(partner)
            .and_then(|p| p.tenant_id.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// A run's event with its partner's tenant id in `data.partnerTenantId`, when known.
    pub(super) fn with_partner_tenant(&self, run: &RunRecord, mut ev: CloudEvent) -> CloudEvent {
        if let Some(tenant) = self.expected_tenant(&run.request.partner) {
            if let Ok(mut payload) = ev.payload() {
                payload.set_partner_tenant(tenant);
                ev = CloudEvent::of(&ev.source, ev.id, ev.subject, &payload);
            }
        }
        ev
    }

    /// Folder prefix of `partner`'s output: `{DESTINATION_PREFIX}/{partner folder}`, or the
    /// prefix itself for a partner without a folder.
    pub fn output_prefix_for(&self, partner: &PartnerId) -> Result<ObjectPath, PipelineError> {
        Ok(match &self.partner(partner)?.folder {
            Some(folder) => self.cfg.output_prefix.join(folder.as_str())?,
            None => self.cfg.output_prefix.clone(),
        })
    }

    pub fn with_hubs(mut self, hubs: Arc<dyn Destination>) -> Self {
        self.hubs = Some(hubs);
        self
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Publishes an event that is not about one run (planning news such as a failed invoice
    /// discovery).
    pub async fn announce(&self, event: CloudEvent) -> Result<(), EventError> {
        self.events.publish(&[event]).await
    }

    /// The CloudEvents `source` of this deployment's events.
    pub fn event_source(&self) -> &str {
        &self.cfg.event_source
    }

    pub fn destination(&self) -> &dyn Destination {
        self.dest.as_ref()
    }

    // ---------------------------------------------------------------- manifests and SAS

    pub(super) fn cache_manifest(&self, id: &RunId, manifest: impl Into<Arc<Manifest>>) {
        self.manifests.insert(id, manifest.into(), self.now());
    }

    pub(super) fn forget_manifest(&self, id: &RunId) {
        self.manifests.forget(id);
        self.copying.lock().expect("run cache lock").remove(id);
    }

    /// A copying run's record, read once per instance: its parts do not change while it
    /// copies, and reading a record of thousands of parts for every copy would make the
    /// fan-in quadratic. A run that ends is dropped from the cache (`forget_manifest`).
    pub(super) async fn copying_run(
        &self,
        id: &RunId,
    ) -> Result<Option<Arc<RunRecord>>, PipelineError> {
        if let Some(r) = self.copying.lock().expect("run cache lock").get(id) {
            return Ok(Some(r.clone()));
        }
        let Some(run) = self.ledger.get(id).await? else {
            return Ok(None);
        };
        let run = Arc::new(run);
        if run.state == super::run::RunState::Copying {
            let mut cache = self.copying.lock().expect("run cache lock");
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(id.clone(), run.clone());
        }
        Ok(Some(run))
    }

    /// The run's manifest with a SAS that should still work; fetched again from Graph when the
    /// cached one is about to expire or is `refused` (the source turned its SAS down). One
    /// refresh per run at a time: concurrent copies wait for it and share its result.
    pub(super) async fn manifest_for(
        &self,
        run: &RunRecord,
        refused: Option<&Arc<Manifest>>,
    ) -> Result<Arc<Manifest>, PipelineError> {
        // Taken first: a refresh finishing between the two looks is then seen as new.
        let seen = self.manifests.current(&run.run_id);
        if let Some(m) = self.manifests.fresh(&run.run_id, self.now(), refused) {
            return Ok(m);
        }
        let lock = self.manifests.refresh_lock(&run.run_id);
        let _refreshing = lock.lock().await;
        // Fetched by another copy while this one waited: use it, even if its SAS is short-lived.
        let other = |m: &Arc<Manifest>| !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, m));
        let not_refused = |m: &Arc<Manifest>| !refused.is_some_and(|r| Arc::ptr_eq(r, m));
        if let Some(m) = self
            .manifests
            .current(&run.run_id)
            .filter(|m| other(m) && not_refused(m))
        {
            return Ok(m);
        }
        let url = operation_url(run)?;
        let billing = self.billing_for(&run.request.partner)?;
        let manifest = match billing.get_operation(&url).await? {
            PollOutcome::Operation(op) => match op.state {
                OperationState::Succeeded { manifest } => {
                    billing.resolve_manifest(manifest).await?
                }
                other => {
                    return Err(PipelineError::Source(format!(
                    "the operation no longer reports success ({other:?}); cannot refresh the SAS"
                )))
                }
            },
            PollOutcome::Gone => {
                return Err(PipelineError::Source(
                    "the operation expired (410 Gone) before every partition was copied".into(),
                ))
            }
        };
        let manifest = Arc::new(manifest);
        self.cache_manifest(&run.run_id, manifest.clone());
        Ok(manifest)
    }
}

fn operation_url(run: &RunRecord) -> Result<Url, PipelineError> {
    let raw = run
        .operation_url
        .as_deref()
        .ok_or_else(|| PipelineError::Source(format!("run {} has no operation URL", run.run_id)))?;
    Url::parse(raw).map_err(|e| {
        PipelineError::Source(format!("run {} has a bad operation URL: {e}", run.run_id))
    })
}

pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s >= 3600 {
        format!("{} h", s / 3600)
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

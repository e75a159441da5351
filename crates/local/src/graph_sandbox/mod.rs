//! A protocol-faithful local emulator of Microsoft Graph's partner billing export API, Partner
//! Center's invoice list and the blob storage that serves the partitions, on one loopback port.
//!
//! Paths served (see `routes.rs`):
//! - `POST /{v1.0|beta}/reports/partners/billing/{usage|reconciliation}/{billed|unbilled}/export`
//! - `GET  /{v1.0|beta}/reports/partners/billing/operations/{id}`
//! - `GET  /{v1.0|beta}/reports/partners/billing/manifests/{id}`
//! - `GET|HEAD /blob/{container}/{directory...}/{name}?{sas}`
//! - `GET  /partnercenter/v1/invoices?size=&offset=`
//!
//! Wire formats follow `docs/graph-api.md`; where the real service is ambiguous the config
//! picks (manifest shape, success status), so clients can be tested against every variant.
//! All data is deterministic from `SandboxConfig::seed`.

mod blobs;
pub mod data;
mod invoices;
mod operations;
mod routes;
mod sas;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use time::{Date, OffsetDateTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

pub use invoices::{default_invoices, SandboxInvoice};
pub use sas::STORAGE_VERSION;

use operations::State;

/// Where a successful operation puts its manifest (the docs and real clients disagree,
/// docs/graph-api.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestShape {
    /// `resourceLocation`: the manifest object inline.
    Inline,
    /// `resourceLocation@odata.navigationLink`: an absolute URL to `/manifests/{id}`.
    Link,
    /// Each export picks one, deterministically from the seed and the request.
    #[default]
    Alternate,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// All ids and data are derived from this.
    pub seed: u64,
    /// The operation answers `runningOperation` this many GETs, then finishes.
    pub polls_before_done: u32,
    /// `Retry-After` on running answers (0 allowed, for fast tests).
    pub retry_after_secs: u32,
    pub manifest_shape: ManifestShape,
    /// `status` of `exportSuccessOperation`: `"succeeded"` (examples) or `"completed"` (resource page).
    pub success_status: String,
    /// Blobs per export (0 allowed: an empty export).
    pub partitions: u32,
    pub rows_per_partition: u32,
    /// Lifetime of every SAS minted (real: about 1 h). Rounded down to whole seconds, so
    /// anything under a second mints tokens that are already expired.
    pub sas_ttl: Duration,
    /// Invoice ids (billed) or currency codes (unbilled) whose operations end in
    /// `failedOperation` with `fail_code` (by default `"5000"` "No data available", which the
    /// pipeline completes as a run without data).
    pub fail_invoices: Vec<String>,
    /// Billed exports of these invoices answer `5000` "No data available" until the clock's
    /// day (as Graph can on the day an invoice appears, before its usage is ready).
    pub no_data_until: Vec<(String, Date)>,
    /// Export POSTs for these invoice ids are refused with 400 `BadRequest` (an invoice Graph
    /// will not export, whatever the day).
    pub refuse_invoices: Vec<String>,
    /// `error.code` of those failed operations: `"5000"` (No data available, the only code
    /// Graph documents) or any other, for a real failure.
    pub fail_code: String,
    /// If set, the first operation of each export answers 410 Gone once it has been polled
    /// this many times (0: its first GET is already 410). Later operations of the export work.
    pub gone_after_polls: Option<u32>,
    /// If true, the 202's `Location` points at `https://graph.evil.example/...`.
    pub foreign_location: bool,
    /// What Partner Center's `/v1/invoices` lists.
    pub invoices: Vec<SandboxInvoice>,
    /// The sandbox's "today" (billing months, default invoices). `None`: UTC today at start.
    pub today: Option<Date>,
    /// A date tests can move: when set, Partner Center lists an invoice only from its
    /// `invoice_date` on, so invoices are "published" on that day (e.g. the 8th).
    pub clock: Option<SandboxClock>,
    /// Serve partitions from a real storage account (Azurite) with real SAS tokens instead of
    /// the built-in blob endpoint, so copies can run server-side as they do in Azure.
    pub blob_store: Option<ExternalBlobStore>,
    /// Every export POST is refused with this Graph error (e.g. 403 for a missing
    /// `PartnerBilling.Read.All`). Graph documents no error for these calls (docs/graph-api.md
    /// §1.4), so the envelope is Graph's generic `{"error": {"code", "message"}}`.
    pub refuse_exports: Option<GraphRefusal>,
    /// Billed exports for an invoice not in `invoices` answer 404 `NotFound` (off: any
    /// well-formed invoice id exports, as most tests want).
    pub known_invoices_only: bool,
    /// API versions (`v1.0`, `beta`) that do not serve the billing reports: their paths answer
    /// Graph's "Resource not found for the segment" error.
    pub unsupported_versions: Vec<String>,
    /// Delay before each blob GET is answered (a slow network), so a client can be stopped
    /// while partitions are still being copied.
    pub blob_delay: Duration,
    /// If set, every manifest's `rootDirectory` starts here instead of at the sandbox's blob
    /// endpoint (e.g. a storage host the handler must refuse); the sandbox serves nothing there.
    pub root_directory_base: Option<String>,
    /// If set, the blob names of every export (instead of `partitions` Spark-style names).
    pub blob_names: Option<Vec<String>>,
    /// Further partner tenants, told apart by their tokens' `tid` claim
    /// ([`crate::tokens::partner_graph_token`]): each has its own invoices and tenant, and its
    /// exports their own data. Tokens of [`crate::tokens::LOCAL_TENANT_ID`] keep serving
    /// `invoices` as the one partner of a single-tenant sandbox.
    pub partners: Vec<SandboxPartner>,
    /// Invoices whose detail (`GET /v1/invoices/{id}`) reports `totalCharges` one currency
    /// unit above the sum of their reconciliation data: an invoice that does not balance.
    pub mismatched_invoices: Vec<String>,
    /// Invoices whose reconciliation leaves one customer's Azure line out: billed usage that
    /// does not add up to the invoice's Azure lines (the invoice total still matches its data).
    pub unlined_usage_invoices: Vec<String>,
    /// If set, every manifest names this `partnerTenantId` instead of the caller's tenant: an
    /// export that is not the configured partner's data, which the handler must refuse.
    pub manifest_tenant: Option<uuid::Uuid>,
    /// Reconciliation exports end with one reservation purchase (a one-time charge with a
    /// `ReservationOrderId`), which billed usage never details.
    pub reservation_purchases: bool,
}

/// A partner tenant of a several-partner sandbox.
#[derive(Debug, Clone)]
pub struct SandboxPartner {
    /// Path-safe name: the suffix of its tokens.
    pub id: String,
    pub tenant_id: uuid::Uuid,
    /// What Partner Center lists for this partner.
    pub invoices: Vec<SandboxInvoice>,
    /// Graph requests of this partner answered `429 Too Many Requests` (Retry-After: 1) before
    /// its calls go through, one in two: a throttled partner beside an unthrottled one.
    pub throttle_requests: u32,
}

impl SandboxPartner {
    /// A partner named `id` with invoices of its own (ids, totals and currencies derived from
    /// `id`), issued on the 8th of the month after their billing month, as [`default_invoices`].
    pub fn new(id: &str, today: Date, currency: (&str, &str)) -> Self {
        let tenant_id = crate::tokens::partner_tenant_id(id);
        let tag =
            (u64::from_le_bytes(tenant_id.as_bytes()[..8].try_into().expect("8 bytes")) % 90) + 10;
        let mut invoices = default_invoices(today);
        invoices.retain(|i| i.document_type == "Invoice" && i.id.starts_with('G'));
        invoices.truncate(2);
        for (n, inv) in invoices.iter_mut().enumerate() {
            // G0{yymm}{tag}{n}: distinct from the single-tenant ids and from other partners'.
            inv.id = format!("{}{tag:02}{:02}", &inv.id[..6], n + 1);
            inv.currency_code = currency.0.into();
            inv.currency_symbol = currency.1.into();
        }
        Self {
            id: id.into(),
            tenant_id,
            invoices,
            throttle_requests: 0,
        }
    }

    /// Its invoices for every billing month from `first` through `last` (catch-up tests).
    pub fn with_invoices_for_months(mut self, months: &[Date]) -> Self {
        let template = self.invoices.clone();
        let tag = &template[0].id[6..8];
        self.invoices = months
            .iter()
            .flat_map(|&m| {
                let (start, end) = data::month_bounds(m.replace_day(1).expect("day 1"));
                let ym = format!("{:02}{:02}", start.year() % 100, u8::from(start.month()));
                template
                    .iter()
                    .enumerate()
                    .map(move |(n, t)| SandboxInvoice {
                        id: format!("G0{ym}{tag}{:02}", n + 1),
                        invoice_date: end + time::Duration::days(8),
                        billing_period_start: start,
                        billing_period_end: end,
                        ..t.clone()
                    })
            })
            .collect();
        self
    }
}

/// A simulated date shared between a test and the sandbox (clones share it).
#[derive(Debug, Clone)]
pub struct SandboxClock(Arc<Mutex<Date>>);

impl SandboxClock {
    pub fn new(today: Date) -> Self {
        Self(Arc::new(Mutex::new(today)))
    }
    pub fn today(&self) -> Date {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn set(&self, today: Date) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = today;
    }
}

/// A Graph error answer: HTTP status and the envelope's `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRefusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A storage account that holds the sandbox's partitions (Azurite's "Microsoft" account).
#[derive(Debug, Clone)]
pub struct ExternalBlobStore {
    /// `http://127.0.0.1:{port}/{account}`, no trailing slash.
    pub account_url: Url,
    pub account: crate::azurite::StorageAccount,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            polls_before_done: 2,
            retry_after_secs: 1,
            manifest_shape: ManifestShape::Alternate,
            success_status: "succeeded".into(),
            partitions: 3,
            rows_per_partition: 200,
            sas_ttl: Duration::from_secs(3600),
            fail_invoices: Vec::new(),
            no_data_until: Vec::new(),
            refuse_invoices: Vec::new(),
            fail_code: "5000".into(),
            gone_after_polls: None,
            foreign_location: false,
            invoices: default_invoices(OffsetDateTime::now_utc().date()),
            today: None,
            clock: None,
            blob_store: None,
            refuse_exports: None,
            known_invoices_only: false,
            unsupported_versions: Vec::new(),
            mismatched_invoices: Vec::new(),
            unlined_usage_invoices: Vec::new(),
            manifest_tenant: None,
            reservation_purchases: false,
            blob_delay: Duration::ZERO,
            root_directory_base: None,
            blob_names: None,
            partners: Vec::new(),
        }
    }
}

/// Request counters, for tests that check what a client did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxStats {
    pub exports_started: u64,
    pub operation_gets: u64,
    pub manifest_gets: u64,
    /// Every request to the blob endpoint (GET and HEAD), refused ones included.
    pub blob_gets: u64,
    pub blob_bytes_served: u64,
    pub sas_rejections: u64,
    pub unauthorized: u64,
    pub invoice_gets: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exports_started: AtomicU64,
    operation_gets: AtomicU64,
    manifest_gets: AtomicU64,
    blob_gets: AtomicU64,
    blob_bytes_served: AtomicU64,
    sas_rejections: AtomicU64,
    unauthorized: AtomicU64,
    invoice_gets: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// One partition of a succeeded export, as the sandbox serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedPartition {
    /// Absolute `rootDirectory` of the export (no SAS).
    pub root_directory: String,
    pub name: String,
    pub bytes: Bytes,
    /// Lower-case hex MD5 of `bytes`.
    pub md5: String,
    pub rows: u32,
}

/// Shared by the server task and the handle.
struct Inner {
    cfg: SandboxConfig,
    today: Date,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    origin: String,
    state: Mutex<State>,
    counters: Counters,
    /// Graph requests seen and 429s answered so far per partner (index into `cfg.partners`).
    throttled: Mutex<Vec<(u32, u32)>>,
}

impl Inner {
    /// The state lock. A panic while it was held cannot leave it half-updated in a way that
    /// matters to a test double, so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this Graph request of partner `i` is answered 429 (one in two, until its
    /// `throttle_requests` are spent).
    fn throttle(&self, i: usize) -> bool {
        let budget = self.cfg.partners[i].throttle_requests;
        let mut t = self.throttled.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, answered) = &mut t[i];
        *seen += 1;
        if *answered < budget && *seen % 2 == 1 {
            *answered += 1;
            true
        } else {
            false
        }
    }

    /// The invoices Partner Center lists for a caller (`None`: the single-tenant partner).
    fn invoices_of(&self, partner: Option<usize>) -> &[SandboxInvoice] {
        match partner {
            Some(i) => &self.cfg.partners[i].invoices,
            None => &self.cfg.invoices,
        }
    }

    fn blob_root(&self) -> String {
        if let Some(base) = &self.cfg.root_directory_base {
            return base.trim_end_matches('/').to_string();
        }
        match &self.cfg.blob_store {
            Some(store) => store.account_url.as_str().trim_end_matches('/').to_string(),
            None => format!("{}/blob", self.origin),
        }
    }

    /// A read SAS for an export's folder: the sandbox's own signature, or a real account SAS
    /// when an external store serves the blobs.
    fn mint_sas(&self, signer: &sas::SasSigner, dir: &str, now: OffsetDateTime) -> String {
        match &self.cfg.blob_store {
            Some(store) => store.account.sas("rl", now + self.cfg.sas_ttl),
            None => signer.mint(dir, now, self.cfg.sas_ttl),
        }
    }
}

/// A running sandbox. Dropping it without `shutdown` leaves the server running until the
/// runtime stops.
pub struct GraphSandbox {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl GraphSandbox {
    /// Starts on `127.0.0.1` with a free port.
    pub async fn start(cfg: SandboxConfig) -> anyhow::Result<Self> {
        Self::start_on(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(cfg: SandboxConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Graph sandbox to {addr}"))?;
        let addr = listener
            .local_addr()
            .context("reading the Graph sandbox's bound address")?;
        let today = cfg
            .today
            .unwrap_or_else(|| OffsetDateTime::now_utc().date());
        let cfg_partners = cfg.partners.len();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new(cfg.seed)),
            cfg,
            today,
            origin: format!("http://{addr}"),
            counters: Counters::default(),
            throttled: Mutex::new(vec![(0, 0); cfg_partners]),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = warp::serve(routes::filter(inner.clone()))
            .incoming(listener)
            .graceful(async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(server.run());
        tracing::debug!(%addr, "graph sandbox listening");
        Ok(Self {
            inner,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`; the versions `/v1.0` and `/beta` are below it.
    pub fn graph_base_url(&self) -> Url {
        Url::parse(&self.inner.origin).expect("origin is a valid URL")
    }

    /// `http://127.0.0.1:PORT/partnercenter`; `/v1/invoices` is below it.
    pub fn partner_center_base_url(&self) -> Url {
        Url::parse(&format!("{}/partnercenter", self.inner.origin)).expect("valid URL")
    }

    /// `http://127.0.0.1:PORT/blob`: where every `rootDirectory` starts.
    pub fn blob_base_url(&self) -> Url {
        Url::parse(&self.inner.blob_root()).expect("valid URL")
    }

    /// 429s answered to each partner of `SandboxConfig::partners`, by id.
    pub fn throttled(&self) -> Vec<(String, u32)> {
        let t = self
            .inner
            .throttled
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.inner
            .cfg
            .partners
            .iter()
            .zip(t.iter())
            .map(|(p, (_, n))| (p.id.clone(), *n))
            .collect()
    }

    /// The partner tenant id every manifest carries.
    pub fn partner_tenant_id(&self) -> uuid::Uuid {
        operations::partner_tenant_id()
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.cfg
    }

    pub fn stats(&self) -> SandboxStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SandboxStats {
            exports_started: get(&c.exports_started),
            operation_gets: get(&c.operation_gets),
            manifest_gets: get(&c.manifest_gets),
            blob_gets: get(&c.blob_gets),
            blob_bytes_served: get(&c.blob_bytes_served),
            sas_rejections: get(&c.sas_rejections),
            unauthorized: get(&c.unauthorized),
            invoice_gets: get(&c.invoice_gets),
        }
    }

    /// Every partition of every export some operation has reported as succeeded, sorted by
    /// directory and name. Partitions not yet generated are generated now.
    pub fn served_partitions(&self) -> Vec<ServedPartition> {
        let rows = self.inner.cfg.rows_per_partition;
        let root = self.inner.blob_root();
        let mut st = self.inner.state();
        let mut out = Vec::new();
        for export in st.exports.values_mut().filter(|e| e.succeeded) {
            for i in 0..export.blob_names.len() {
                let p = export.partition(i, rows);
                out.push(ServedPartition {
                    root_directory: format!("{root}{}", export.dir),
                    name: export.blob_names[i].clone(),
                    md5: hex::encode(blobs::md5_of(&p.gzip)),
                    bytes: p.gzip,
                    rows: p.rows,
                });
            }
        }
        out.sort_by(|a, b| (&a.root_directory, &a.name).cmp(&(&b.root_directory, &b.name)));
        out
    }

    /// Revokes every SAS minted so far (they answer 403 AuthenticationFailed from now on);
    /// operation and manifest GETs mint working ones again.
    pub fn expire_all_sas(&self) {
        self.inner.state().signer.rotate_key();
    }

    /// Serves until `signal` resolves, then shuts down: for a long-running `sandbox` command.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Graceful shutdown waits for open connections; a client that keeps an idle
            // keep-alive connection must not hang the test, so give up after a moment.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl std::fmt::Debug for GraphSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

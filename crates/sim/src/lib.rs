//! Deterministic simulation of the whole pipeline.
//!
//! One process, a seeded random source, the real [`Pipeline`] code in several instances (each
//! with its own caches, as several Function hosts would have), sharing fault-injecting
//! stand-ins: at-least-once queues (redelivery, duplicates, reordering, early delivery of
//! scheduled messages, lock loss), a ledger store and a partner storage whose writes fail
//! before or after applying (lost answers, crashes between side effects; the partner storage
//! answers 500, 503, 409 pending copy, 412 lease or condition), an Event Grid that
//! fails or loses answers, identity outages, Graph itself throttling (429 with a zero,
//! short, day-long or past Retry-After), failing (503) or losing its answers (through a
//! fault-injecting proxy, `graph_proxy`), instances that crash and come back with empty
//! caches, the same export started on two instances at once, and the Graph sandbox on
//! loopback, whose operations expire (410 Gone) on every third seed and which has no data
//! (code 5000) for some exports on every fifth. Every third seed lands typed Parquet and the
//! FOCUS view too (every sixth also lands it in a FinOps hubs container, where the four
//! exports of a partner share one month folder), every fourth exports for a second, listed
//! partner, and every twentieth
//! exports 33 to 300 partitions (several fan-in shards). A seed first
//! runs a storm (faults on), then calm (faults off, timer retries and the watchdog as time
//! moves on), and then checks the invariants (`check.rs`):
//! - every request has a run, and every run is terminal;
//! - every run is terminal within the documented bound (poll deadline + stall period ×
//!   (repairs + 1) + one watchdog period), in simulated time;
//! - every failed run failed while faults were on, with a code those faults can cause; a seed
//!   without faults completes every run;
//! - every run has exactly one final event id, of the kind its state says, published at most
//!   `MAX_FINAL_PUBLICATIONS` times (counted before consumers drop duplicates);
//! - every partition of every completed run is present once and byte-identical to what Graph
//!   served, and each export's `_current.json` names its newest completed run;
//! - Graph never exported without a submission recorded in a run (or a lost restart answer);
//! - no message, ledger document or event holds a SAS signature or a token.
//! - the watchdog can see every run that may need it: no run record is created without its
//!   open-run marker, and no marker is removed before its run settles (checked at each write).
//! - every FinOps hubs folder with a `manifest.json` holds exactly the files it lists, of one
//!   ingestion id, and after calm no folder holds data without one (unless a follow-up gave up).
//!
//! One simulated clock drives everything: every pipeline instance reads it (run timestamps,
//! leases, finish claims, deadlines, Retry-After), the queue releases scheduled messages by it
//! and forgets message ids after the one-hour duplicate window, and the watchdog passes at it.
//! Each invariant has a `--break-<name>` switch (`breaks.rs`) that violates it on purpose.
//!
//! The same seed makes the same choices, so a failing seed replays with `simulate --seed N`.
//! Most steps run one invocation at a time in a seeded order; some run two invocations at
//! once on two instances, whose steps interleave where they wait on loopback I/O (that
//! interleaving follows the scheduler, so such a step may replay differently). Crashes inside
//! invocations are modelled by the lost-answer faults; SAS tokens are expired at seeded steps.

pub mod breaks;
mod check;
pub mod graph_proxy;
pub mod world;

pub use breaks::Break;
pub use check::MAX_FINAL_PUBLICATIONS;

use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::adapters::storage::ObjectPath;
use partner_billing_export::auth::{http_client, AllowList, Audience, AuthorizedHttp};
use partner_billing_export::billing::PartnerId;
use partner_billing_export::billing::{
    AttributeSet, BillingClient, BillingPeriod, ExportKind, ExportRequest, GraphConfig,
};
use partner_billing_export::pipeline::clock::Clock;
use partner_billing_export::pipeline::messages::OPERATIONS_QUEUE;
use partner_billing_export::pipeline::{
    CopyJob, Ledger, PartnerRuntime, Pipeline, PipelineConfig, PollJob, PollPolicy, RunRecord,
    RunState, Trigger,
};
use partner_billing_local::graph_sandbox::{GraphSandbox, SandboxConfig};
use time::OffsetDateTime;

use graph_proxy::{GraphFaults, GraphProxy};
use world::{
    Chaos, Faults, SimClock, SimDestination, SimEvents, SimMessage, SimQueue, SimStore, SimTokens,
};

/// Deliveries after which Service Bus dead-letters a message (the queues' maxDeliveryCount).
const MAX_DELIVERY_COUNT: u32 = 10;
/// The Watchdog timer's period (`WATCHDOG_SCHEDULE`, every five minutes).
const WATCHDOG_PERIOD_SECS: u64 = 5 * 60;
/// How much simulated time calm may take before the checks run: far beyond the bound, so a run
/// still open then is stuck, not slow.
const CALM_HORIZON: Duration = Duration::from_secs(5 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub instances: usize,
    pub faults: Faults,
    /// Faults of Graph itself (429, 503, lost answers), injected by a proxy.
    pub graph_faults: GraphFaults,
    /// Steps of the storm before calm returns.
    pub storm_steps: usize,
    /// Some steps run two invocations at once (their interleaving is not part of the seed).
    pub concurrent: bool,
    /// Partitions per export (default: from the seed, see `partitions`).
    pub partitions: Option<u32>,
    /// Invariants to break on purpose (the checks must report them).
    pub breaks: Vec<Break>,
}

impl SimOptions {
    pub fn seed(seed: u64) -> Self {
        Self {
            seed,
            instances: 3,
            faults: Faults::STORMY,
            graph_faults: GraphFaults {
                throttled: 40,
                unavailable: 40,
                lost_answer: 25,
            },
            storm_steps: 150,
            concurrent: true,
            partitions: None,
            breaks: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub runs: usize,
    pub completed: usize,
    pub failed: usize,
    /// Messages that exhausted their deliveries.
    pub dead_letters: usize,
    pub steps: usize,
    pub violations: Vec<String>,
    /// The most writes any one run record received.
    pub max_run_record_writes: u64,
}

struct Sim {
    chaos: Arc<Chaos>,
    queue: Arc<SimQueue>,
    events: Arc<SimEvents>,
    store: Arc<SimStore>,
    dest: Arc<SimDestination>,
    /// The FinOps hubs ingestion container, in the seeds that land there.
    hubs: Option<Arc<SimDestination>>,
    instances: Vec<Pipeline>,
    requests: Vec<ExportRequest>,
    clock: SimClock,
    dead_letters: usize,
    /// What a new instance is built from (a crashed one is replaced by a fresh one).
    config: PipelineConfig,
    graph_base: url::Url,
}

impl Sim {
    fn pick(&self) -> &Pipeline {
        &self.instances[self.chaos.below(self.instances.len())]
    }

    /// One invocation: a message to a seeded instance; failures are redelivered, successes are
    /// sometimes delivered again (lock lost before completion).
    async fn deliver(&mut self) -> bool {
        let Some(m) = self.queue.take() else {
            return false;
        };
        self.tick();
        let p = self.pick();
        let redeliver = Self::invoke(p, &self.chaos, m).await;
        self.settle(redeliver);
        true
    }

    /// Two invocations at once on two instances (as two hosts would run them): their steps
    /// interleave wherever they wait on Graph or the sandbox's storage.
    async fn deliver_two(&mut self) -> bool {
        let (Some(a), Some(b)) = (self.queue.take(), self.queue.take()) else {
            return self.deliver().await;
        };
        let n = self.instances.len();
        let i = self.chaos.below(n);
        let (p, q) = (&self.instances[i], &self.instances[(i + 1) % n]);
        let (ra, rb) = tokio::join!(
            Self::invoke(p, &self.chaos, a),
            Self::invoke(q, &self.chaos, b)
        );
        self.settle(ra);
        self.settle(rb);
        true
    }

    fn settle(&mut self, redeliver: Option<SimMessage>) {
        if let Some(m) = redeliver {
            if m.delivery_count >= MAX_DELIVERY_COUNT {
                self.dead_letters += 1;
            } else {
                // An abandoned message is available again at once.
                let visible_at = self.clock.now();
                self.queue.enqueue(SimMessage {
                    seq: 0,
                    visible_at,
                    ..m
                });
            }
        }
    }

    /// Runs one delivery; returns the message when it must be delivered again.
    async fn invoke(p: &Pipeline, chaos: &Chaos, mut m: SimMessage) -> Option<SimMessage> {
        m.delivery_count += 1;
        let body: serde_json::Value = match serde_json::from_slice(&m.body) {
            Ok(b) => b,
            Err(_) => return None,
        };
        let ok = if m.queue == OPERATIONS_QUEUE {
            match PollJob::try_from(&body) {
                Ok(job) => p.handle_poll(&job).await.is_ok(),
                Err(_) => true,
            }
        } else {
            match CopyJob::try_from(&body) {
                Ok(job) => p.handle_copy(&job, m.delivery_count).await.is_ok(),
                Err(_) => true,
            }
        };
        let lock_lost = ok && chaos.chance(30);
        (!ok || lock_lost).then_some(m)
    }

    /// Each invocation starts a second later: run ids (second resolution, then random) and
    /// everything ordered by them follow the seed, not the random suffix.
    fn tick(&self) {
        self.clock.advance(Duration::from_secs(1));
    }

    async fn start(&self, i: usize) {
        self.tick();
        let req = self.requests[i].clone();
        let _ = self.pick().start(req, Trigger::Timer).await;
    }

    /// The same export started on two instances at once (the timer and an HTTP request, or a
    /// backfill): one run must serve both.
    async fn start_twice(&self, i: usize) {
        let req = self.requests[i].clone();
        let n = self.instances.len();
        let k = self.chaos.below(n);
        let (a, b) = (&self.instances[k], &self.instances[(k + 1) % n]);
        let _ = tokio::join!(
            a.start(req.clone(), Trigger::Timer),
            b.start(req, Trigger::Http)
        );
    }

    /// An instance crashes: a fresh one (empty caches) takes its place.
    fn crash(&mut self) -> anyhow::Result<()> {
        let i = self.chaos.below(self.instances.len());
        let mut p = pipeline(
            &self.config,
            &self.graph_base,
            &self.chaos,
            &self.queue,
            &self.events,
            &self.store,
            &self.dest,
        )?;
        p.set_clock(Arc::new(self.clock.clone()));
        self.instances[i] = with_hubs(p, &self.hubs);
        Ok(())
    }

    async fn runs(&self) -> Vec<RunRecord> {
        let ledger = Ledger::new(self.store.clone());
        ledger.list(usize::MAX).await.unwrap_or_default()
    }
}

/// The instance landing FOCUS files in the hubs container too, when the seed has one.
fn with_hubs(p: Pipeline, hubs: &Option<Arc<SimDestination>>) -> Pipeline {
    match hubs {
        Some(h) => p.with_hubs(h.clone()),
        None => p,
    }
}

/// A second partner tenant, listed (its own folder and keys), in every fourth seed.
const SECOND_PARTNER: &str = "contoso";

fn requests(seed: u64) -> Vec<ExportRequest> {
    let mut out = Vec::new();
    let second: PartnerId = SECOND_PARTNER.parse().expect("a partner id");
    for kind in [
        ExportKind::UnbilledUsage,
        ExportKind::UnbilledReconciliation,
    ] {
        for ccy in ["USD", "EUR"] {
            out.push(
                ExportRequest::unbilled(
                    kind,
                    BillingPeriod::Current,
                    ccy.parse().expect("currency"),
                    AttributeSet::Full,
                )
                .expect("request"),
            );
        }
    }
    if seed % 4 == 1 {
        let more: Vec<ExportRequest> = out
            .iter()
            .map(|r| r.clone().for_partner(second.clone()))
            .collect();
        out.extend(more);
    }
    out
}

/// The instances' configuration, as deployed but with the simulation's short periods.
fn config(seed: u64, breaks: &[Break]) -> anyhow::Result<PipelineConfig> {
    // Graph's days-long waits are let through, and the deadline stretched to allow them.
    let slow = breaks.contains(&Break::TimeBound);
    Ok(PipelineConfig {
        poll: PollPolicy {
            default_retry_after: Duration::ZERO,
            min_retry_after: Duration::ZERO,
            max_retry_after: Duration::from_secs(if slow { 2 * 86_400 } else { 60 }),
            max_restarts: 2,
        },
        poll_deadline: Duration::from_secs(if slow { 10 } else { 1 } * 86_400),
        event_source: "/sim".into(),
        output_prefix: ObjectPath::new("sim")?,
        max_copy_attempts: 5,
        stall_after: Duration::from_secs(15 * 60),
        max_repairs: 3,
        // Every third seed lands typed Parquet and the FOCUS view with each partition.
        formats: partner_billing_export::pipeline::derived::OutputFormats {
            parquet: seed % 3 == 2 || breaks.contains(&Break::Hubs),
        },
        invoice_tolerance: Default::default(),
        retention: partner_billing_export::pipeline::current::Retention::KeepAll,
        watchdog_budget: partner_billing_export::pipeline::WATCHDOG_BUDGET,
    })
}

/// The documented bound on a run's life (docs/architecture.md): poll deadline + stall period
/// × (repairs + 1) + one watchdog period, for the configuration as deployed.
fn bound() -> anyhow::Result<Duration> {
    let c = config(0, &[])?;
    Ok(c.poll_deadline
        + c.stall_after * (c.max_repairs + 1)
        + Duration::from_secs(WATCHDOG_PERIOD_SECS))
}

fn pipeline(
    config: &PipelineConfig,
    graph_base: &url::Url,
    chaos: &Arc<Chaos>,
    queue: &Arc<SimQueue>,
    events: &Arc<SimEvents>,
    store: &Arc<SimStore>,
    dest: &Arc<SimDestination>,
) -> anyhow::Result<Pipeline> {
    let graph = GraphConfig {
        base_url: graph_base.clone(),
        max_attempts: 1,
        backoff_base: Duration::from_millis(1),
        max_retry_after: config
            .poll
            .max_retry_after
            .max(GraphConfig::default().max_retry_after),
        ..GraphConfig::default()
    };
    let mut allow = AllowList::default();
    allow.allow_url(Audience::Graph, &graph.base_url);
    let http = AuthorizedHttp::new(
        http_client(),
        Arc::new(SimTokens::new(chaos.clone())),
        allow,
    );
    Ok(Pipeline::new(
        queue.clone(),
        events.clone(),
        dest.clone(),
        Ledger::new(store.clone()),
        config.clone(),
    )
    .with_partner(
        PartnerId::default_partner(),
        PartnerRuntime::new(BillingClient::new(http.clone(), graph.clone())),
    )
    .with_partner(
        SECOND_PARTNER.parse()?,
        PartnerRuntime {
            folder: Some(ObjectPath::new(SECOND_PARTNER)?),
            ..PartnerRuntime::new(BillingClient::new(http, graph).with_concurrency_limit(2))
        },
    ))
}

/// Partitions per export: 1 to 4 mostly; every twentieth seed a large export of 33 to 300
/// (more than one fan-in shard of 32).
fn partitions(seed: u64) -> u32 {
    if seed.is_multiple_of(20) {
        33 + (seed * 7 % 268) as u32
    } else {
        1 + (seed % 4) as u32
    }
}

/// Runs one seed and checks the invariants.
pub async fn simulate(opts: &SimOptions) -> anyhow::Result<SimOutcome> {
    let chaos = Chaos::new(opts.seed, opts.faults);
    let broken = |b| opts.breaks.contains(&b);
    let slow = broken(Break::TimeBound);
    let sandbox = GraphSandbox::start(SandboxConfig {
        seed: opts.seed,
        partitions: opts.partitions.unwrap_or(partitions(opts.seed)),
        rows_per_partition: 5,
        polls_before_done: if slow { 3 } else { 1 },
        retry_after_secs: if slow { 86_400 } else { 0 },
        // Every third seed: each export's first operation expires (410 Gone) and is restarted.
        gone_after_polls: opts.seed.is_multiple_of(3).then_some(0),
        // Every fifth seed: Graph has no data for the EUR exports (code 5000).
        fail_invoices: if opts.seed.is_multiple_of(5) || broken(Break::Unexplained) {
            vec!["EUR".into()]
        } else {
            Vec::new()
        },
        fail_code: if broken(Break::Unexplained) {
            "5001"
        } else {
            "5000"
        }
        .into(),
        ..SandboxConfig::default()
    })
    .await?;
    let graph_faults = Arc::new(std::sync::Mutex::new(opts.graph_faults));
    let proxy = GraphProxy::start(
        sandbox.graph_base_url(),
        chaos.clone(),
        graph_faults.clone(),
    )
    .await?;
    let clock = SimClock::new(OffsetDateTime::now_utc());
    let queue = Arc::new(SimQueue::new(chaos.clone(), clock.clone()));
    let events = Arc::new(SimEvents::new(
        chaos.clone(),
        broken(Break::FinalEvent),
        if broken(Break::DuplicateEvents) {
            10
        } else {
            1
        },
    ));
    let store = Arc::new(SimStore::new(chaos.clone(), broken(Break::OpenIndex)));
    let dest = Arc::new(SimDestination::new(chaos.clone()));
    let config = config(opts.seed, &opts.breaks)?;
    // Every other Parquet seed lands in FinOps hubs too: the four exports of a partner share
    // one month folder, so their landings contend for it.
    let hubs = (config.formats.parquet && opts.seed % 6 == 5 || broken(Break::Hubs))
        .then(|| Arc::new(SimDestination::new(chaos.clone())));
    let instances = (0..opts.instances.max(1))
        .map(|_| {
            let mut p = pipeline(&config, &proxy.base, &chaos, &queue, &events, &store, &dest)?;
            p.set_clock(Arc::new(clock.clone()));
            Ok(with_hubs(p, &hubs))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut sim = Sim {
        chaos: chaos.clone(),
        queue,
        events,
        store,
        dest,
        hubs,
        instances,
        requests: requests(opts.seed),
        clock,
        dead_letters: 0,
        config,
        graph_base: proxy.base.clone(),
    };

    let mut steps = 0;
    if broken(Break::Terminal) {
        // Started without faults, then nothing is ever delivered or repaired.
        chaos.calm();
        for i in 0..sim.requests.len() {
            sim.start(i).await;
        }
    } else {
        // The storm: timer firings, deliveries, watchdog passes, in a seeded order.
        steps += storm(&mut sim, &sandbox, opts).await;
    }
    let calm_since = sim.clock.now();
    if !broken(Break::Terminal) {
        chaos.calm();
        *graph_faults.lock().unwrap() = GraphFaults {
            throttled: 0,
            unavailable: 0,
            lost_answer: 0,
        };
        steps += calm(&mut sim).await;
    }
    break_after(&sim, opts).await?;

    let seed = check::Seed {
        sandbox: &sandbox,
        lost_posts: proxy
            .lost_post_answers
            .load(std::sync::atomic::Ordering::SeqCst) as usize,
        calm_since,
        bound: bound()?,
        faulty: opts.storm_steps > 0 && opts.faults.queue_fail_before > 0,
        gone: opts.seed.is_multiple_of(3),
        parquet: sim.config.formats.parquet,
        stall_grace: sim.config.stall_after + Duration::from_secs(WATCHDOG_PERIOD_SECS),
    };
    let violations = check::check(&sim, &seed).await;
    Ok(outcome(&sim, opts.seed, steps, violations).await)
}

async fn outcome(sim: &Sim, seed: u64, steps: usize, violations: Vec<String>) -> SimOutcome {
    let all = sim.runs().await;
    let max_run_record_writes = sim
        .store
        .docs
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("runs/"))
        .map(|(_, (_, version))| *version)
        .max()
        .unwrap_or(0);
    SimOutcome {
        seed,
        runs: all.len(),
        completed: all
            .iter()
            .filter(|r| r.state == RunState::Completed)
            .count(),
        failed: all.iter().filter(|r| r.state == RunState::Failed).count(),
        dead_letters: sim.dead_letters,
        max_run_record_writes,
        steps,
        violations,
    }
}

/// Calm: faults have stopped; the timer fires again (requests that never got a run get one),
/// and time moves on, to each scheduled message or by watchdog periods, until everything is
/// terminal and announced (or the horizon passes). Returns the deliveries made.
async fn calm(sim: &mut Sim) -> usize {
    let mut steps = 0;
    for i in 0..sim.requests.len() {
        sim.start(i).await;
    }
    let horizon = sim.clock.now() + CALM_HORIZON;
    while sim.clock.now() < horizon {
        while sim.deliver().await {
            steps += 1;
        }
        let runs = sim.runs().await;
        // Until every run is settled: its final event out and its invoice check and hubs
        // landing done or given up.
        let settled = runs.iter().all(RunRecord::is_settled);
        if settled && sim.queue.is_empty() {
            break;
        }
        let period = sim.clock.now() + Duration::from_secs(WATCHDOG_PERIOD_SECS);
        match sim.queue.next_due() {
            Some(due) if due < period => sim.clock.advance_to(due),
            _ => {
                sim.clock.advance_to(period);
                let _ = sim.pick().watchdog_at(sim.clock.now()).await;
            }
        }
    }
    steps
}

/// The breaks that tamper with the world once the pipeline is done.
async fn break_after(sim: &Sim, opts: &SimOptions) -> anyhow::Result<()> {
    let broken = |b| opts.breaks.contains(&b);
    let runs = sim.runs().await;
    let completed = runs.iter().find(|r| r.state == RunState::Completed);
    if broken(Break::Output) {
        if let Some(part) = completed.and_then(|r| r.parts.first()) {
            sim.dest.objects.lock().unwrap().remove(part.dest.as_str());
        }
    }
    if broken(Break::Current) {
        let mut objects = sim.dest.objects.lock().unwrap();
        if let Some(key) = objects
            .keys()
            .find(|k| k.ends_with("/_current.json"))
            .cloned()
        {
            objects.insert(
                key,
                br#"{"runId":"20000101t000000-000000000000"}"#.as_slice().into(),
            );
        }
    }
    if broken(Break::Exports) {
        // More than the check's slack (submissions whose POST never reached Graph).
        let p = &sim.instances[0];
        for _ in 0..20 {
            p.billing_for(&sim.requests[0].partner)?
                .start_export(&sim.requests[0])
                .await?;
        }
    }
    if broken(Break::Hubs) {
        if let Some(hubs) = &sim.hubs {
            let mut objects = hubs.objects.lock().unwrap();
            // A landed folder, or (when faults kept every landing out) one made for the break.
            let manifest = objects
                .keys()
                .find(|k| k.ends_with("/manifest.json"))
                .cloned()
                .unwrap_or_else(|| {
                    let m = "Costs/2000/01/csp/break/manifest.json".to_string();
                    let body = br#"{"ingestionId":"x","files":{}}"#;
                    objects.insert(m.clone(), body.as_slice().into());
                    m
                });
            let stale = manifest.replace("/manifest.json", "/0000__stale.parquet");
            objects.insert(stale, b"PAR1".as_slice().into());
        }
    }
    if broken(Break::Secret) {
        sim.queue
            .sent_bodies
            .lock()
            .unwrap()
            .push(b"https://x.blob.core.windows.net/c/b?sv=2024&sig=abc".to_vec());
    }
    Ok(())
}

/// The storm: `opts.storm_steps` seeded steps of deliveries, SAS expiries, watchdog passes and
/// timer firings, after every request is started once. Returns the steps taken.
async fn storm(sim: &mut Sim, sandbox: &GraphSandbox, opts: &SimOptions) -> usize {
    for i in 0..sim.requests.len() {
        sim.start(i).await;
    }
    let mut steps = 0;
    for _ in 0..opts.storm_steps {
        steps += 1;
        sim.clock.advance(Duration::from_secs(60));
        match sim.chaos.below(100) {
            0..=69 => {
                sim.deliver().await;
            }
            70..=77 if opts.concurrent => {
                sim.deliver_two().await;
            }
            70..=77 => {
                sim.deliver().await;
            }
            78..=79 => sandbox.expire_all_sas(),
            80..=88 => {
                let _ = sim.pick().watchdog_at(sim.clock.now()).await;
            }
            89 => {
                let _ = sim.crash();
            }
            90..=93 if opts.concurrent => {
                let i = sim.chaos.below(sim.requests.len());
                sim.start_twice(i).await;
            }
            _ => {
                let i = sim.chaos.below(sim.requests.len());
                sim.start(i).await;
            }
        }
    }
    steps
}

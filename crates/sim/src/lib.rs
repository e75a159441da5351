//! Deterministic simulation of the whole pipeline.
//!
//! One process, a seeded random source, the real [`Pipeline`] code in several instances (each
//! with its own caches, as several Function hosts would have), sharing fault-injecting
//! stand-ins: at-least-once queues (redelivery, duplicates, reordering, early delivery of
//! scheduled messages, lock loss), a ledger store and a partner storage whose writes fail
//! before or after applying (lost answers, crashes between side effects), an Event Grid that
//! fails or loses answers, identity outages, Graph itself throttling (429 with Retry-After),
//! failing (503) or losing its answers (through a fault-injecting proxy, `graph_proxy`),
//! and the Graph sandbox on loopback, whose operations expire (410 Gone) on every third seed
//! and which has no data (code 5000) for some exports on every fifth. A seed first
//! runs a storm (faults on), then calm (faults off, timer retries and the watchdog as time
//! moves on), and then checks the invariants:
//! - every request has a run, and every run is terminal;
//! - every partition of every completed run is present once and byte-identical to what Graph
//!   served;
//! - every run has exactly one final event id, of the kind its state says;
//! - no request was exported by Graph more often than it has runs;
//! - no message, ledger document or event holds a SAS signature or a token.
//!
//! The same seed makes the same choices, so a failing seed replays with `simulate --seed N`.
//! Most steps run one invocation at a time in a seeded order; some run two invocations at
//! once on two instances, whose steps interleave where they wait on loopback I/O (that
//! interleaving follows the scheduler, so such a step may replay differently). Crashes inside
//! invocations are modelled by the lost-answer faults; SAS tokens are expired at seeded steps.

pub mod graph_proxy;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use partner_billing_export::adapters::storage::ObjectPath;
use partner_billing_export::auth::{http_client, AllowList, Audience, AuthorizedHttp};
use partner_billing_export::billing::{
    AttributeSet, BillingClient, BillingPeriod, ExportKind, ExportRequest, GraphConfig,
};
use partner_billing_export::pipeline::clock::Clock;
use partner_billing_export::pipeline::messages::OPERATIONS_QUEUE;
use partner_billing_export::pipeline::ports::events::CloudEvent;
use partner_billing_export::pipeline::{
    CopyJob, Ledger, Pipeline, PipelineConfig, PollJob, PollPolicy, RunRecord, RunState, Trigger,
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
    /// Partitions per export (default: 1 to 4, from the seed).
    pub partitions: Option<u32>,
    /// Break an invariant on purpose: Event Grid swallows completion events (the check must
    /// catch it).
    pub drop_completed_events: bool,
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
            drop_completed_events: false,
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
    instances: Vec<Pipeline>,
    requests: Vec<ExportRequest>,
    clock: SimClock,
    dead_letters: usize,
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

    async fn start(&self, i: usize) {
        let req = self.requests[i].clone();
        let _ = self.pick().start(req, Trigger::Timer).await;
    }

    async fn runs(&self) -> Vec<RunRecord> {
        let ledger = Ledger::new(self.store.clone());
        ledger.list(usize::MAX).await.unwrap_or_default()
    }
}

fn requests() -> Vec<ExportRequest> {
    let mut out = Vec::new();
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
    out
}

fn pipeline(
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
        BillingClient::new(http, graph),
        queue.clone(),
        events.clone(),
        dest.clone(),
        Ledger::new(store.clone()),
        PipelineConfig {
            poll: PollPolicy {
                default_retry_after: Duration::ZERO,
                min_retry_after: Duration::ZERO,
                max_retry_after: Duration::from_secs(60),
                max_restarts: 2,
            },
            poll_deadline: Duration::from_secs(24 * 3600),
            event_source: "/sim".into(),
            output_prefix: ObjectPath::new("sim")?,
            max_copy_attempts: 5,
            stall_after: Duration::from_secs(15 * 60),
            max_repairs: 3,
            formats: Default::default(),
            invoice_tolerance: Default::default(),
            retention: partner_billing_export::pipeline::current::Retention::KeepAll,
        },
    ))
}

/// Runs one seed and checks the invariants.
pub async fn simulate(opts: &SimOptions) -> anyhow::Result<SimOutcome> {
    let chaos = Chaos::new(opts.seed, opts.faults);
    let sandbox = GraphSandbox::start(SandboxConfig {
        seed: opts.seed,
        partitions: opts.partitions.unwrap_or(1 + (opts.seed % 4) as u32),
        rows_per_partition: 5,
        polls_before_done: 1,
        retry_after_secs: 0,
        // Every third seed: each export's first operation expires (410 Gone) and is restarted.
        gone_after_polls: opts.seed.is_multiple_of(3).then_some(0),
        // Every fifth seed: Graph has no data for the EUR exports (code 5000).
        fail_invoices: if opts.seed.is_multiple_of(5) {
            vec!["EUR".into()]
        } else {
            Vec::new()
        },
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
    let events = Arc::new(SimEvents::new(chaos.clone(), opts.drop_completed_events));
    let store = Arc::new(SimStore::new(chaos.clone()));
    let dest = Arc::new(SimDestination::new(chaos.clone()));
    let instances = (0..opts.instances.max(1))
        .map(|_| {
            let mut p = pipeline(&proxy.base, &chaos, &queue, &events, &store, &dest)?;
            p.set_clock(Arc::new(clock.clone()));
            Ok(p)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut sim = Sim {
        chaos: chaos.clone(),
        queue,
        events,
        store,
        dest,
        instances,
        requests: requests(),
        clock,
        dead_letters: 0,
    };

    // The storm: timer firings, deliveries, watchdog passes, in a seeded order.
    let mut steps = storm(&mut sim, &sandbox, opts).await;

    // Calm: faults stop; the timer fires again (runs that never got created get one), and
    // time moves on in watchdog periods until everything is terminal and announced.
    let calm_since = sim.clock.now();
    chaos.calm();
    *graph_faults.lock().unwrap() = GraphFaults {
        throttled: 0,
        unavailable: 0,
        lost_answer: 0,
    };
    for i in 0..sim.requests.len() {
        sim.start(i).await;
    }
    for _ in 0..200 {
        while sim.deliver().await {
            steps += 1;
        }
        let runs = sim.runs().await;
        let settled = runs
            .iter()
            .all(|r| r.state.is_terminal() && r.final_event_sent);
        if settled && sim.queue.is_empty() {
            break;
        }
        // Up to the next scheduled message, or one watchdog period on.
        let period = sim.clock.now() + Duration::from_secs(WATCHDOG_PERIOD_SECS);
        match sim.queue.next_due() {
            Some(due) if due < period => sim.clock.advance_to(due),
            _ => {
                sim.clock.advance_to(period);
                let _ = sim.pick().watchdog_at(sim.clock.now()).await;
            }
        }
    }

    let lost_posts = proxy
        .lost_post_answers
        .load(std::sync::atomic::Ordering::SeqCst) as usize;
    let violations = check(&sim, &sandbox, lost_posts).await;
    if std::env::var_os("SIM_STATS").is_some() {
        let runs = sim.runs().await;
        let events = sim.events.accepted.lock().unwrap().clone();
        for r in &runs {
            let pubs = events
                .iter()
                .filter(|e| e.data.get("runId").and_then(|x| x.as_str()) == Some(r.run_id.as_str()))
                .filter(|e| {
                    e.event_type.ends_with("ExportCompleted.v1")
                        || e.event_type.ends_with("ExportFailed.v1")
                })
                .count();
            let took = r.finished_at.map(|f| (f - r.created_at).whole_minutes());
            let failed_after_calm = r.failure.as_ref().map(|f| f.at > calm_since);
            eprintln!("STAT seed={} pubs={pubs} took_min={took:?} code={:?} after_calm={failed_after_calm:?}", opts.seed, r.failure.as_ref().map(|f| f.code.to_string()));
        }
    }
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
    Ok(SimOutcome {
        seed: opts.seed,
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
    })
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
            80..=89 => {
                let _ = sim.pick().watchdog_at(sim.clock.now()).await;
            }
            _ => {
                let i = sim.chaos.below(sim.requests.len());
                sim.start(i).await;
            }
        }
    }
    steps
}

async fn check(sim: &Sim, sandbox: &GraphSandbox, lost_posts: usize) -> Vec<String> {
    let mut v = Vec::new();
    let runs = sim.runs().await;
    let events = sim.events.accepted.lock().unwrap().clone();
    // Every request has a run; every run is terminal.
    for req in &sim.requests {
        if !runs.iter().any(|r| r.request.key() == req.key()) {
            v.push(format!("request {req} never got a run"));
        }
    }
    for r in &runs {
        if !r.state.is_terminal() {
            v.push(format!("run {} stuck in {:?}", r.run_id, r.state));
        }
    }
    check_final_events(&runs, &events, &mut v);
    check_output(sim, sandbox, &runs, lost_posts, &mut v);
    check_no_secret(sim, &events, &mut v);
    v
}

/// Exactly one final event id per run, of the kind its state says.
fn check_final_events(runs: &[RunRecord], events: &[CloudEvent], v: &mut Vec<String>) {
    for r in runs {
        let mut finals: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e.data.get("runId").and_then(|x| x.as_str()) == Some(r.run_id.as_str()))
            .filter_map(|e| {
                let kind = if e.event_type.ends_with("ExportCompleted.v1") {
                    "completed"
                } else if e.event_type.ends_with("ExportFailed.v1") {
                    "failed"
                } else {
                    return None;
                };
                Some((kind, e.id.as_str()))
            })
            .collect();
        finals.sort_unstable();
        finals.dedup();
        let want = match r.state {
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            _ => continue,
        };
        if finals.len() != 1 || finals[0].0 != want {
            v.push(format!(
                "run {} ({want}) has final events {finals:?}",
                r.run_id
            ));
        }
    }
}

/// What landed: `_current.json` per export, every partition of a completed run once and
/// byte-identical, and no export started more often than its runs explain.
fn check_output(
    sim: &Sim,
    sandbox: &GraphSandbox,
    runs: &[RunRecord],
    lost_posts: usize,
    v: &mut Vec<String>,
) {
    // Each export's `_current.json` names its newest completed run, whatever order runs
    // finished in and whatever writes failed on the way.
    let mut newest: std::collections::BTreeMap<String, &RunRecord> = Default::default();
    for r in runs.iter().filter(|r| r.state == RunState::Completed) {
        let Some(p) =
            partner_billing_export::pipeline::current::CurrentPointer::for_run(r, r.updated_at)
        else {
            continue;
        };
        let slot = newest.entry(p.export_folder.to_string()).or_insert(r);
        if (r.created_at, &r.run_id) > (slot.created_at, &slot.run_id) {
            *slot = r;
        }
    }
    {
        let objects = sim.dest.objects.lock().unwrap();
        for (export, want) in &newest {
            let named = objects
                .get(&format!("{export}/_current.json"))
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["runId"].as_str().map(str::to_string));
            if named.as_deref() != Some(want.run_id.as_str()) {
                v.push(format!(
                    "{export}/_current.json names {named:?}, not the newest completed run {}",
                    want.run_id
                ));
            }
        }
    }
    // Completed runs: every partition present once, byte-identical to what Graph served.
    let served = sandbox.served_partitions();
    let objects = sim.dest.objects.lock().unwrap().clone();
    for r in runs.iter().filter(|r| r.state == RunState::Completed) {
        let Some(folder) = &r.output_folder else {
            v.push(format!("run {} completed without a folder", r.run_id));
            continue;
        };
        // A version that is no longer current carries a `_superseded.json` marker besides.
        let in_folder = objects
            .keys()
            .filter(|k| k.starts_with(&format!("{folder}/")) && !k.ends_with("/_superseded.json"))
            .count();
        if in_folder != r.parts.len() + 1 {
            v.push(format!(
                "run {}: {in_folder} objects in its folder for {} parts and a manifest",
                r.run_id,
                r.parts.len()
            ));
        }
        for p in &r.parts {
            let Some(bytes) = objects.get(p.dest.as_str()) else {
                v.push(format!(
                    "run {} part {} missing at {}",
                    r.run_id, p.index, p.dest
                ));
                continue;
            };
            let md5 = format!("{:x}", Md5::digest(bytes));
            if !served.iter().any(|s| s.name == p.name && s.md5 == md5) {
                v.push(format!(
                    "run {} part {} differs from the source",
                    r.run_id, p.index
                ));
            }
        }
    }
    // Graph never exports without a recorded submission: each POST of a start or restart is
    // preceded by a ledger write counting it (plus the restarts whose answer Graph lost, which
    // are given back as not started: nobody can know about those).
    let exports = sandbox.stats().exports_started as usize;
    let submissions: usize = runs.iter().map(|r| r.submissions as usize).sum();
    let restarts: usize = runs.iter().map(|r| r.restarts as usize).sum();
    if exports > submissions + restarts + lost_posts {
        v.push(format!(
            "Graph started {exports} exports for {} runs ({submissions} submissions, {restarts} restarts, {lost_posts} lost answers)",
            runs.len()
        ));
    }
}

/// No secret in a message, a ledger record or an event.
fn check_no_secret(sim: &Sim, events: &[CloudEvent], v: &mut Vec<String>) {
    let mut texts: Vec<String> = sim
        .queue
        .sent_bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    texts.extend(
        sim.store
            .docs
            .lock()
            .unwrap()
            .values()
            .map(|(b, _)| String::from_utf8_lossy(b).into_owned()),
    );
    texts.extend(events.iter().map(|e| e.data.to_string()));
    for t in &texts {
        if t.contains("sig=")
            || t.contains("local-graph-token")
            || t.contains("local-storage-token")
        {
            v.push("a secret reached a message, record or event".into());
            break;
        }
    }
}

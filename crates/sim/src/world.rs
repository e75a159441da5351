//! The simulated world around the pipeline: a seeded random source, and fault-injecting
//! in-memory stand-ins for Service Bus, Event Grid, the run ledger's storage and the partner's
//! storage, plus a token source with outages. Each fault either happens *before* the side
//! effect (the call fails, nothing changed) or *after* it (the change is made, the answer is
//! lost): the second kind is how a crash between two side effects, or a lost response, looks
//! to the code under test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use partner_billing_export::adapters::events::{CloudEvent, EventError, EventPublisher};
use partner_billing_export::adapters::servicebus::{MessageQueue, OutgoingMessage, QueueError};
use partner_billing_export::adapters::storage::{
    CopyMethod, CopyOutcome, Destination, ETag, LedgerStore, ObjectPath, SourceIdentity,
    StorageError,
};
use partner_billing_export::auth::{AccessToken, Audience, AuthError, TokenSource};
use partner_billing_export::pipeline::clock::Clock;
use partner_billing_export::pipeline::RunRecord;
use time::OffsetDateTime;

/// xorshift64*: small, fast, and the same sequence for the same seed on every machine.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// How often each kind of fault strikes, per mille of calls.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub token_outage: u64,
    pub queue_fail_before: u64,
    pub queue_lost_answer: u64,
    pub store_fail_before: u64,
    pub store_lost_answer: u64,
    pub copy_fail_before: u64,
    pub copy_lost_answer: u64,
    pub event_fail_before: u64,
    pub event_lost_answer: u64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        token_outage: 0,
        queue_fail_before: 0,
        queue_lost_answer: 0,
        store_fail_before: 0,
        store_lost_answer: 0,
        copy_fail_before: 0,
        copy_lost_answer: 0,
        event_fail_before: 0,
        event_lost_answer: 0,
    };
    pub const STORMY: Faults = Faults {
        token_outage: 40,
        queue_fail_before: 40,
        queue_lost_answer: 40,
        store_fail_before: 30,
        store_lost_answer: 30,
        copy_fail_before: 80,
        copy_lost_answer: 60,
        event_fail_before: 80,
        event_lost_answer: 60,
    };
}

/// The shared random source and fault switch of one simulation.
#[derive(Debug)]
pub struct Chaos {
    pub rng: Mutex<Rng>,
    pub faults: Mutex<Faults>,
}

/// Where a fault strikes relative to the side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    No,
    Before,
    AfterLostAnswer,
}

impl Chaos {
    pub fn new(seed: u64, faults: Faults) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng::new(seed)),
            faults: Mutex::new(faults),
        })
    }
    pub fn calm(&self) {
        *self.faults.lock().unwrap() = Faults::NONE;
    }
    /// Whether faults are on (the storm).
    pub fn faulty(&self) -> bool {
        self.faults.lock().unwrap().queue_fail_before > 0
    }
    fn strike(&self, pick: impl Fn(&Faults) -> (u64, u64)) -> Strike {
        let (before, after) = pick(&self.faults.lock().unwrap());
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(before) {
            Strike::Before
        } else if rng.chance(after) {
            Strike::AfterLostAnswer
        } else {
            Strike::No
        }
    }
    pub fn below(&self, n: usize) -> usize {
        self.rng.lock().unwrap().below(n)
    }
    pub fn chance(&self, per_mille: u64) -> bool {
        self.rng.lock().unwrap().chance(per_mille)
    }
}

// ------------------------------------------------------------------ time

/// The one clock of a simulation: every pipeline instance reads it (run timestamps, leases,
/// claims, deadlines, Retry-After), the queue releases scheduled messages by it and forgets
/// message ids by it, and the watchdog passes at it. Only the simulation moves it.
#[derive(Debug, Clone)]
pub struct SimClock(Arc<Mutex<OffsetDateTime>>);

impl SimClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }
    pub fn advance(&self, d: std::time::Duration) {
        *self.0.lock().unwrap() += d;
    }
    /// Moves the clock to `t` if that is later.
    pub fn advance_to(&self, t: OffsetDateTime) {
        let mut now = self.0.lock().unwrap();
        *now = (*now).max(t);
    }
}

impl Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

// ------------------------------------------------------------------ Service Bus

/// A message in the simulated queue.
#[derive(Debug, Clone)]
pub struct SimMessage {
    pub queue: String,
    pub message_id: String,
    pub body: Vec<u8>,
    pub delivery_count: u32,
    /// Arrival order, for deterministic choices.
    pub seq: u64,
    /// Not delivered before this (a scheduled message), except by the early-delivery fault.
    pub visible_at: OffsetDateTime,
}

/// At-least-once queues: the scheduler picks any message whose time has come (reordering),
/// now and then one that is not due yet (early delivery of a scheduled message), may deliver
/// one twice, and re-queues what a handler failed. Duplicate detection drops a resend of a
/// message id accepted within the last hour of simulated time, as the queues' one-hour
/// window does (`duplicateDetectionHistoryTimeWindow`, infra/modules/servicebus.bicep).
#[derive(Debug)]
pub struct SimQueue {
    chaos: Arc<Chaos>,
    clock: SimClock,
    pub pending: Mutex<Vec<SimMessage>>,
    seen_ids: Mutex<HashMap<String, OffsetDateTime>>,
    arrivals: Mutex<u64>,
    /// Every body ever sent (the no-secret invariant reads them).
    pub sent_bodies: Mutex<Vec<Vec<u8>>>,
}

/// Service Bus's duplicate detection window on our queues.
const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// Per mille of takes that deliver a message before its scheduled time.
const EARLY_DELIVERY: u64 = 20;

impl SimQueue {
    pub fn new(chaos: Arc<Chaos>, clock: SimClock) -> Self {
        Self {
            chaos,
            clock,
            pending: Mutex::default(),
            seen_ids: Mutex::default(),
            arrivals: Mutex::new(0),
            sent_bodies: Mutex::default(),
        }
    }

    pub fn enqueue(&self, mut m: SimMessage) {
        let mut n = self.arrivals.lock().unwrap();
        *n += 1;
        m.seq = *n;
        self.pending.lock().unwrap().push(m);
    }

    /// Takes a due message chosen by the seed (or, by the early-delivery fault, any).
    pub fn take(&self) -> Option<SimMessage> {
        let now = self.clock.now();
        let early = self.chaos.faulty() && self.chaos.chance(EARLY_DELIVERY);
        let mut p = self.pending.lock().unwrap();
        p.sort_by_key(|m| m.seq);
        let due: Vec<usize> = (0..p.len())
            .filter(|&i| early || p[i].visible_at <= now)
            .collect();
        if due.is_empty() {
            return None;
        }
        let i = due[self.chaos.below(due.len())];
        Some(p.remove(i))
    }

    /// When the next scheduled message falls due, if any is waiting.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        self.pending
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.visible_at)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().unwrap().is_empty()
    }

    /// Whether `id` was accepted within the duplicate window (and records it if not).
    fn duplicate(&self, id: &str) -> bool {
        let now = self.clock.now();
        let mut seen = self.seen_ids.lock().unwrap();
        match seen.get(id) {
            Some(at) if now - *at < DUPLICATE_WINDOW => true,
            _ => {
                seen.insert(id.to_string(), now);
                false
            }
        }
    }
}

#[async_trait]
impl MessageQueue for SimQueue {
    async fn send(&self, queue: &str, msg: &OutgoingMessage) -> Result<(), QueueError> {
        let strike = self
            .chaos
            .strike(|f| (f.queue_fail_before, f.queue_lost_answer));
        let unavailable = || QueueError::Unavailable {
            queue: queue.to_string(),
            attempts: 1,
            last: "simulated outage".into(),
        };
        if strike == Strike::Before {
            return Err(unavailable());
        }
        self.sent_bodies.lock().unwrap().push(msg.body.clone());
        if !self.duplicate(&msg.message_id) {
            self.enqueue(SimMessage {
                queue: queue.to_string(),
                message_id: msg.message_id.clone(),
                body: msg.body.clone(),
                delivery_count: 0,
                seq: 0,
                visible_at: msg
                    .scheduled_enqueue_time
                    .unwrap_or_else(|| self.clock.now()),
            });
        }
        match strike {
            Strike::AfterLostAnswer => Err(unavailable()),
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------------ Event Grid

/// Every event that reached the topic, in order.
#[derive(Debug)]
pub struct SimEvents {
    chaos: Arc<Chaos>,
    pub accepted: Mutex<Vec<CloudEvent>>,
    /// For the broken-invariant check: swallow completion events while answering success.
    pub drop_completed: bool,
    /// For the broken-invariant check: keep each final event this many times.
    pub final_copies: usize,
}

impl SimEvents {
    pub fn new(chaos: Arc<Chaos>, drop_completed: bool, final_copies: usize) -> Self {
        Self {
            chaos,
            accepted: Mutex::default(),
            drop_completed,
            final_copies,
        }
    }
}

#[async_trait]
impl EventPublisher for SimEvents {
    async fn publish(&self, events: &[CloudEvent]) -> Result<(), EventError> {
        let strike = self
            .chaos
            .strike(|f| (f.event_fail_before, f.event_lost_answer));
        let unavailable = || EventError::Unavailable {
            attempts: 1,
            last: "simulated outage".into(),
        };
        if strike == Strike::Before {
            return Err(unavailable());
        }
        let mut acc = self.accepted.lock().unwrap();
        for e in events {
            if self.drop_completed && e.event_type.ends_with("ExportCompleted.v1") {
                continue;
            }
            let is_final = e.event_type.ends_with("ExportCompleted.v1")
                || e.event_type.ends_with("ExportFailed.v1");
            let copies = if is_final {
                self.final_copies.max(1)
            } else {
                1
            };
            acc.extend(std::iter::repeat_n(e.clone(), copies));
        }
        match strike {
            Strike::AfterLostAnswer => Err(unavailable()),
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------------ ledger storage

/// Documents with versions, as blob storage's ETags; writes may fail before or after applying.
#[derive(Debug)]
pub struct SimStore {
    chaos: Arc<Chaos>,
    pub docs: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
    /// Open-run index violations seen as they happen: a run record created without its
    /// marker, or a marker removed while its run still needed the watchdog.
    pub index_violations: Mutex<Vec<String>>,
    /// `--break-open-index`: markers are acknowledged but never stored.
    pub drop_open_markers: bool,
}

impl SimStore {
    pub fn new(chaos: Arc<Chaos>, drop_open_markers: bool) -> Self {
        Self {
            chaos,
            docs: Mutex::default(),
            index_violations: Mutex::default(),
            drop_open_markers,
        }
    }

    /// The run id of a `runs/{id}.json` or `open/{id}.json` key.
    fn run_id_of<'k>(key: &'k str, folder: &str) -> Option<&'k str> {
        key.strip_prefix(folder)?
            .strip_prefix('/')?
            .strip_suffix(".json")
    }

    /// Checks a write against the open-run index's promise (called with the documents locked).
    fn watch_index(&self, docs: &BTreeMap<String, (Vec<u8>, u64)>, key: &str, deleting: bool) {
        let mut seen = self.index_violations.lock().unwrap();
        if let (false, Some(id)) = (deleting, Self::run_id_of(key, "runs")) {
            if !docs.contains_key(&format!("open/{id}.json")) {
                seen.push(format!("run {id} was created outside the open-run index"));
            }
        }
        if let (true, Some(id)) = (deleting, Self::run_id_of(key, "open")) {
            let run = docs
                .get(&format!("runs/{id}.json"))
                .and_then(|(b, _)| serde_json::from_slice::<RunRecord>(b).ok());
            if run.is_some_and(|r| !r.is_settled()) {
                seen.push(format!(
                    "run {id} left the open-run index before it settled"
                ));
            }
        }
    }
    fn fail() -> StorageError {
        StorageError::Ledger("simulated storage error (HTTP 500)".into())
    }

    /// A write's fault: an error before it acts, or acting and losing its answer.
    fn strike(&self) -> Result<Strike, StorageError> {
        let strike = self
            .chaos
            .strike(|f| (f.store_fail_before, f.store_lost_answer));
        if strike == Strike::Before {
            return Err(Self::fail());
        }
        Ok(strike)
    }
}

#[async_trait]
impl LedgerStore for SimStore {
    async fn read(&self, key: &ObjectPath) -> Result<Option<(Vec<u8>, ETag)>, StorageError> {
        if self.chaos.strike(|f| (f.store_fail_before, 0)) == Strike::Before {
            return Err(Self::fail());
        }
        Ok(self
            .docs
            .lock()
            .unwrap()
            .get(key.as_str())
            .map(|(b, v)| (b.clone(), ETag(v.to_string()))))
    }

    async fn create(&self, key: &ObjectPath, body: Vec<u8>) -> Result<Option<ETag>, StorageError> {
        let strike = self.strike()?;
        let mut docs = self.docs.lock().unwrap();
        if docs.contains_key(key.as_str()) {
            return Ok(None);
        }
        self.watch_index(&docs, key.as_str(), false);
        if !(self.drop_open_markers && key.as_str().starts_with("open/")) {
            docs.insert(key.to_string(), (body, 1));
        }
        match strike {
            // The SDK retried a create that had succeeded: it now sees the blob exists.
            Strike::AfterLostAnswer => Ok(None),
            _ => Ok(Some(ETag("1".into()))),
        }
    }

    async fn replace(
        &self,
        key: &ObjectPath,
        body: Vec<u8>,
        if_match: &ETag,
    ) -> Result<Option<ETag>, StorageError> {
        let strike = self.strike()?;
        let mut docs = self.docs.lock().unwrap();
        let Some((_, v)) = docs.get(key.as_str()).cloned() else {
            return Ok(None);
        };
        if v.to_string() != if_match.0 {
            return Ok(None);
        }
        docs.insert(key.to_string(), (body, v + 1));
        match strike {
            // Applied, answer lost, the retry met the new ETag: 412.
            Strike::AfterLostAnswer => Ok(None),
            _ => Ok(Some(ETag((v + 1).to_string()))),
        }
    }

    async fn delete(&self, key: &ObjectPath) -> Result<bool, StorageError> {
        let strike = self.strike()?;
        let mut docs = self.docs.lock().unwrap();
        self.watch_index(&docs, key.as_str(), true);
        let gone = docs.remove(key.as_str()).is_some();
        // A retried delete whose first answer was lost meets 404.
        Ok(gone && strike != Strike::AfterLostAnswer)
    }

    async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectPath>, StorageError> {
        if self.chaos.strike(|f| (f.store_fail_before, 0)) == Strike::Before {
            return Err(Self::fail());
        }
        let p = format!("{}/", prefix.as_str());
        Ok(self
            .docs
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(&p))
            .filter_map(|k| ObjectPath::new(k.clone()).ok())
            .collect())
    }
}

// ------------------------------------------------------------------ partner storage

/// The partner's container: copies fetch the source over loopback and keep the bytes.
#[derive(Debug)]
pub struct SimDestination {
    chaos: Arc<Chaos>,
    http: reqwest::Client,
    pub objects: Mutex<HashMap<String, Bytes>>,
}

impl SimDestination {
    pub fn new(chaos: Arc<Chaos>) -> Self {
        Self {
            chaos,
            http: reqwest::Client::new(),
            objects: Mutex::default(),
        }
    }
}

#[async_trait]
impl Destination for SimDestination {
    async fn copy_from_url(
        &self,
        source: &url::Url,
        dest: &ObjectPath,
        _identity: &SourceIdentity,
    ) -> Result<CopyOutcome, StorageError> {
        let strike = self
            .chaos
            .strike(|f| (f.copy_fail_before, f.copy_lost_answer));
        if strike == Strike::Before {
            return Err(refusal("copying to", dest));
        }
        let res = self
            .http
            .get(source.clone())
            .send()
            .await
            .map_err(|e| StorageError::Source(e.without_url().to_string()))?;
        if res.status().as_u16() == 403 {
            return Err(StorageError::SourceForbidden {
                status: 403,
                code: "AuthenticationFailed".into(),
            });
        }
        if !res.status().is_success() {
            return Err(StorageError::Source(format!("HTTP {}", res.status())));
        }
        let bytes = res
            .bytes()
            .await
            .map_err(|e| StorageError::Source(e.without_url().to_string()))?;
        let md5 = format!("{:x}", Md5::digest(&bytes));
        let len = bytes.len() as u64;
        self.objects.lock().unwrap().insert(dest.to_string(), bytes);
        match strike {
            // The copy happened; the client saw its retry refused.
            Strike::AfterLostAnswer => Err(refusal("copying to", dest)),
            _ => Ok(CopyOutcome {
                bytes: len,
                md5: Some(md5),
                rows: None,
                method: CopyMethod::ServerSide,
            }),
        }
    }

    async fn put_bytes(
        &self,
        dest: &ObjectPath,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let strike = self
            .chaos
            .strike(|f| (f.copy_fail_before, f.copy_lost_answer));
        if strike == Strike::Before {
            return Err(refusal("writing", dest));
        }
        self.objects.lock().unwrap().insert(dest.to_string(), bytes);
        match strike {
            Strike::AfterLostAnswer => Err(refusal("writing", dest)),
            _ => Ok(()),
        }
    }

    async fn fetch_to_file(
        &self,
        src: &ObjectPath,
        file: &std::path::Path,
    ) -> Result<u64, StorageError> {
        if self.chaos.strike(|f| (f.copy_fail_before, 0)) == Strike::Before {
            return Err(refusal("reading", src));
        }
        let bytes = self
            .objects
            .lock()
            .unwrap()
            .get(src.as_str())
            .cloned()
            .ok_or_else(|| StorageError::Destination(format!("{src} does not exist")))?;
        std::fs::write(file, &bytes)
            .map_err(|e| StorageError::Destination(format!("writing {}: {e}", file.display())))?;
        Ok(bytes.len() as u64)
    }

    async fn put_file(
        &self,
        dest: &ObjectPath,
        file: &std::path::Path,
        content_type: &str,
    ) -> Result<u64, StorageError> {
        let bytes = std::fs::read(file)
            .map_err(|e| StorageError::Destination(format!("reading {}: {e}", file.display())))?;
        let len = bytes.len() as u64;
        self.put_bytes(dest, bytes.into(), content_type).await?;
        Ok(len)
    }

    async fn delete_folder(&self, folder: &ObjectPath) -> Result<u64, StorageError> {
        if self.chaos.strike(|f| (f.copy_fail_before, 0)) == Strike::Before {
            return Err(refusal("deleting", folder));
        }
        let prefix = format!("{folder}/");
        let mut objects = self.objects.lock().unwrap();
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(&prefix));
        Ok((before - objects.len()) as u64)
    }

    fn locate(&self, dest: &ObjectPath) -> String {
        format!("sim://{dest}")
    }
}

/// What blob storage answers a refused write with, picked by the path so every seed meets
/// each kind: outages (500, 503) and the conflicts of concurrent writers (409 while a copy
/// to the blob is pending, 412 while another writer holds its lease or its condition
/// failed). The pipeline must outlast all of them the same way.
fn refusal(doing: &str, path: &ObjectPath) -> StorageError {
    const ANSWERS: [&str; 5] = [
        "HTTP 500 InternalError",
        "HTTP 503 ServerBusy",
        "HTTP 409 PendingCopyOperation: there is currently a pending copy operation",
        "HTTP 412 LeaseIdMissing: there is currently a lease on the blob",
        "HTTP 412 ConditionNotMet: the condition specified using HTTP conditional header(s) is not met",
    ];
    let pick = path
        .as_str()
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    StorageError::Destination(format!(
        "{doing} {path}: simulated {}",
        ANSWERS[pick % ANSWERS.len()]
    ))
}

// ------------------------------------------------------------------ tokens

/// The stand-ins' tokens, with outages of the identity endpoint.
#[derive(Debug)]
pub struct SimTokens {
    chaos: Arc<Chaos>,
    inner: partner_billing_export::auth::StaticTokenSource,
}

impl SimTokens {
    pub fn new(chaos: Arc<Chaos>) -> Self {
        Self {
            chaos,
            inner: partner_billing_local::tokens::local_token_source(),
        }
    }
}

#[async_trait]
impl TokenSource for SimTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        if self.chaos.strike(|f| (f.token_outage, 0)) == Strike::Before {
            return Err(AuthError::Credential {
                credential: "managed identity".into(),
                audience: audience.name(),
                reason: "simulated identity endpoint outage".into(),
            });
        }
        self.inner.token(audience).await
    }
}

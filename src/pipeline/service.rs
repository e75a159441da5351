//! The export pipeline: start → poll (scheduled messages) → fan out copies → fan in. Every
//! step is a short idempotent invocation; the ledger decides what a redelivered or duplicated
//! message still has to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;
use url::Url;

use super::decide::{after_poll, before_poll, AfterPoll, BeforePoll, PollPolicy};
use super::layout;
use super::ledger::{Claim, Ledger, LedgerError};
use super::messages::{CopyJob, PollJob};
use super::notify;
use super::run::{Failure, FailureCode, PartRecord, RunId, RunRecord, RunState, Trigger};
use crate::adapters::events::{CloudEvent, EventError, EventPublisher};
use crate::adapters::servicebus::{MessageQueue, OutgoingMessage, QueueError};
use crate::adapters::storage::{Destination, ObjectPath, SourceIdentity, StorageError};
use crate::billing::{
    BillingClient, BillingError, ExportRequest, InvalidInput, Manifest, OperationState, PollOutcome,
};
use crate::pipeline::messages::{OPERATIONS_QUEUE, PARTITIONS_QUEUE};

/// A run that has stood still this long past its next poll gets its poll message sent again.
const STALL_GRACE: Duration = Duration::from_secs(300);
/// A finisher that claimed the final event this long ago and did not send it is presumed dead.
const FINISH_CLAIM_TTL: Duration = Duration::from_secs(120);
/// Copy jobs sent concurrently when fanning out.
const FANOUT_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub poll: PollPolicy,
    pub poll_deadline: Duration,
    /// CloudEvents `source`.
    pub event_source: String,
    /// Folder prefix of every run's output.
    pub output_prefix: ObjectPath,
}

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

struct CachedManifest {
    manifest: Manifest,
    good_until: OffsetDateTime,
}

pub struct Pipeline {
    billing: BillingClient,
    queue: Arc<dyn MessageQueue>,
    events: Arc<dyn EventPublisher>,
    dest: Arc<dyn Destination>,
    ledger: Ledger,
    cfg: PipelineConfig,
    manifests: Mutex<HashMap<RunId, CachedManifest>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Pipeline {
    pub fn new(
        billing: BillingClient,
        queue: Arc<dyn MessageQueue>,
        events: Arc<dyn EventPublisher>,
        dest: Arc<dyn Destination>,
        ledger: Ledger,
        cfg: PipelineConfig,
    ) -> Self {
        Self {
            billing,
            queue,
            events,
            dest,
            ledger,
            cfg,
            manifests: Mutex::new(HashMap::new()),
        }
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

    // ---------------------------------------------------------------- start

    /// Starts `request` unless the same export is already running.
    pub async fn start(
        &self,
        request: ExportRequest,
        trigger: Trigger,
    ) -> Result<StartOutcome, PipelineError> {
        request.validate()?;
        let t = now();
        let rec = RunRecord::new(
            RunId::generate(t),
            request,
            trigger,
            t,
            t + self.cfg.poll_deadline,
        );
        match self.ledger.claim_request(&rec).await? {
            Claim::Active(existing) => {
                tracing::info!(run_id = %existing.run_id, request = %existing.request, "export already running; duplicate start ignored");
                self.repair_if_stalled(&existing).await?;
                if existing.state == RunState::Starting && t - existing.updated_at > STALL_GRACE {
                    return self.submit(&existing.run_id).await;
                }
                Ok(StartOutcome::Duplicate(existing))
            }
            Claim::New => {
                self.ledger.create_run(&rec).await?;
                tracing::info!(run_id = %rec.run_id, request = %rec.request, ?trigger, "export run claimed");
                self.submit(&rec.run_id).await
            }
        }
    }

    /// POSTs the export for a run in `Starting` and schedules its first poll.
    async fn submit(&self, id: &RunId) -> Result<StartOutcome, PipelineError> {
        let run = self
            .ledger
            .get(id)
            .await?
            .ok_or_else(|| LedgerError::UnknownRun(id.clone()))?;
        match self.billing.start_export(&run.request).await {
            Ok(started) => {
                let at = now()
                    + started
                        .retry_after
                        .unwrap_or(self.cfg.poll.default_retry_after);
                let op = started.operation_url.to_string();
                let updated = self
                    .ledger
                    .update(id, |r| {
                        (r.state == RunState::Starting).then(|| {
                            r.state = RunState::Polling;
                            r.operation_url = Some(op.clone());
                            r.next_poll_at = Some(at);
                        })
                    })
                    .await?;
                let Some((run, ())) = updated else {
                    // Someone else submitted it meanwhile.
                    let cur = self
                        .ledger
                        .get(id)
                        .await?
                        .ok_or_else(|| LedgerError::UnknownRun(id.clone()))?;
                    return Ok(StartOutcome::Duplicate(Box::new(cur)));
                };
                self.send_poll(&PollJob::new(id.clone(), run.polls), at)
                    .await?;
                tracing::info!(run_id = %id, next_poll_at = %at, "export started; first poll scheduled");
                let run = self.announce_started(run).await;
                Ok(StartOutcome::Started(Box::new(run)))
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => {
                let run = self
                    .fail_run(id, FailureCode::Rejected, &e.to_string())
                    .await?
                    .unwrap_or(run);
                Ok(StartOutcome::Rejected(Box::new(run)))
            }
        }
    }

    async fn announce_started(&self, run: RunRecord) -> RunRecord {
        let ev = notify::started(&self.cfg.event_source, &run);
        match self.events.publish(&[ev]).await {
            Ok(()) => match self
                .ledger
                .update(&run.run_id, |r| {
                    (!r.started_event_sent).then(|| r.started_event_sent = true)
                })
                .await
            {
                Ok(Some((r, ()))) => r,
                _ => run,
            },
            Err(e) => {
                // The run goes on; the event is informational.
                tracing::warn!(run_id = %run.run_id, error = %e, "could not publish ExportStarted");
                run
            }
        }
    }

    async fn send_poll(&self, job: &PollJob, at: OffsetDateTime) -> Result<(), QueueError> {
        let msg = OutgoingMessage::json(job, job.message_id(), Some(at))?;
        self.queue.send(OPERATIONS_QUEUE, &msg).await
    }

    /// A run whose next poll is long overdue lost its message (a crash between the ledger write
    /// and the send): send it again. Duplicate detection and the poll sequence make this safe.
    /// Called when the same export is asked for again and when its status is read.
    pub async fn repair_if_stalled(&self, run: &RunRecord) -> Result<(), PipelineError> {
        let overdue = run.next_poll_at.is_some_and(|at| now() - at > STALL_GRACE);
        match run.state {
            RunState::Polling if overdue => {
                tracing::warn!(run_id = %run.run_id, "poll overdue; sending it again");
                self.send_poll(&PollJob::new(run.run_id.clone(), run.polls), now())
                    .await?;
            }
            RunState::Copying if now() - run.updated_at > STALL_GRACE => {
                tracing::warn!(run_id = %run.run_id, "copies stalled; sending outstanding copy jobs again");
                self.send_copy_jobs(run).await?;
            }
            _ => {}
        }
        Ok(())
    }

    // ---------------------------------------------------------------- poll

    pub async fn handle_poll(&self, job: &PollJob) -> Result<Handled, PipelineError> {
        let Some(run) = self.ledger.get(&job.run_id).await? else {
            tracing::warn!(run_id = %job.run_id, "poll for a run the ledger does not know; dropped");
            return Ok(Handled::Ignored("unknown run"));
        };
        let t = now();
        match before_poll(&run, job.seq, t) {
            BeforePoll::Stale => Ok(Handled::Ignored("stale poll")),
            BeforePoll::Done => Ok(Handled::Ignored("run not polling")),
            BeforePoll::ResendCopies => {
                let n = self.send_copy_jobs(&run).await?;
                self.advance_polls(&run.run_id, job.seq, None, None).await?;
                Ok(Handled::FannedOut(n))
            }
            BeforePoll::DeadlineExceeded => {
                let msg = format!(
                    "the export operation was still running at the polling deadline ({} after start)",
                    humanize(self.cfg.poll_deadline)
                );
                self.fail_run(&run.run_id, FailureCode::Deadline, &msg)
                    .await?;
                Ok(Handled::Failed)
            }
            BeforePoll::Poll => self.poll_graph(run, job.seq, t).await,
        }
    }

    async fn poll_graph(
        &self,
        run: RunRecord,
        seq: u32,
        t: OffsetDateTime,
    ) -> Result<Handled, PipelineError> {
        let url = operation_url(&run)?;
        let answer = self.billing.get_operation(&url).await;
        let decision = after_poll(&run, answer.as_ref().map(Clone::clone), t, &self.cfg.poll);
        let id = &run.run_id;
        match decision {
            AfterPoll::Reschedule { at, status } => {
                tracing::info!(run_id = %id, status = %status, next_poll_at = %at, "operation still running");
                self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
                    .await?;
                self.advance_polls(id, seq, Some(at), Some(status)).await?;
                Ok(Handled::Rescheduled)
            }
            AfterPoll::RetryLater { at, reason } => {
                tracing::warn!(run_id = %id, reason = %reason, next_poll_at = %at, "Graph unavailable; polling again later");
                self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
                    .await?;
                self.advance_polls(id, seq, Some(at), None).await?;
                Ok(Handled::Rescheduled)
            }
            AfterPoll::Restart => self.restart(run, seq).await,
            AfterPoll::Fail { code, message } => {
                self.fail_run(id, code, &message).await?;
                Ok(Handled::Failed)
            }
            AfterPoll::Succeeded(loc) => {
                let manifest = match self.billing.resolve_manifest(loc).await {
                    Ok(m) => m,
                    Err(e) if e.is_transient() => {
                        let at = t + self.cfg.poll.default_retry_after;
                        self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
                            .await?;
                        self.advance_polls(id, seq, Some(at), None).await?;
                        return Ok(Handled::Rescheduled);
                    }
                    Err(e) => {
                        self.fail_run(id, FailureCode::Manifest, &e.to_string())
                            .await?;
                        return Ok(Handled::Failed);
                    }
                };
                self.fan_out(run, seq, manifest).await
            }
        }
    }

    async fn advance_polls(
        &self,
        id: &RunId,
        seq: u32,
        next: Option<OffsetDateTime>,
        status: Option<String>,
    ) -> Result<(), PipelineError> {
        self.ledger
            .update(id, |r| {
                (r.polls <= seq).then(|| {
                    r.polls = seq + 1;
                    if r.state == RunState::Polling {
                        r.next_poll_at = next;
                    }
                    if status.is_some() {
                        r.last_status = status.clone();
                    }
                })
            })
            .await?;
        Ok(())
    }

    /// `410 Gone`: start the same export again and poll the new operation.
    async fn restart(&self, run: RunRecord, seq: u32) -> Result<Handled, PipelineError> {
        let id = &run.run_id;
        let started = match self.billing.start_export(&run.request).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                self.fail_run(
                    id,
                    FailureCode::Rejected,
                    &format!("restarting the expired export failed: {e}"),
                )
                .await?;
                return Ok(Handled::Failed);
            }
        };
        let at = now()
            + started
                .retry_after
                .unwrap_or(self.cfg.poll.default_retry_after);
        self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
            .await?;
        let op = started.operation_url.to_string();
        let updated = self
            .ledger
            .update(id, |r| {
                (r.polls <= seq && r.state == RunState::Polling).then(|| {
                    r.polls = seq + 1;
                    r.restarts += 1;
                    r.operation_url = Some(op.clone());
                    r.next_poll_at = Some(at);
                })
            })
            .await?;
        if let Some((r, ())) = updated {
            tracing::warn!(run_id = %id, restarts = r.restarts, "operation expired (410 Gone); export started again");
            self.announce_started(r).await;
        }
        Ok(Handled::Restarted)
    }

    /// Success: record the manifest and parts, then send one copy job per partition.
    async fn fan_out(
        &self,
        run: RunRecord,
        seq: u32,
        manifest: Manifest,
    ) -> Result<Handled, PipelineError> {
        let id = run.run_id.clone();
        let summary = manifest.summary();
        let folder = layout::output_folder(&self.cfg.output_prefix, &run, &summary)?;
        let parts = summary
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Ok(PartRecord {
                    index: i as u32,
                    name: b.name.clone(),
                    partition_value: b.partition_value.clone(),
                    dest: layout::part_path(&folder, i as u32, &b.name)?,
                    done: false,
                    bytes: None,
                    md5: None,
                    rows: None,
                    method: None,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.cache_manifest(&id, manifest);
        let t = now();
        let empty = parts.is_empty();
        let updated = self
            .ledger
            .update(&id, |r| {
                (r.state == RunState::Polling && r.polls == seq).then(|| {
                    r.state = RunState::Copying;
                    r.manifest = Some(summary.clone());
                    r.output_folder = Some(folder.clone());
                    r.parts = parts.clone();
                    r.next_poll_at = None;
                    r.last_status = Some("succeeded".into());
                    if empty {
                        r.finish(RunState::Completed, None, t);
                    }
                })
            })
            .await?;
        let Some((run, ())) = updated else {
            return Ok(Handled::Ignored("run moved on meanwhile"));
        };
        tracing::info!(run_id = %id, blobs = run.parts.len(), etag = %summary.etag, folder = %folder, "export succeeded; fanning out copies");
        if empty {
            self.finish_completed(run).await?;
            return Ok(Handled::Completed);
        }
        let n = self.send_copy_jobs(&run).await?;
        self.advance_polls(&id, seq, None, None).await?;
        Ok(Handled::FannedOut(n))
    }

    async fn send_copy_jobs(&self, run: &RunRecord) -> Result<usize, PipelineError> {
        let jobs: Vec<CopyJob> = run
            .parts
            .iter()
            .filter(|p| !p.done)
            .map(|p| CopyJob::new(run.run_id.clone(), p.index))
            .collect();
        let n = jobs.len();
        futures::stream::iter(jobs)
            .map(|job| async move {
                let msg = OutgoingMessage::json(&job, job.message_id(), None)?;
                self.queue.send(PARTITIONS_QUEUE, &msg).await
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(n)
    }

    // ---------------------------------------------------------------- copy

    pub async fn handle_copy(
        &self,
        job: &CopyJob,
        delivery_count: u32,
    ) -> Result<Handled, PipelineError> {
        let Some(run) = self.ledger.get(&job.run_id).await? else {
            tracing::warn!(run_id = %job.run_id, "copy job for a run the ledger does not know; dropped");
            return Ok(Handled::Ignored("unknown run"));
        };
        if run.state.is_terminal() {
            return self.resume_finish(run, delivery_count).await;
        }
        if run.state != RunState::Copying {
            return Ok(Handled::Ignored("run not copying"));
        }
        let Some(part) = run.parts.get(job.part as usize).cloned() else {
            tracing::error!(run_id = %job.run_id, part = job.part, "copy job names a part the run does not have; dropped");
            return Ok(Handled::Ignored("no such part"));
        };
        if part.done {
            return Ok(Handled::Ignored("part already copied"));
        }
        let Some(expected_etag) = run.manifest.as_ref().map(|m| m.etag.clone()) else {
            return Ok(Handled::Ignored("run has no manifest"));
        };
        let identity = SourceIdentity {
            manifest_etag: expected_etag.clone(),
            blob_name: part.name.clone(),
        };
        let mut refreshed = false;
        let outcome = loop {
            let manifest = self.manifest_for(&run, refreshed).await?;
            if manifest.etag != expected_etag {
                let msg = format!(
                    "the source data changed while copying (eTag {expected_etag} became {}); start the export again",
                    manifest.etag
                );
                self.fail_run(&run.run_id, FailureCode::SourceChanged, &msg)
                    .await?;
                return Ok(Handled::Failed);
            }
            let Some(blob) = manifest.blobs.iter().find(|b| b.name == part.name) else {
                let msg = format!(
                    "partition {} is no longer in the source manifest",
                    part.name
                );
                self.fail_run(&run.run_id, FailureCode::SourceChanged, &msg)
                    .await?;
                return Ok(Handled::Failed);
            };
            let url = manifest.blob_url(blob).map_err(|e| {
                PipelineError::Source(format!("bad blob URL for {}: {e}", part.name))
            })?;
            match self.dest.copy_from_url(&url, &part.dest, &identity).await {
                Err(e) if e.is_sas_expired() && !refreshed => {
                    tracing::warn!(run_id = %run.run_id, part = part.index, "source refused the SAS; fetching a fresh manifest");
                    self.forget_manifest(&run.run_id);
                    refreshed = true;
                }
                other => break other?,
            }
        };
        tracing::info!(run_id = %run.run_id, part = part.index, bytes = outcome.bytes, rows = ?outcome.rows, method = ?outcome.method, "partition copied");
        let t = now();
        let skipped = outcome.method == crate::adapters::storage::CopyMethod::Skipped;
        let updated = self
            .ledger
            .update(&run.run_id, |r| {
                if r.state != RunState::Copying {
                    return None;
                }
                let p = r.parts.get_mut(part.index as usize)?;
                if p.done {
                    return None;
                }
                p.done = true;
                p.bytes = Some(outcome.bytes);
                p.md5 = outcome.md5.clone();
                p.rows = outcome.rows;
                p.method = Some(outcome.method);
                let last = r.parts.iter().all(|p| p.done);
                if last {
                    r.finish(RunState::Completed, None, t);
                }
                Some(last)
            })
            .await?;
        match updated {
            Some((run, true)) => {
                self.finish_completed(run).await?;
                Ok(Handled::Completed)
            }
            _ => Ok(Handled::Copied {
                part: part.index,
                skipped,
            }),
        }
    }

    /// A terminal run whose final event was claimed but never sent (the finisher crashed):
    /// a redelivered message, or a long-stale claim, finishes it.
    async fn resume_finish(
        &self,
        run: RunRecord,
        delivery_count: u32,
    ) -> Result<Handled, PipelineError> {
        if run.final_event_sent {
            return Ok(Handled::Ignored("run finished"));
        }
        let stale = run
            .finish_claimed_at
            .is_none_or(|c| now() - c > FINISH_CLAIM_TTL);
        if !(stale || delivery_count > 1) {
            return Ok(Handled::Ignored("finisher at work"));
        }
        match run.state {
            RunState::Completed => {
                self.finish_completed(run).await?;
                Ok(Handled::Completed)
            }
            _ => {
                self.publish_final(&run, notify::failed(&self.cfg.event_source, &run))
                    .await?;
                Ok(Handled::Failed)
            }
        }
    }

    async fn finish_completed(&self, run: RunRecord) -> Result<(), PipelineError> {
        let folder = run
            .output_folder
            .clone()
            .ok_or_else(|| PipelineError::Source("completed run has no output folder".into()))?;
        let manifest_path = folder.join(layout::RUN_MANIFEST_NAME)?;
        let doc = layout::run_manifest(&run)
            .ok_or_else(|| PipelineError::Source("completed run has no manifest".into()))?;
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| PipelineError::Source(e.to_string()))?;
        self.dest
            .put_bytes(&manifest_path, bytes.into(), "application/json")
            .await?;
        let ev = notify::completed(
            &self.cfg.event_source,
            &run,
            &self.dest.locate(&folder),
            &self.dest.locate(&manifest_path),
        );
        self.publish_final(&run, ev).await?;
        self.forget_manifest(&run.run_id);
        tracing::info!(run_id = %run.run_id, blobs = run.parts.len(), bytes = run.bytes_copied(), rows = ?run.rows_copied(), "export run completed");
        Ok(())
    }

    async fn publish_final(&self, run: &RunRecord, ev: CloudEvent) -> Result<(), PipelineError> {
        self.events.publish(&[ev]).await?;
        self.ledger
            .update(&run.run_id, |r| {
                (!r.final_event_sent).then(|| r.final_event_sent = true)
            })
            .await?;
        Ok(())
    }

    /// Moves a run to `Failed` (once) and announces it. Returns the failed record if this call did it.
    async fn fail_run(
        &self,
        id: &RunId,
        code: FailureCode,
        message: &str,
    ) -> Result<Option<RunRecord>, PipelineError> {
        let t = now();
        let failure = Failure {
            code: code.clone(),
            message: message.chars().take(2000).collect(),
            at: t,
        };
        let updated = self
            .ledger
            .update(id, |r| {
                (!r.state.is_terminal())
                    .then(|| r.finish(RunState::Failed, Some(failure.clone()), t))
            })
            .await?;
        let Some((run, ())) = updated else {
            return Ok(None);
        };
        tracing::error!(run_id = %id, code = %code, reason = message, "export run failed");
        self.publish_final(&run, notify::failed(&self.cfg.event_source, &run))
            .await?;
        self.forget_manifest(id);
        Ok(Some(run))
    }

    // ---------------------------------------------------------------- manifests and SAS

    fn cache_manifest(&self, id: &RunId, manifest: Manifest) {
        // Keep a SAS until a little before it expires; without `se`, for a few minutes.
        let good_until = manifest
            .sas_expiry()
            .map(|e| e - Duration::from_secs(120))
            .unwrap_or_else(|| now() + Duration::from_secs(300));
        let mut cache = self.manifests.lock().expect("manifest cache lock");
        if cache.len() > 512 {
            cache.retain(|_, c| c.good_until > now());
        }
        cache.insert(
            id.clone(),
            CachedManifest {
                manifest,
                good_until,
            },
        );
    }

    fn forget_manifest(&self, id: &RunId) {
        self.manifests
            .lock()
            .expect("manifest cache lock")
            .remove(id);
    }

    /// The run's manifest with a SAS that should still work; fetched again from Graph when the
    /// cached one is about to expire or when `force` says the source refused it.
    async fn manifest_for(&self, run: &RunRecord, force: bool) -> Result<Manifest, PipelineError> {
        if !force {
            let cache = self.manifests.lock().expect("manifest cache lock");
            if let Some(c) = cache.get(&run.run_id).filter(|c| c.good_until > now()) {
                return Ok(c.manifest.clone());
            }
        }
        let url = operation_url(run)?;
        let manifest = match self.billing.get_operation(&url).await? {
            PollOutcome::Operation(op) => match op.state {
                OperationState::Succeeded { manifest } => {
                    self.billing.resolve_manifest(manifest).await?
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

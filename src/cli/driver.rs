//! Runs the pipeline's queue work in this process: each due message of the in-process queue goes
//! to the same `handle_poll` / `handle_copy` the Azure Functions call, polls as they come due
//! (Retry-After is honoured by the queue's scheduled time) and copies a few at a time. A failed
//! delivery comes back later with its delivery count raised, as with Service Bus; after
//! [`MAX_DELIVERIES`] the run is given up for this invocation (the ledger keeps it for a rerun).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::task::{Id, JoinSet};

use super::diagnose::{self, Service};
use super::progress::Progress;
use crate::adapters::memory_queue::{Delivery, MemoryQueue};
use crate::adapters::servicebus::{MessageQueue, OutgoingMessage, QueueError};
use crate::app::App;
use crate::pipeline::layout::RUN_MANIFEST_NAME;
use crate::pipeline::messages::{OPERATIONS_QUEUE, PARTITIONS_QUEUE};
use crate::pipeline::{CopyJob, Handled, PipelineError, PollJob, RunId, RunRecord, RunState};

/// Deliveries of one message before its run is given up (Service Bus's default is 10; a person
/// is waiting here).
pub const MAX_DELIVERIES: u32 = 5;
/// Polls handled at the same time.
const POLL_CONCURRENCY: usize = 8;
/// How often the loop wakes without news (progress redraw).
const TICK: Duration = Duration::from_millis(200);
/// How often every unfinished run is read from the ledger.
const REFRESH: Duration = Duration::from_secs(1);
/// How long in-flight work may finish after Ctrl-C.
const STOP_GRACE: Duration = Duration::from_secs(5);

enum Job {
    Poll(PollJob),
    Copy(CopyJob),
}

impl Job {
    fn parse(d: &Delivery) -> Result<Self, String> {
        let v = d.json().map_err(|e| e.to_string())?;
        match d.queue.as_str() {
            OPERATIONS_QUEUE => PollJob::try_from(&v)
                .map(Job::Poll)
                .map_err(|e| e.to_string()),
            PARTITIONS_QUEUE => CopyJob::try_from(&v)
                .map(Job::Copy)
                .map_err(|e| e.to_string()),
            other => Err(format!("no handler for queue {other}")),
        }
    }

    fn run_id(&self) -> &RunId {
        match self {
            Job::Poll(j) => &j.run_id,
            Job::Copy(j) => &j.run_id,
        }
    }
}

struct InFlight {
    delivery: Delivery,
    run_id: RunId,
}

pub struct Driver {
    app: Arc<App>,
    queue: Arc<MemoryQueue>,
    concurrency: usize,
}

impl Driver {
    pub fn new(app: Arc<App>, queue: Arc<MemoryQueue>, concurrency: usize) -> Self {
        Self {
            app,
            queue,
            concurrency: concurrency.max(1),
        }
    }

    /// Puts the outstanding work of a run an earlier invocation left unfinished back on the
    /// queue: its current poll (at the time it was due), or the copies of its parts not done.
    /// This is what the pipeline's stall repair does after its grace period, done at once
    /// because this process owns the queue. The message ids are the pipeline's own.
    pub async fn requeue(&self, run: &RunRecord) -> Result<(), QueueError> {
        match run.state {
            RunState::Polling => {
                let job = PollJob::new(run.run_id.clone(), run.polls);
                let msg = OutgoingMessage::json(&job, job.message_id(), run.next_poll_at)?;
                self.queue.send(OPERATIONS_QUEUE, &msg).await
            }
            RunState::Copying => {
                for p in run.parts.iter().filter(|p| !p.done) {
                    let job = CopyJob::new(run.run_id.clone(), p.index);
                    let msg = OutgoingMessage::json(&job, job.message_id(), None)?;
                    self.queue.send(PARTITIONS_QUEUE, &msg).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Drives every run of `progress` until each is finished (or given up), or `stop` fires.
    /// Returns whether it was stopped.
    pub async fn run(
        &self,
        progress: &mut Progress,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> bool {
        let mut tasks: JoinSet<Result<Handled, PipelineError>> = JoinSet::new();
        let mut in_flight: HashMap<Id, InFlight> = HashMap::new();
        let mut last_refresh = Instant::now();
        self.refresh(progress, None).await;
        loop {
            self.dispatch(&mut tasks, &mut in_flight);
            if tasks.is_empty() {
                if progress.runs().iter().all(|v| v.settled()) {
                    return false;
                }
                if self.queue.next_due().is_none() {
                    self.refresh(progress, None).await;
                    self.give_up_idle(progress);
                    continue;
                }
            }
            let now = OffsetDateTime::now_utc();
            let wait = self
                .queue
                .next_due()
                .map(|at| (at - now).clamp(time::Duration::ZERO, time::Duration::ZERO + TICK))
                .map_or(TICK, |d| Duration::from_secs_f64(d.as_seconds_f64()));
            tokio::select! {
                _ = &mut *stop => {
                    self.stop(&mut tasks).await;
                    self.refresh(progress, None).await;
                    return true;
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, result) = match joined {
                        Ok((id, r)) => (id, r.map_err(|e| explain(&e, &self.app))),
                        Err(e) => (e.id(), Err(format!("the handler panicked: {e}"))),
                    };
                    if let Some(f) = in_flight.remove(&id) {
                        let run_id = f.run_id.clone();
                        self.settle(f, result, progress);
                        self.refresh(progress, Some(std::slice::from_ref(&run_id))).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            if last_refresh.elapsed() >= REFRESH {
                self.refresh(progress, None).await;
                last_refresh = Instant::now();
            }
            progress.draw(false);
        }
    }

    /// Starts the due messages while there is room.
    fn dispatch(
        &self,
        tasks: &mut JoinSet<Result<Handled, PipelineError>>,
        in_flight: &mut HashMap<Id, InFlight>,
    ) {
        let now = OffsetDateTime::now_utc();
        for (queue, limit) in [
            (PARTITIONS_QUEUE, self.concurrency),
            (OPERATIONS_QUEUE, POLL_CONCURRENCY),
        ] {
            while in_flight
                .values()
                .filter(|f| f.delivery.queue == queue)
                .count()
                < limit
            {
                let Some(d) = self.queue.receive_due(queue, now) else {
                    break;
                };
                let job = match Job::parse(&d) {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::error!(queue, message_id = %d.message_id, error = %e, "unreadable message dropped");
                        continue;
                    }
                };
                let run_id = job.run_id().clone();
                let app = self.app.clone();
                let count = d.delivery_count;
                let handle = tasks.spawn(async move {
                    match job {
                        Job::Poll(j) => app.pipeline.handle_poll(&j).await,
                        Job::Copy(j) => app.pipeline.handle_copy(&j, count).await,
                    }
                });
                in_flight.insert(
                    handle.id(),
                    InFlight {
                        delivery: d,
                        run_id,
                    },
                );
            }
        }
    }

    /// A finished handler: done, or back on the queue with a backoff, or given up.
    fn settle(&self, f: InFlight, result: Result<Handled, String>, progress: &mut Progress) {
        let InFlight { delivery, run_id } = f;
        match result {
            Ok(handled) => {
                tracing::debug!(run_id = %run_id, message_id = %delivery.message_id, ?handled, "handled")
            }
            Err(e) if delivery.delivery_count >= MAX_DELIVERIES => {
                tracing::error!(run_id = %run_id, message_id = %delivery.message_id, error = %e, "giving up after {MAX_DELIVERIES} deliveries");
                progress.give_up(&run_id, e);
            }
            Err(e) => {
                let backoff = Duration::from_secs(1 << delivery.delivery_count.min(5));
                tracing::warn!(run_id = %run_id, message_id = %delivery.message_id, delivery = delivery.delivery_count, error = %e, "handler failed; retrying in {backoff:?}");
                self.queue
                    .abandon(delivery, OffsetDateTime::now_utc() + backoff);
            }
        }
    }

    /// Nothing queued and nothing running, yet some runs are unfinished (claimed by a start
    /// that never reached Graph, for instance): nothing in this process can move them.
    fn give_up_idle(&self, progress: &mut Progress) {
        let stuck: Vec<(RunId, RunState)> = progress
            .runs()
            .iter()
            .filter(|v| !v.settled())
            .map(|v| (v.run_id().clone(), v.record.state))
            .collect();
        for (id, state) in stuck {
            progress.give_up(
                &id,
                format!(
                    "the run is {} with no work left for this process; run the command again in a few minutes",
                    state.as_str()
                ),
            );
        }
    }

    /// Ctrl-C: start nothing more, let in-flight work finish briefly, then abandon it (the
    /// ledger has what is done; a rerun continues).
    async fn stop(&self, tasks: &mut JoinSet<Result<Handled, PipelineError>>) {
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Reads unfinished runs (`only`, or all) from the ledger into `progress`.
    async fn refresh(&self, progress: &mut Progress, only: Option<&[RunId]>) {
        let ids: Vec<RunId> = progress
            .runs()
            .iter()
            .filter(|v| {
                !v.settled() || v.manifest.is_none() && v.record.state == RunState::Completed
            })
            .map(|v| v.run_id().clone())
            .filter(|id| only.is_none_or(|o| o.contains(id)))
            .collect();
        for id in ids {
            match self.app.pipeline.ledger().get_live(&id).await {
                Ok(Some(rec)) => {
                    let manifest = (rec.state == RunState::Completed)
                        .then(|| rec.output_folder.as_ref()?.join(RUN_MANIFEST_NAME).ok())
                        .flatten()
                        .map(|p| self.app.pipeline.destination().locate(&p));
                    progress.update(rec);
                    if let (Some(m), Some(v)) = (manifest, progress.run_mut(&id)) {
                        v.manifest = Some(m);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(run_id = %id, error = %e, "cannot read the run record"),
            }
        }
    }
}

/// A handler's error as the user reads it, with the fix when it is one a user can make.
fn explain(e: &PipelineError, app: &App) -> String {
    let hint = match e {
        PipelineError::Billing(b) => diagnose::billing(b, Service::Graph, app.config.graph.version),
        _ => None,
    };
    match hint {
        Some(h) => format!("{e} (hint: {h})"),
        None => e.to_string(),
    }
}

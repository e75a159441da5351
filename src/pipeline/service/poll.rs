//! One poll of a Graph operation: reschedule at Retry-After, restart after 410, fail, or fan out
//! the copies of a succeeded export.

use futures::StreamExt;
use time::OffsetDateTime;

use super::super::decide::{after_poll, before_poll, AfterPoll, BeforePoll};
use super::super::layout;
use super::super::messages::{CopyJob, PollJob};
use super::super::run::{FailureCode, PartRecord, RunId, RunRecord, RunState};
use crate::billing::Manifest;
use crate::pipeline::messages::PARTITIONS_QUEUE;
use crate::pipeline::ports::queue::{OutgoingMessage, QueueError};

use super::{
    humanize, operation_url, Handled, Pipeline, PipelineError, FANOUT_CONCURRENCY, STALL_GRACE,
};

/// Rounds of sending a fan-out's copy jobs before the poll gives up and is redelivered.
const FANOUT_SEND_ROUNDS: usize = 3;

impl Pipeline {
    pub async fn handle_poll(&self, job: &PollJob) -> Result<Handled, PipelineError> {
        let Some(run) = self.ledger.get(&job.run_id).await? else {
            tracing::warn!(run_id = %job.run_id, "poll for a run the ledger does not know; dropped");
            return Ok(Handled::Ignored("unknown run"));
        };
        let t = self.now();
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

    pub(super) async fn poll_graph(
        &self,
        run: RunRecord,
        seq: u32,
        t: OffsetDateTime,
    ) -> Result<Handled, PipelineError> {
        let url = operation_url(&run)?;
        let billing = self.billing_for(&run.request.partner)?;
        let answer = billing.get_operation(&url).await;
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
            AfterPoll::NoData { message } => self.complete_without_data(run, seq, &message).await,
            AfterPoll::Fail { code, message } => {
                self.fail_run(id, code, &message).await?;
                Ok(Handled::Failed)
            }
            AfterPoll::Succeeded(loc) => {
                let manifest = match billing.resolve_manifest(loc).await {
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
                // Another tenant's data must never land in this partner's folder.
                if let Some(expected) = self.expected_tenant(&run.request.partner) {
                    let actual = manifest.partner_tenant_id.trim();
                    if !actual.is_empty() && !actual.eq_ignore_ascii_case(expected) {
                        let msg = format!(
                            "the export's manifest is for partner tenant {actual}, but partner {} is tenant {expected}: \
                             the credential signs in to another tenant; nothing was copied",
                            run.request.partner
                        );
                        self.fail_run(id, FailureCode::TenantMismatch, &msg).await?;
                        return Ok(Handled::Failed);
                    }
                }
                self.fan_out(run, seq, manifest).await
            }
        }
    }

    pub(super) async fn advance_polls(
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
    pub(super) async fn restart(&self, run: RunRecord, seq: u32) -> Result<Handled, PipelineError> {
        let id = &run.run_id;
        // Count the attempt and take the submit lease *before* asking Graph: if what follows
        // the POST fails (a lost send, a crash), the redelivered poll finds the lease and does
        // not start a second export (found by the simulation: one restart, several exports).
        let t = self.now();
        let leased = self
            .ledger
            .update(id, |r| {
                let free = r.submit_lease_free(t, STALL_GRACE);
                (r.state == RunState::Polling && r.polls <= seq && free).then(|| {
                    r.submit_lease_at = Some(t);
                    r.restarts += 1;
                })
            })
            .await?;
        if leased.is_none() {
            return Ok(Handled::Ignored("restart already under way"));
        }
        let started = match self
            .billing_for(&run.request.partner)?
            .start_export(&run.request)
            .await
        {
            Ok(s) => s,
            // Graph is down while the operation is gone: keep the poll chain alive and try the
            // restart again later, instead of failing the delivery (and burning its retries).
            Err(e) if e.is_transient() => {
                let at = self.cfg.poll.next_poll(&run, e.retry_after(), self.now());
                tracing::warn!(run_id = %id, error = %e, next_poll_at = %at, "could not restart the expired export; trying again later");
                // No export was started: the next try may go ahead, and the restart budget
                // counts exports restarted, not outages.
                self.ledger
                    .update(id, |r| {
                        r.submit_lease_at.take().map(|_| {
                            r.restarts = r.restarts.saturating_sub(1);
                        })
                    })
                    .await?;
                self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
                    .await?;
                self.advance_polls(id, seq, Some(at), None).await?;
                return Ok(Handled::Rescheduled);
            }
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
        let at = self
            .cfg
            .poll
            .next_poll(&run, started.retry_after, self.now());
        self.send_poll(&PollJob::new(id.clone(), seq + 1), at)
            .await?;
        let op = started.operation_url.to_string();
        let updated = self
            .ledger
            .update(id, |r| {
                (r.polls <= seq && r.state == RunState::Polling).then(|| {
                    r.polls = seq + 1;
                    r.submit_lease_at = None;
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
    pub(super) async fn fan_out(
        &self,
        run: RunRecord,
        seq: u32,
        manifest: Manifest,
    ) -> Result<Handled, PipelineError> {
        let id = run.run_id.clone();
        let summary = manifest.summary();
        let folder = layout::output_folder(
            &self.output_prefix_for(&run.request.partner)?,
            &run,
            &summary,
        )?;
        let names: Vec<&str> = summary.blobs.iter().map(|b| b.name.as_str()).collect();
        let dests = layout::part_paths(&folder, &names)?;
        let parts: Vec<PartRecord> = summary
            .blobs
            .iter()
            .zip(dests)
            .enumerate()
            .map(|(i, (b, dest))| PartRecord {
                index: i as u32,
                name: b.name.clone(),
                partition_value: b.partition_value.clone(),
                dest,
                done: false,
                bytes: None,
                md5: None,
                rows: None,
                method: None,
                parquet_bytes: None,
                rounded_values: None,
            })
            .collect();
        self.cache_manifest(&id, manifest);
        let t = self.now();
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

    /// Graph has no data for the export (code 5000): the run completes with no parts, its
    /// `_manifest.json` says `noData`, and ExportCompleted carries `noData: true`.
    async fn complete_without_data(
        &self,
        run: RunRecord,
        seq: u32,
        message: &str,
    ) -> Result<Handled, PipelineError> {
        let id = run.run_id.clone();
        let folder = layout::no_data_folder(&self.output_prefix_for(&run.request.partner)?, &run)?;
        let reason: String = message.chars().take(2000).collect();
        let t = self.now();
        let updated = self
            .ledger
            .update(&id, |r| {
                (r.state == RunState::Polling && r.polls == seq).then(|| {
                    r.polls = seq + 1;
                    r.no_data = true;
                    r.no_data_reason = Some(reason.clone());
                    r.output_folder = Some(folder.clone());
                    r.parts.clear();
                    r.last_status = Some("noData".into());
                    r.finish(RunState::Completed, None, t);
                })
            })
            .await?;
        let Some((run, ())) = updated else {
            return Ok(Handled::Ignored("run moved on meanwhile"));
        };
        tracing::info!(run_id = %id, reason = %reason, "Graph has no data for this export (code 5000); run completed without data");
        self.finish_completed(run).await?;
        Ok(Handled::Completed)
    }

    pub(super) async fn send_copy_jobs(&self, run: &RunRecord) -> Result<usize, PipelineError> {
        self.send_copy_jobs_as(run, None).await
    }

    /// Copy jobs for the parts not done yet; `repair` gives them fresh message ids.
    pub(super) async fn send_copy_jobs_as(
        &self,
        run: &RunRecord,
        repair: Option<u32>,
    ) -> Result<usize, PipelineError> {
        let jobs: Vec<CopyJob> = run
            .parts
            .iter()
            .filter(|p| !p.done)
            .map(|p| CopyJob::new(run.run_id.clone(), p.index))
            .collect();
        let n = jobs.len();
        // Sends that failed are tried again at once, a few rounds: with thousands of parts,
        // a brief queue outage would otherwise fail almost every fan-out, and the redelivered
        // poll would resend everything until its deliveries ran out.
        let mut pending = jobs;
        let mut last_error = None;
        for _ in 0..FANOUT_SEND_ROUNDS {
            let sent: Vec<(CopyJob, Result<(), QueueError>)> = futures::stream::iter(pending)
                .map(|job| async move {
                    let id = match repair {
                        Some(n) => job.repair_message_id(n),
                        None => job.message_id(),
                    };
                    let result = match OutgoingMessage::json(&job, id, None) {
                        Ok(msg) => self.queue.send(PARTITIONS_QUEUE, &msg).await,
                        Err(e) => Err(e.into()),
                    };
                    (job, result)
                })
                .buffer_unordered(FANOUT_CONCURRENCY)
                .collect()
                .await;
            pending = Vec::new();
            for (job, result) in sent {
                if let Err(e) = result {
                    pending.push(job);
                    last_error = Some(e);
                }
            }
            if pending.is_empty() {
                return Ok(n);
            }
        }
        Err(last_error.expect("a failed send left a job pending").into())
    }
}

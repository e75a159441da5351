//! Starting an export: claim the run in the ledger, ask Graph, schedule the first poll.

use time::OffsetDateTime;

use super::super::ledger::{Claim, LedgerError};
use super::super::messages::PollJob;
use super::super::notify;
use super::super::run::{FailureCode, RunId, RunRecord, RunState, Trigger};
use crate::billing::ExportRequest;
use crate::pipeline::messages::OPERATIONS_QUEUE;
use crate::pipeline::ports::queue::{OutgoingMessage, QueueError};

use super::{Pipeline, PipelineError, StartOutcome, STALL_GRACE};

impl Pipeline {
    /// Starts `request` unless the same export is already running.
    pub async fn start(
        &self,
        request: ExportRequest,
        trigger: Trigger,
    ) -> Result<StartOutcome, PipelineError> {
        self.start_planned(request, trigger, None).await
    }

    /// [`Pipeline::start`] with the billing month planning found for a billed request.
    pub async fn start_planned(
        &self,
        request: ExportRequest,
        trigger: Trigger,
        billing_month: Option<crate::billing::BillingMonth>,
    ) -> Result<StartOutcome, PipelineError> {
        request.validate()?;
        // Before the partner's first export: a token of the wrong tenant or without the
        // permission starts nothing (no run, no Graph call); the error names the fix.
        self.billing_for(&request.partner)?
            .check_access()
            .await
            .or_else(|e| if e.is_access_denied() { Err(e) } else { Ok(()) })?;
        let t = self.now();
        let mut rec = RunRecord::new(
            RunId::generate(t),
            request,
            trigger,
            t,
            t + self.cfg.poll_deadline,
        );
        if matches!(
            rec.request.scope,
            crate::billing::ExportScope::Invoice { .. }
        ) {
            rec.planned_month = billing_month.map(|m| m.compact());
        }
        match self.ledger.claim_request(&rec).await? {
            Claim::Active(existing) => {
                tracing::info!(run_id = %existing.run_id, request = %existing.request, "export already running; duplicate start ignored");
                // A run not submitted yet (its start is under way, died, or this call adopted
                // it): whoever takes the submit lease asks Graph, the others answer Duplicate.
                if existing.state == RunState::Starting
                    && existing.submit_lease_free(t, STALL_GRACE)
                {
                    return self.submit(&existing.run_id).await;
                }
                Ok(StartOutcome::Duplicate(existing))
            }
            Claim::New => {
                // False when a concurrent claimer adopted this run first: same id, same run.
                self.ledger.create_run(&rec).await?;
                tracing::info!(run_id = %rec.run_id, request = %rec.request, ?trigger, "export run claimed");
                self.submit(&rec.run_id).await
            }
        }
    }

    /// POSTs the export for a run in `Starting` and schedules its first poll.
    pub(super) async fn submit(&self, id: &RunId) -> Result<StartOutcome, PipelineError> {
        // Only the holder of a fresh lease POSTs: two starts of one export (a timer retry and
        // an HTTP POST, or the watchdog) must not create two Graph exports.
        let t = self.now();
        let leased = self
            .ledger
            .update(id, |r| {
                (r.state == RunState::Starting && r.submit_lease_free(t, STALL_GRACE)).then(|| {
                    r.submit_lease_at = Some(t);
                    r.submissions += 1;
                })
            })
            .await?;
        let Some((run, ())) = leased else {
            return self.duplicate_of(id).await;
        };
        match self
            .billing_for(&run.request.partner)?
            .start_export(&run.request)
            .await
        {
            Ok(started) => {
                let at = self
                    .cfg
                    .poll
                    .next_poll(&run, started.retry_after, self.now());
                let op = started.operation_url.to_string();
                let updated = self
                    .ledger
                    .update(id, |r| {
                        (r.state == RunState::Starting).then(|| {
                            r.submit_lease_at = None;
                            r.state = RunState::Polling;
                            r.operation_url = Some(op.clone());
                            r.next_poll_at = Some(at);
                        })
                    })
                    .await?;
                let Some((run, ())) = updated else {
                    // Someone else submitted it meanwhile.
                    return self.duplicate_of(id).await;
                };
                self.send_poll(&PollJob::new(id.clone(), run.polls), at)
                    .await?;
                tracing::info!(run_id = %id, next_poll_at = %at, "export started; first poll scheduled");
                let run = self.announce_started(run).await;
                Ok(StartOutcome::Started(Box::new(run)))
            }
            Err(e) if e.is_transient() => {
                // Give the lease back so the next start (timer retry, watchdog) can try again.
                self.ledger
                    .update(id, |r| r.submit_lease_at.take().map(|_| ()))
                    .await?;
                Err(e.into())
            }
            Err(e) => {
                let run = self
                    .fail_run(id, FailureCode::Rejected, &e.to_string())
                    .await?
                    .unwrap_or(run);
                Ok(StartOutcome::Rejected(Box::new(run)))
            }
        }
    }

    /// The run as it stands, as the answer to a start that found it already under way.
    async fn duplicate_of(&self, id: &RunId) -> Result<StartOutcome, PipelineError> {
        let cur = self
            .ledger
            .get(id)
            .await?
            .ok_or_else(|| LedgerError::UnknownRun(id.clone()))?;
        Ok(StartOutcome::Duplicate(Box::new(cur)))
    }

    pub(super) async fn announce_started(&self, run: RunRecord) -> RunRecord {
        let ev = self.with_partner_tenant(&run, notify::started(&self.cfg.event_source, &run));
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

    pub(super) async fn send_poll(
        &self,
        job: &PollJob,
        at: OffsetDateTime,
    ) -> Result<(), QueueError> {
        self.send_poll_as(job, job.message_id(), at).await
    }

    pub(super) async fn send_poll_as(
        &self,
        job: &PollJob,
        message_id: String,
        at: OffsetDateTime,
    ) -> Result<(), QueueError> {
        let msg = OutgoingMessage::json(job, message_id, Some(at))?;
        self.queue.send(OPERATIONS_QUEUE, &msg).await
    }
}

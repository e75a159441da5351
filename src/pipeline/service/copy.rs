//! Copying one partition, and the fan-in that completes the run (manifest, final event).

use super::super::fanin::{apply_results, PartResult, Shards};
use super::super::layout;
use super::super::messages::{CopyJob, PARTITIONS_QUEUE};
use super::super::notify;
use super::super::run::{Failure, FailureCode, PartRecord, RunId, RunRecord, RunState};
use crate::pipeline::ports::events::CloudEvent;
use crate::pipeline::ports::queue::OutgoingMessage;
use crate::pipeline::ports::storage::{CopyMethod, CopyOutcome, ObjectPath, SourceIdentity};

use super::{Handled, Pipeline, PipelineError, FINISH_CLAIM_TTL};

impl Pipeline {
    pub async fn handle_copy(
        &self,
        job: &CopyJob,
        delivery_count: u32,
    ) -> Result<Handled, PipelineError> {
        let Some(run) = self.copying_run(&job.run_id).await? else {
            tracing::warn!(run_id = %job.run_id, "copy job for a run the ledger does not know; dropped");
            return Ok(Handled::Ignored("unknown run"));
        };
        if run.state.is_terminal() {
            return self
                .resume_finish(RunRecord::clone(&run), delivery_count)
                .await;
        }
        if run.state != RunState::Copying {
            return Ok(Handled::Ignored("run not copying"));
        }
        let Some(part) = run.parts.get(job.part as usize).cloned() else {
            tracing::error!(run_id = %job.run_id, part = job.part, "copy job names a part the run does not have; dropped");
            return Ok(Handled::Ignored("no such part"));
        };
        if self.ledger.part_result(&run, part.index).await?.is_some() {
            // Copied before (a redelivery, or the watchdog's resend): make sure what follows
            // the copy happened too, then stop.
            return self.fan_in_from(&run, part.index, delivery_count).await;
        }
        let Some(expected_etag) = run.manifest.as_ref().map(|m| m.etag.clone()) else {
            return Ok(Handled::Ignored("run has no manifest"));
        };
        let identity = SourceIdentity {
            manifest_etag: expected_etag,
            blob_name: part.name.clone(),
        };
        let copied = self.copy_source(&run, &part, &identity).await;
        let outcome = match copied {
            Ok(Some(outcome)) => outcome,
            Ok(None) => return Ok(Handled::Failed),
            Err(e) => {
                return self
                    .retry_or_fail(&run, job, delivery_count, "copied", e)
                    .await
            }
        };
        tracing::info!(run_id = %run.run_id, part = part.index, bytes = outcome.bytes, rows = ?outcome.rows, method = ?outcome.method, "partition copied");
        let skipped = outcome.method == CopyMethod::Skipped;
        let mut result = PartResult::from(&outcome);
        if self.cfg.formats.parquet {
            // Part of the copy: a part is done only with its derived files, so a failure here
            // is retried (the copy itself is then skipped) and, past the attempts, fails the run.
            match self.convert_part(&run, &part).await {
                Ok(c) => result.converted = Some(c),
                Err(e) => {
                    return self
                        .retry_or_fail(&run, job, delivery_count, "converted", e)
                        .await
                }
            }
        }
        let shard_full = self.ledger.record_part(&run, part.index, &result).await?;
        if !shard_full {
            return Ok(Handled::Copied {
                part: part.index,
                skipped,
            });
        }
        match self.fan_in_from(&run, part.index, delivery_count).await? {
            Handled::Completed => Ok(Handled::Completed),
            _ => Ok(Handled::Copied {
                part: part.index,
                skipped,
            }),
        }
    }

    /// A copy (or its conversion) failed. Bounded: past `max_copy_attempts` the run fails
    /// with `ExportFailed` before Service Bus would dead-letter the message and leave the run
    /// `Copying`. Before that, the copy is sent again after a backoff instead of redelivered
    /// at once, so a token blip or a storage 5xx lasting seconds spends one attempt, not all.
    async fn retry_or_fail(
        &self,
        run: &RunRecord,
        job: &CopyJob,
        delivery_count: u32,
        what: &str,
        e: PipelineError,
    ) -> Result<Handled, PipelineError> {
        // Redeliveries (a crash, a lost lock) count as attempts too.
        let attempts = job.attempt + delivery_count.max(1);
        if attempts >= self.cfg.max_copy_attempts {
            let name = run.parts.get(job.part as usize).map_or("?", |p| &p.name);
            let msg = format!("partition {name} could not be {what} in {attempts} attempts: {e}");
            self.fail_run(&run.run_id, FailureCode::CopyFailed, &msg)
                .await?;
            return Ok(Handled::Failed);
        }
        let retry = job.retry();
        let at = self.now() + copy_backoff(job.attempt);
        tracing::warn!(run_id = %run.run_id, part = job.part, attempt = attempts, error = %e, retry_at = %at, "partition not {what}; trying again after a backoff");
        let msg = OutgoingMessage::json(&retry, retry.message_id(), Some(at))
            .map_err(|e| PipelineError::Source(e.to_string()))?;
        match self.queue.send(PARTITIONS_QUEUE, &msg).await {
            Ok(()) => Ok(Handled::Rescheduled),
            // The retry could not be queued: let the host redeliver this one instead.
            Err(_) => Err(e),
        }
    }

    /// Copies `part` from the source manifest (fetched again once if the SAS has expired);
    /// `None` when the source changed, which fails the run.
    async fn copy_source(
        &self,
        run: &RunRecord,
        part: &PartRecord,
        identity: &SourceIdentity,
    ) -> Result<Option<CopyOutcome>, PipelineError> {
        let expected_etag = &identity.manifest_etag;
        let mut refused: Option<std::sync::Arc<crate::billing::Manifest>> = None;
        loop {
            let manifest = self.manifest_for(run, refused.as_ref()).await?;
            if manifest.etag != *expected_etag {
                let msg = format!(
                    "the source data changed while copying (eTag {expected_etag} became {}); start the export again",
                    manifest.etag
                );
                self.fail_run(&run.run_id, FailureCode::SourceChanged, &msg)
                    .await?;
                return Ok(None);
            }
            // Parts are numbered in manifest order: look there first, not through every blob.
            let blob = manifest
                .blobs
                .get(part.index as usize)
                .filter(|b| b.name == part.name)
                .or_else(|| manifest.blobs.iter().find(|b| b.name == part.name));
            let Some(blob) = blob else {
                let msg = format!(
                    "partition {} is no longer in the source manifest",
                    part.name
                );
                self.fail_run(&run.run_id, FailureCode::SourceChanged, &msg)
                    .await?;
                return Ok(None);
            };
            let url = manifest.blob_url(blob).map_err(|e| {
                PipelineError::Source(format!("bad blob URL for {}: {e}", part.name))
            })?;
            match self.dest.copy_from_url(&url, &part.dest, identity).await {
                Err(e) if e.is_sas_expired() && refused.is_none() => {
                    tracing::warn!(run_id = %run.run_id, part = part.index, "source refused the SAS; fetching a fresh manifest");
                    refused = Some(manifest);
                }
                other => return Ok(Some(other?)),
            }
        }
    }

    /// After part `index` is recorded: completes its shard if it holds all its parts, and the
    /// run if that was the last shard. Idempotent, so it also finishes what a crash between
    /// these steps left undone.
    ///
    /// Only the call that added the last shard folds the run (one read per marker, once). Any
    /// other call that sees every shard complete (a duplicate, a resend, an instance whose
    /// cached record is stale) reads the run record only: a run that has moved on is dropped
    /// from the cache; a redelivered message finishes a run whose folder crashed; anything else
    /// is left to the folder or, if it died, to the watchdog.
    pub(super) async fn fan_in_from(
        &self,
        run: &RunRecord,
        index: u32,
        delivery_count: u32,
    ) -> Result<Handled, PipelineError> {
        let shard = Shards::of(run).shard_of(index);
        if !self.ledger.shard_complete(run, shard).await? {
            return Ok(Handled::Ignored("part already copied"));
        }
        let completion = self.ledger.complete_shard(run, shard).await?;
        if !completion.all {
            return Ok(Handled::Ignored("part already copied"));
        }
        if !completion.added {
            let current = self.ledger.get(&run.run_id).await?;
            if current
                .as_ref()
                .is_none_or(|r| r.state != RunState::Copying)
            {
                self.forget_manifest(&run.run_id);
                return Ok(Handled::Ignored("run already finished"));
            }
            if delivery_count <= 1 {
                return Ok(Handled::Ignored("finisher at work"));
            }
        }
        self.fold_and_finish(run).await
    }

    /// Every shard is complete: folds all part results into the run record once, completes
    /// the run, and sends the final event.
    pub(super) async fn fold_and_finish(&self, run: &RunRecord) -> Result<Handled, PipelineError> {
        let (results, _) = self.ledger.part_results(run).await?;
        let t = self.now();
        let updated = self
            .ledger
            .update(&run.run_id, |r| {
                if r.state != RunState::Copying {
                    return None;
                }
                apply_results(r, &results);
                r.parts.iter().all(|p| p.done).then(|| {
                    r.finish(RunState::Completed, None, t);
                })
            })
            .await?;
        match updated {
            Some((run, ())) => {
                self.finish_completed(run).await?;
                Ok(Handled::Completed)
            }
            None => Ok(Handled::Ignored("run already finished")),
        }
    }

    /// A terminal run whose final event was claimed but never sent (the finisher crashed):
    /// a redelivered message, or a long-stale claim, finishes it.
    pub(super) async fn resume_finish(
        &self,
        run: RunRecord,
        delivery_count: u32,
    ) -> Result<Handled, PipelineError> {
        if run.final_event_sent {
            return Ok(Handled::Ignored("run finished"));
        }
        let stale = run
            .finish_claimed_at
            .is_none_or(|c| self.now() - c > FINISH_CLAIM_TTL);
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

    pub(super) async fn finish_completed(&self, run: RunRecord) -> Result<(), PipelineError> {
        let (folder, manifest_path, published) = if run.landed {
            // Landed before; the final event is what is left to send.
            self.landed_documents(&run)?
        } else {
            match self.land(&run).await {
                Ok(landed) => {
                    self.ledger
                        .update(&run.run_id, |r| (!r.landed).then(|| r.landed = true))
                        .await?;
                    landed
                }
                Err(e) => return self.landing_failed(run, e).await,
            }
        };
        let ev = notify::completed(
            &self.cfg.event_source,
            &run,
            &self.dest.locate(&folder),
            &self.dest.locate(&manifest_path),
            published
                .pointer
                .as_ref()
                .map(|c| self.dest.locate(c))
                .as_deref(),
            published.retention,
        );
        // The data is landed: the completion goes out now, and the invoice check and hubs
        // landing follow as their own step (`follow_up`), never holding it up.
        let t = self.now();
        let follow_up = self.first_follow_up(&run, t);
        let claimed = self.publish_final_with(&run, ev, follow_up).await?;
        self.forget_manifest(&run.run_id);
        tracing::info!(run_id = %run.run_id, blobs = run.parts.len(), bytes = run.bytes_copied(), rows = ?run.rows_copied(), "export run completed");
        if claimed {
            self.follow_up(&run, t).await;
        }
        Ok(())
    }

    /// A completed run's own documents: `_manifest.json` beside the data, then `_current.json`
    /// (with retention). What a reader needs before the data counts as landed.
    async fn land(
        &self,
        run: &RunRecord,
    ) -> Result<(ObjectPath, ObjectPath, super::current::Published), PipelineError> {
        let (folder, manifest_path, _) = self.landed_documents(run)?;
        let doc = layout::run_manifest(run)
            .ok_or_else(|| PipelineError::Source("completed run has no manifest".into()))?;
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| PipelineError::Source(e.to_string()))?;
        self.dest
            .put_bytes(&manifest_path, bytes.into(), "application/json")
            .await?;
        let published = self.publish_current(run).await?;
        Ok((folder, manifest_path, published))
    }

    /// Where a completed run's documents are (written or to be written).
    fn landed_documents(
        &self,
        run: &RunRecord,
    ) -> Result<(ObjectPath, ObjectPath, super::current::Published), PipelineError> {
        let folder = run
            .output_folder
            .clone()
            .ok_or_else(|| PipelineError::Source("completed run has no output folder".into()))?;
        let manifest_path = folder.join(layout::RUN_MANIFEST_NAME)?;
        let pointer = super::super::current::CurrentPointer::for_run(run, self.now())
            .map(|p| p.path())
            .transpose()?;
        Ok((
            folder,
            manifest_path,
            super::current::Published {
                pointer,
                retention: None,
            },
        ))
    }

    /// Landing a completed run's documents failed. Retried (redelivery, then the watchdog)
    /// up to `MAX_LANDING_ATTEMPTS`; then the run fails as `landingFailed` with
    /// `ExportFailed`, so a permanent refusal (an immutability policy, a deleted container)
    /// ends with a final event instead of retrying forever.
    async fn landing_failed(&self, run: RunRecord, e: PipelineError) -> Result<(), PipelineError> {
        let t = self.now();
        let message = format!(
            "every partition was copied, but the run's _manifest.json or _current.json could not be written: {e}"
        );
        let updated = self
            .ledger
            .update(&run.run_id, |r| {
                // Landed by another finisher (whose event may be out): not a landing failure.
                if r.state != RunState::Completed || r.final_event_sent || r.landed {
                    return None;
                }
                r.landing_attempts += 1;
                let give_up = r.landing_attempts >= MAX_LANDING_ATTEMPTS;
                if give_up {
                    let failure = Failure {
                        code: FailureCode::LandingFailed,
                        message: message.chars().take(2000).collect(),
                        at: t,
                    };
                    // Terminal since it completed: the end of its life does not move.
                    let ended = r.finished_at;
                    r.finish(RunState::Failed, Some(failure), t);
                    r.finished_at = ended.or(Some(t));
                }
                Some(give_up)
            })
            .await?;
        match updated {
            Some((failed, true)) => {
                tracing::error!(run_id = %run.run_id, error = %e, "landing the completed run failed for good; the run fails");
                self.publish_final(&failed, notify::failed(&self.cfg.event_source, &failed))
                    .await
            }
            _ => Err(e),
        }
    }

    pub(super) async fn publish_final(
        &self,
        run: &RunRecord,
        ev: CloudEvent,
    ) -> Result<(), PipelineError> {
        self.publish_final_with(run, ev, None).await.map(|_| ())
    }

    /// Publishes the final event and records it sent, with the run's follow-up when it has
    /// one. True when this call recorded the follow-up (so it runs the first attempt).
    async fn publish_final_with(
        &self,
        run: &RunRecord,
        ev: CloudEvent,
        follow_up: Option<super::super::run::FollowUp>,
    ) -> Result<bool, PipelineError> {
        let ev = self.with_partner_tenant(run, ev);
        self.events.publish(&[ev]).await?;
        let updated = self
            .ledger
            .update(&run.run_id, |r| {
                if r.final_event_sent {
                    return None;
                }
                r.final_event_sent = true;
                r.follow_up = follow_up.clone();
                Some(follow_up.is_some())
            })
            .await?;
        Ok(updated.is_some_and(|(_, claimed)| claimed))
    }

    /// Moves a run to `Failed` (once) and announces it. Returns the failed record if this call did it.
    pub(super) async fn fail_run(
        &self,
        id: &RunId,
        code: FailureCode,
        message: &str,
    ) -> Result<Option<RunRecord>, PipelineError> {
        let t = self.now();
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
}

/// Wait before a copy's next attempt: 10 s, 30 s, 90 s, 270 s; together under the watchdog's
/// stall period, so a retried copy is not also resent as stalled.
fn copy_backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_secs(10 * 3u64.pow(attempt.min(3)))
}

/// Attempts to write a completed run's `_manifest.json` and `_current.json` before the run
/// fails as `landingFailed` (each watchdog pass or redelivery is one).
pub const MAX_LANDING_ATTEMPTS: u32 = 5;

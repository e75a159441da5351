//! Copying one partition, and the fan-in that completes the run (manifest, final event).

use super::super::fanin::{apply_results, PartResult, Shards};
use super::super::layout;
use super::super::messages::CopyJob;
use super::super::notify;
use super::super::run::{Failure, FailureCode, PartRecord, RunId, RunRecord, RunState};
use crate::pipeline::ports::events::CloudEvent;
use crate::pipeline::ports::storage::{CopyMethod, CopyOutcome, SourceIdentity};

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
            // Bounded: a partition that keeps failing fails its run (with ExportFailed) before
            // Service Bus would dead-letter the message and leave the run `Copying` forever.
            Err(e) if delivery_count >= self.cfg.max_copy_attempts => {
                let msg = format!(
                    "partition {} could not be copied in {delivery_count} attempts: {e}",
                    part.name
                );
                self.fail_run(&run.run_id, FailureCode::CopyFailed, &msg)
                    .await?;
                return Ok(Handled::Failed);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(run_id = %run.run_id, part = part.index, bytes = outcome.bytes, rows = ?outcome.rows, method = ?outcome.method, "partition copied");
        let skipped = outcome.method == CopyMethod::Skipped;
        let mut result = PartResult::from(&outcome);
        if self.cfg.formats.parquet {
            // Part of the copy: a part is done only with its derived files, so a failure here
            // is retried (the copy itself is then skipped) and, past the attempts, fails the run.
            match self.convert_part(&run, &part).await {
                Ok(c) => result.converted = Some(c),
                Err(e) if delivery_count >= self.cfg.max_copy_attempts => {
                    let msg = format!(
                        "partition {} could not be converted in {delivery_count} attempts: {e}",
                        part.name
                    );
                    self.fail_run(&run.run_id, FailureCode::CopyFailed, &msg)
                        .await?;
                    return Ok(Handled::Failed);
                }
                Err(e) => return Err(e),
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

    /// Copies `part` from the source manifest (fetched again once if the SAS has expired);
    /// `None` when the source changed, which fails the run.
    async fn copy_source(
        &self,
        run: &RunRecord,
        part: &PartRecord,
        identity: &SourceIdentity,
    ) -> Result<Option<CopyOutcome>, PipelineError> {
        let expected_etag = &identity.manifest_etag;
        let mut refreshed = false;
        loop {
            let manifest = self.manifest_for(run, refreshed).await?;
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
                Err(e) if e.is_sas_expired() && !refreshed => {
                    tracing::warn!(run_id = %run.run_id, part = part.index, "source refused the SAS; fetching a fresh manifest");
                    self.forget_manifest(&run.run_id);
                    refreshed = true;
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
        let current = self.publish_current(&run).await?;
        self.check_and_land(&run).await?;
        let ev = notify::completed(
            &self.cfg.event_source,
            &run,
            &self.dest.locate(&folder),
            &self.dest.locate(&manifest_path),
            current.as_ref().map(|c| self.dest.locate(c)).as_deref(),
        );
        self.publish_final(&run, ev).await?;
        self.forget_manifest(&run.run_id);
        tracing::info!(run_id = %run.run_id, blobs = run.parts.len(), bytes = run.bytes_copied(), rows = ?run.rows_copied(), "export run completed");
        Ok(())
    }

    pub(super) async fn publish_final(
        &self,
        run: &RunRecord,
        ev: CloudEvent,
    ) -> Result<(), PipelineError> {
        let ev = self.with_partner_tenant(run, ev);
        self.events.publish(&[ev]).await?;
        self.ledger
            .update(&run.run_id, |r| {
                (!r.final_event_sent).then(|| r.final_event_sent = true)
            })
            .await?;
        Ok(())
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

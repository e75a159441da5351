//! Moving an export's `_current.json` to a completed run (docs: `pipeline::current`).

use super::super::current::{
    CurrentDoc, CurrentPointer, SupersededMarker, SupersededVersion, SUPERSEDED_MARKER_NAME,
};
use super::super::run::RunRecord;
use super::{Pipeline, PipelineError};
use crate::contracts::events::RetentionOutcome;
use crate::pipeline::ports::storage::ObjectPath;

/// Where `_current.json` went, and what retention deleted on the way.
#[derive(Debug, Default)]
pub(super) struct Published {
    pub pointer: Option<ObjectPath>,
    pub retention: Option<RetentionOutcome>,
}

/// Rewrites after a concurrent finisher moved the pointer meanwhile; two suffice in practice
/// (each round only follows a newer run), the bound keeps a pathological store from looping.
const MAX_POINTER_ROUNDS: u32 = 8;

impl Pipeline {
    /// Makes `run` the current version of its export unless a newer run already is. Returns
    /// the pointer's location. Idempotent: a retried finish writes the same documents again.
    /// Then deletes the superseded versions retention no longer keeps.
    pub(super) async fn publish_current(
        &self,
        run: &RunRecord,
    ) -> Result<Published, PipelineError> {
        let Some(candidate) = CurrentPointer::for_run(run, self.now()) else {
            return Ok(Published::default());
        };
        let path = candidate.path()?;
        let (mut held, replaced, doc) = self.ledger.advance_current(&candidate).await?;
        // The blob follows the ledger: write what the ledger holds, then check that it still
        // holds it. A slower finisher whose write lands after a newer one's sees the change
        // and writes the newer pointer again, so the last write always names the newest run.
        for _ in 0..MAX_POINTER_ROUNDS {
            let body = serde_json::to_vec_pretty(&held)
                .map_err(|e| PipelineError::Source(e.to_string()))?;
            self.dest
                .put_bytes(&path, body.into(), "application/json")
                .await?;
            match self.ledger.current(&candidate.export_folder).await? {
                Some(now_held) if now_held != held => held = now_held,
                _ => break,
            }
        }
        if let Some(old) = replaced.filter(|old| old.folder != candidate.folder) {
            let marker = SupersededMarker {
                superseded_by: candidate.current_version.clone(),
                run_id: candidate.run_id.clone(),
                at: self.now(),
            };
            let body = serde_json::to_vec_pretty(&marker)
                .map_err(|e| PipelineError::Source(e.to_string()))?;
            self.dest
                .put_bytes(
                    &old.folder.join(SUPERSEDED_MARKER_NAME)?,
                    body.into(),
                    "application/json",
                )
                .await?;
            tracing::info!(run_id = %run.run_id, current = %candidate.current_version, superseded = %old.current_version, "current data version moved");
        }
        let retention = self.retire_expired(&candidate.export_folder, &doc).await;
        Ok(Published {
            pointer: Some(path),
            retention,
        })
    }

    /// Deletes the superseded versions retention no longer keeps, oldest first, and forgets
    /// each once it is gone. Never fails the run: the data is landed and current already; what
    /// is left is tried again at the export's next completion.
    async fn retire_expired(
        &self,
        export_folder: &ObjectPath,
        doc: &CurrentDoc,
    ) -> Option<RetentionOutcome> {
        let expired = doc.expired(self.cfg.retention);
        if expired.is_empty() {
            return None;
        }
        let mut outcome = RetentionOutcome {
            versions_kept: (doc.superseded.len() - expired.len()) as u32,
            ..Default::default()
        };
        let mut gone = Vec::new();
        for version in &expired {
            match self.delete_version(version).await {
                Ok(files) => {
                    outcome.versions_deleted += 1;
                    outcome.files_deleted += files;
                    gone.push(version.folder.clone());
                }
                Err(e) => {
                    tracing::warn!(folder = %version.folder, error = %e, "could not delete a superseded data version; retrying at the next completion");
                    outcome.versions_kept += 1;
                    outcome.error = Some(e.to_string());
                }
            }
        }
        if let Err(e) = self.ledger.forget_superseded(export_folder, &gone).await {
            // The folders are gone; a later pass deletes nothing and forgets them then.
            tracing::warn!(export = %export_folder, error = %e, "could not record deleted versions");
        }
        Some(outcome)
    }

    async fn delete_version(&self, version: &SupersededVersion) -> Result<u64, PipelineError> {
        let files = self.dest.delete_folder(&version.folder).await?;
        tracing::info!(folder = %version.folder, run_id = %version.run_id, files, "deleted a superseded data version (retention)");
        Ok(files)
    }
}

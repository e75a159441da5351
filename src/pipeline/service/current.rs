//! Moving an export's `_current.json` to a completed run (docs: `pipeline::current`).

use super::super::current::{CurrentPointer, SupersededMarker, SUPERSEDED_MARKER_NAME};
use super::super::run::RunRecord;
use super::{Pipeline, PipelineError};
use crate::pipeline::ports::storage::ObjectPath;

/// Rewrites after a concurrent finisher moved the pointer meanwhile; two suffice in practice
/// (each round only follows a newer run), the bound keeps a pathological store from looping.
const MAX_POINTER_ROUNDS: u32 = 8;

impl Pipeline {
    /// Makes `run` the current version of its export unless a newer run already is. Returns
    /// the pointer's location. Idempotent: a retried finish writes the same documents again.
    pub(super) async fn publish_current(
        &self,
        run: &RunRecord,
    ) -> Result<Option<ObjectPath>, PipelineError> {
        let Some(candidate) = CurrentPointer::for_run(run, self.now()) else {
            return Ok(None);
        };
        let path = candidate.path()?;
        let (mut held, replaced) = self.ledger.advance_current(&candidate).await?;
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
        Ok(Some(path))
    }
}

//! The status API's view of a run: progress while running, files and counts when done, the
//! reason when failed. Never includes a SAS or token (the ledger holds none).

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::run::{RunRecord, RunState};
use crate::adapters::storage::Destination;

fn ts(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

pub fn view(run: &RunRecord, dest: &dyn Destination) -> Value {
    let mut v = json!({
        "runId": run.run_id,
        "status": run.state.as_str(),
        "request": run.request,
        "trigger": run.trigger,
        "createdAt": ts(run.created_at),
        "updatedAt": ts(run.updated_at),
        "progress": {
            "polls": run.polls,
            "restarts": run.restarts,
            "lastOperationStatus": run.last_status,
            "nextPollAt": run.next_poll_at.map(ts),
            "partsDone": run.parts_done(),
            "partsTotal": run.parts.len(),
            "bytesCopied": run.bytes_copied(),
        },
    });
    match run.state {
        RunState::Completed => {
            let folder = run.output_folder.as_ref().map(|f| dest.locate(f));
            let manifest = run
                .output_folder
                .as_ref()
                .and_then(|f| f.join(super::layout::RUN_MANIFEST_NAME).ok())
                .map(|p| dest.locate(&p));
            v["result"] = json!({
                "folder": folder,
                "manifest": manifest,
                "sourceETag": run.manifest.as_ref().map(|m| m.etag.clone()),
                "noData": run.no_data,
                "noDataReason": run.no_data_reason,
                "billingMonth": super::layout::run_billing_month(run),
                "blobCount": run.parts.len(),
                "byteCount": run.bytes_copied(),
                "rowCount": run.rows_copied(),
                "files": run.parts.iter().map(|p| json!({
                    "path": dest.locate(&p.dest),
                    "bytes": p.bytes,
                    "rows": p.rows,
                    "md5": p.md5,
                })).collect::<Vec<_>>(),
                "completedAt": run.finished_at.map(ts),
            });
        }
        RunState::Failed => {
            v["failure"] = json!({
                "code": run.failure.as_ref().map(|f| f.code.clone()),
                "reason": run.failure.as_ref().map(|f| f.message.clone()),
                "at": run.failure.as_ref().map(|f| ts(f.at)),
            });
        }
        _ => {}
    }
    v
}

/// A one-line summary for lists.
pub fn brief(run: &RunRecord) -> Value {
    json!({
        "runId": run.run_id,
        "status": run.state.as_str(),
        "request": run.request,
        "createdAt": ts(run.created_at),
        "noData": run.no_data,
        "billingMonth": super::layout::run_billing_month(run),
        "partsDone": run.parts_done(),
        "partsTotal": run.parts.len(),
    })
}

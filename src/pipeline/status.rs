//! The status API's view of runs (`contracts::status`), built from run records: progress while
//! running, files and counts when done, the reason when failed; and which runs a list shows.
//! Never includes a SAS or token (the ledger holds none).

use super::run::{RunRecord, RunState};
use crate::contracts::status::{
    ListQuery, RunBrief, RunFailure, RunFile, RunProgress, RunResult, RunView, StateFilter,
};
use crate::pipeline::ports::storage::Destination;

pub fn view(run: &RunRecord, dest: &dyn Destination) -> RunView {
    let result = (run.state == RunState::Completed).then(|| RunResult {
        folder: run.output_folder.as_ref().map(|f| dest.locate(f)),
        manifest: run
            .output_folder
            .as_ref()
            .and_then(|f| f.join(super::layout::RUN_MANIFEST_NAME).ok())
            .map(|p| dest.locate(&p)),
        source_etag: run.manifest.as_ref().map(|m| m.etag.clone()),
        no_data: run.no_data,
        no_data_reason: run.no_data_reason.clone(),
        billing_month: super::layout::run_billing_month(run),
        blob_count: run.parts.len(),
        byte_count: run.bytes_copied(),
        row_count: run.rows_copied(),
        files: run
            .parts
            .iter()
            .map(|p| RunFile {
                path: dest.locate(&p.dest),
                bytes: p.bytes,
                rows: p.rows,
                md5: p.md5.clone(),
            })
            .collect(),
        completed_at: run.finished_at,
        follow_up: run.follow_up.clone(),
    });
    let failure = (run.state == RunState::Failed).then(|| RunFailure {
        code: run.failure.as_ref().map(|f| f.code.clone()),
        reason: run.failure.as_ref().map(|f| f.message.clone()),
        at: run.failure.as_ref().map(|f| f.at),
    });
    RunView {
        run_id: run.run_id.clone(),
        status: run.state,
        partner: run.request.partner.clone(),
        request: run.request.clone(),
        trigger: run.trigger,
        created_at: run.created_at,
        updated_at: run.updated_at,
        progress: RunProgress {
            polls: run.polls,
            restarts: run.restarts,
            last_operation_status: run.last_status.clone(),
            next_poll_at: run.next_poll_at,
            parts_done: run.parts_done(),
            parts_total: run.parts.len(),
            bytes_copied: run.bytes_copied(),
        },
        result,
        failure,
    }
}

/// A one-line summary for lists.
pub fn brief(run: &RunRecord) -> RunBrief {
    RunBrief {
        run_id: run.run_id.clone(),
        status: run.state,
        partner: run.request.partner.clone(),
        request: run.request.clone(),
        created_at: run.created_at,
        no_data: run.no_data,
        billing_month: super::layout::run_billing_month(run),
        parts_done: run.parts_done(),
        parts_total: run.parts.len(),
    }
}

pub fn matches(query: &ListQuery, run: &RunRecord) -> bool {
    let state_ok = match query.state {
        None => true,
        Some(StateFilter::NoData) => run.state == RunState::Completed && run.no_data,
        Some(s) => run.state.as_str() == s.as_str(),
    };
    state_ok
        && query
            .partner
            .as_ref()
            .is_none_or(|p| &run.request.partner == p)
        && query.kind.is_none_or(|k| run.request.kind == k)
        && query.billing_month.is_none_or(|m| {
            super::layout::run_billing_month(run).as_deref() == Some(m.compact().as_str())
        })
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub runs: Vec<RunBrief>,
    /// Runs that matched.
    pub total: usize,
    /// The query of the next page, while more match.
    pub next: Option<ListQuery>,
}

/// The page of `runs` (newest first) that `query` selects.
pub fn page(query: &ListQuery, runs: &[RunRecord]) -> Page {
    let matching: Vec<&RunRecord> = runs.iter().filter(|r| matches(query, r)).collect();
    let total = matching.len();
    let runs: Vec<RunBrief> = matching
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|r| brief(r))
        .collect();
    let next = (query.offset + runs.len() < total).then(|| ListQuery {
        offset: query.offset + runs.len(),
        ..query.clone()
    });
    Page { runs, total, next }
}

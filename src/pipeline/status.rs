//! The status API's view of runs (`contracts::status`), built from run records: progress while
//! running, files and counts when done, the reason when failed; and which runs a list shows.
//! Never includes a SAS or token (the ledger holds none).

use time::OffsetDateTime;

use super::ledger::{Ledger, LedgerError};
use super::open_runs::{month_of, previous_month};
use super::run::{RunId, RunRecord, RunState};
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
    /// Runs that matched, when the listing reached the end of them from the newest run.
    pub total: Option<usize>,
    /// The query of the next page, while more may match.
    pub next: Option<ListQuery>,
}

/// Most run records one page reads: a filter that matches rarely answers a short page with a
/// `next` cursor instead of reading all history in one request.
pub const MAX_SCAN: usize = 1000;

/// Collects one page from runs offered newest first (by run id, which starts with the
/// creation time).
struct Pager<'q> {
    query: &'q ListQuery,
    skipped: usize,
    runs: Vec<RunBrief>,
    scanned: usize,
    last_scanned: Option<RunId>,
    /// A match beyond the page was seen: there is a next page.
    more: bool,
}

impl<'q> Pager<'q> {
    fn new(query: &'q ListQuery) -> Self {
        Self {
            query,
            skipped: 0,
            runs: Vec::new(),
            scanned: 0,
            last_scanned: None,
            more: false,
        }
    }

    /// Whether a run with this id is still wanted (older than the cursor, page not full).
    fn wants(&self, id: &RunId) -> bool {
        !self.more && self.query.after.as_ref().is_none_or(|a| id < a)
    }

    fn out_of_budget(&self) -> bool {
        self.scanned >= MAX_SCAN
    }

    fn offer(&mut self, run: &RunRecord) {
        self.scanned += 1;
        self.last_scanned = Some(run.run_id.clone());
        if !matches(self.query, run) {
            return;
        }
        if self.skipped < self.query.offset {
            self.skipped += 1;
        } else if self.runs.len() < self.query.limit {
            self.runs.push(brief(run));
        } else {
            self.more = true;
        }
    }

    /// The page; `exhausted` when every candidate run was offered.
    fn finish(self, exhausted: bool) -> Page {
        let cursor = if self.more {
            self.runs.last().map(|r| r.run_id.clone())
        } else if !exhausted {
            // Out of budget: go on after the last run read, matching or not.
            self.last_scanned.clone()
        } else {
            None
        };
        let next = cursor.map(|after| ListQuery {
            offset: 0,
            after: Some(after),
            ..self.query.clone()
        });
        let complete = next.is_none() && self.query.after.is_none();
        Page {
            total: complete.then_some(self.skipped + self.runs.len()),
            runs: self.runs,
            next,
        }
    }
}

/// The page of `runs` that `query` selects, newest first.
pub fn page(query: &ListQuery, runs: &[RunRecord]) -> Page {
    let mut sorted: Vec<&RunRecord> = runs.iter().collect();
    sorted.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    let mut pager = Pager::new(query);
    for r in sorted {
        if pager.wants(&r.run_id) {
            pager.offer(r);
        }
    }
    let exhausted = !pager.more;
    pager.finish(exhausted)
}

/// The page `query` selects, read from the ledger: the open-run index for the running states,
/// else month by month from the newest, reading records only until the page is full (or
/// [`MAX_SCAN`] records were read). Its cost follows the page, not the ledger's history.
pub async fn list(
    ledger: &Ledger,
    query: &ListQuery,
    now: OffsetDateTime,
) -> Result<Page, LedgerError> {
    let index = ledger.open_index(now).await?;
    let mut pager = Pager::new(query);
    let running = matches!(
        query.state,
        Some(StateFilter::Starting | StateFilter::Polling | StateFilter::Copying)
    );
    if running {
        let mut ids = ledger.open_run_ids().await?;
        ids.reverse();
        let exhausted = offer_all(ledger, &mut pager, ids).await?;
        return Ok(pager.finish(exhausted));
    }
    let newest = query
        .after
        .as_ref()
        .and_then(|a| a.as_str().get(..6)?.parse::<u32>().ok())
        .unwrap_or_else(|| month_of(now + time::Duration::days(31)));
    let mut month = newest;
    while month >= index.earliest_month {
        let mut ids = ledger.run_ids_of_month(month).await?;
        ids.reverse();
        if !offer_all(ledger, &mut pager, ids).await? {
            return Ok(pager.finish(false));
        }
        month = previous_month(month);
    }
    Ok(pager.finish(true))
}

/// Offers `ids` (newest first) to the pager; `false` when it stopped before the end.
async fn offer_all(
    ledger: &Ledger,
    pager: &mut Pager<'_>,
    ids: Vec<RunId>,
) -> Result<bool, LedgerError> {
    for id in ids {
        if !pager.wants(&id) {
            if pager.more {
                return Ok(false);
            }
            continue;
        }
        if pager.out_of_budget() {
            return Ok(false);
        }
        match ledger.get(&id).await {
            Ok(Some(run)) => pager.offer(&run),
            Ok(None) => {}
            // One bad record never hides the others.
            Err(LedgerError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "run record skipped: unreadable");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(!pager.more)
}

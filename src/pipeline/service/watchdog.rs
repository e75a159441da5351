//! The watchdog: one pass over the ledger that finds every run which should have moved and has
//! not, and resumes it (new message ids, so duplicate detection does not drop the resend) or
//! fails it with a typed reason and `ExportFailed`; and that re-sends every final event that
//! was claimed but never published.
//!
//! With bounded copy attempts this gives the guarantee documented in docs/architecture.md:
//! every run reaches `Completed` or `Failed`, with its final event, within the poll deadline
//! plus `stall_after × (max_repairs + 1)` plus one watchdog period, whatever fails.

use serde::Serialize;
use time::OffsetDateTime;

use super::super::ledger::LedgerError;
use super::super::messages::PollJob;
use super::super::notify;
use super::super::run::{FailureCode, RunId, RunRecord, RunState};
use super::follow_up::is_due;
use super::{humanize, Pipeline, PipelineError, FINISH_CLAIM_TTL};

/// What one watchdog pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchdogReport {
    pub checked: usize,
    pub resubmitted: usize,
    pub polls_resent: usize,
    pub copies_resent: usize,
    pub failed: usize,
    pub final_events_resent: usize,
    /// Invoice checks / hubs landings of completed runs tried again (`follow_up`).
    pub follow_ups_retried: usize,
    /// Copying runs whose parts were all copied, folded and completed by the pass.
    pub finished: usize,
    /// Run records that could not be read or understood (logged with their keys).
    pub skipped: usize,
    /// Runs the pass could not handle this time (logged); the next pass tries again.
    pub errors: usize,
    /// Runs in the open-run index when the pass began.
    pub open: usize,
    /// Settled runs the pass took out of the open-run index.
    pub closed: usize,
    /// Open runs left for the next pass, which starts where this one stopped, because the
    /// pass ran out of its time budget.
    pub deferred: usize,
}

/// An open-run marker whose record never appeared (its creator crashed in between) is dropped
/// after this long; a creator that is merely slow has long written its record by then.
const ORPHAN_MARKER_AFTER: time::Duration = time::Duration::days(1);

/// What the watchdog decided for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    ResendFinalEvent,
    /// The invoice check or hubs landing after completion is due again.
    FollowUp,
    Fail(StallKind),
    Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StallKind {
    /// Still polling long after the poll deadline: the poll chain was lost.
    PastDeadline,
    /// Resumed `max_repairs` times without progress.
    NoProgress,
}

/// A number that grows whenever a run makes progress (a poll consumed, a part copied, a state
/// change), so consecutive repairs without progress can be counted.
fn progress_mark(run: &RunRecord) -> u64 {
    let state = match run.state {
        RunState::Starting => 0,
        RunState::Polling => 1,
        RunState::Copying => 2,
        RunState::Completed | RunState::Failed => 3,
    };
    (state << 56) + (u64::from(run.polls) << 28) + run.parts_done() as u64
}

impl Pipeline {
    fn verdict(
        &self,
        run: &RunRecord,
        copied_at: Option<OffsetDateTime>,
        t: OffsetDateTime,
    ) -> Verdict {
        let stall = self.cfg.stall_after;
        if run.state.is_terminal() {
            let claim_dead = run
                .finish_claimed_at
                .is_none_or(|c| t - c > FINISH_CLAIM_TTL);
            return if !run.final_event_sent && claim_dead {
                Verdict::ResendFinalEvent
            } else if run.final_event_sent && run.follow_up.as_ref().is_some_and(|f| is_due(f, t)) {
                Verdict::FollowUp
            } else {
                Verdict::Fine
            };
        }
        // Copies record their results in shard documents, not in the run record.
        let moved = run
            .repaired_at
            .into_iter()
            .chain(copied_at)
            .fold(run.updated_at, OffsetDateTime::max);
        let quiet_since = match run.state {
            // A poll waiting for a long Retry-After is not stalled until its time has passed.
            RunState::Polling => run.next_poll_at.map_or(moved, |at| at.max(moved)),
            _ => moved,
        };
        if t - quiet_since < stall {
            return Verdict::Fine;
        }
        if run.state == RunState::Polling && t > run.poll_deadline + stall {
            return Verdict::Fail(StallKind::PastDeadline);
        }
        let no_progress_since_repair = run.repair_mark == Some(progress_mark(run));
        if no_progress_since_repair && run.repairs >= self.cfg.max_repairs {
            return Verdict::Fail(StallKind::NoProgress);
        }
        Verdict::Resume
    }

    /// One pass over the ledger (the `Watchdog` timer function).
    pub async fn watchdog(&self) -> Result<WatchdogReport, PipelineError> {
        self.watchdog_at(self.now()).await
    }

    /// [`Pipeline::watchdog`] as if the clock said `t` (tests move time forward with it).
    ///
    /// The pass reads the open-run index, not every record: settled runs leave the index on
    /// the pass after they settle. It stops when its time budget is spent and the next pass
    /// starts after the last run it handled, so a long list is covered over several passes.
    pub async fn watchdog_at(&self, t: OffsetDateTime) -> Result<WatchdogReport, PipelineError> {
        let began = std::time::Instant::now();
        self.ledger.open_index(t).await?;
        let ids = self.ledger.open_run_ids().await?;
        let cursor = self.ledger.watchdog_cursor().await?;
        // Resume after the cursor, then wrap around to the runs before it.
        let split = cursor
            .as_ref()
            .map_or(0, |c| ids.partition_point(|id| id <= c));
        let order: Vec<&RunId> = ids[split..].iter().chain(&ids[..split]).collect();
        let mut report = WatchdogReport {
            open: ids.len(),
            ..WatchdogReport::default()
        };
        // The last run handled when the budget ran out: the next pass starts after it.
        let mut stopped_after = None;
        for (n, id) in order.iter().enumerate() {
            if n > 0 && began.elapsed() >= self.cfg.watchdog_budget {
                report.deferred = order.len() - n;
                stopped_after = Some(order[n - 1].clone());
                break;
            }
            if let Err(e) = self.watch_id(id, t, &mut report).await {
                report.errors += 1;
                tracing::warn!(run_id = %id, error = %e, "watchdog could not handle a run; next pass retries");
            }
        }
        if stopped_after.is_some() || cursor.is_some() {
            self.ledger.set_watchdog_cursor(stopped_after).await?;
        }
        let quiet = WatchdogReport {
            open: report.open,
            checked: report.checked,
            closed: report.closed,
            ..WatchdogReport::default()
        };
        if report != quiet {
            tracing::warn!(?report, "watchdog repaired runs");
        }
        Ok(report)
    }

    /// Reads one indexed run and hands it to [`Self::watch_one`], or takes it out of the index.
    async fn watch_id(
        &self,
        id: &RunId,
        t: OffsetDateTime,
        report: &mut WatchdogReport,
    ) -> Result<(), PipelineError> {
        let run = match self.ledger.get(id).await {
            Ok(Some(run)) => run,
            Ok(None) => {
                let orphaned = self
                    .ledger
                    .open_marker(id)
                    .await?
                    .is_none_or(|m| t - m.created_at > ORPHAN_MARKER_AFTER);
                if orphaned && self.ledger.close_open(id).await? {
                    tracing::warn!(run_id = %id, "open-run marker without a run record removed");
                }
                return Ok(());
            }
            // An unreadable record is reported and skipped: the other runs still get their pass.
            Err(LedgerError::Corrupt { key, reason }) => {
                tracing::warn!(%key, %reason, "run record skipped: unreadable");
                report.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        report.checked += 1;
        if run.is_settled() {
            if self.ledger.close_open(id).await? {
                report.closed += 1;
            }
            return Ok(());
        }
        self.watch_one(run, t, report).await
    }

    async fn watch_one(
        &self,
        mut run: RunRecord,
        t: OffsetDateTime,
        report: &mut WatchdogReport,
    ) -> Result<(), PipelineError> {
        let mut copied_at = None;
        if run.state == RunState::Copying {
            // The fan-in document and the markers of incomplete shards only.
            let progress = self.ledger.progress(&run).await?;
            progress.apply(&mut run);
            copied_at = progress.last_at;
        }
        match self.verdict(&run, copied_at, t) {
            Verdict::Fine => Ok(()),
            Verdict::ResendFinalEvent => {
                tracing::warn!(run_id = %run.run_id, "final event never published; sending it");
                match run.state {
                    RunState::Completed => self.finish_completed(run).await?,
                    _ => {
                        self.publish_final(&run, notify::failed(&self.cfg.event_source, &run))
                            .await?
                    }
                }
                report.final_events_resent += 1;
                Ok(())
            }
            Verdict::Fail(kind) => {
                let (code, msg) = match kind {
                    StallKind::PastDeadline => (
                        FailureCode::Deadline,
                        format!(
                            "the export was still polling {} after its deadline and its poll chain was lost",
                            humanize(self.cfg.stall_after)
                        ),
                    ),
                    StallKind::NoProgress => (
                        FailureCode::Stalled,
                        format!(
                            "no progress in {} state after {} resumptions by the watchdog",
                            run.state.as_str(),
                            run.repairs
                        ),
                    ),
                };
                if self.fail_run(&run.run_id, code, &msg).await?.is_some() {
                    report.failed += 1;
                }
                Ok(())
            }
            // Every part copied but nobody folded the run (its folder died): fold it here.
            Verdict::Resume
                if run.state == RunState::Copying && run.parts.iter().all(|p| p.done) =>
            {
                if self.fold_and_finish(&run).await? == super::Handled::Completed {
                    report.finished += 1;
                }
                Ok(())
            }
            Verdict::Resume => self.resume(run, t, report).await,
            Verdict::FollowUp => {
                if self.retry_follow_up(&run, t).await?.is_some() {
                    report.follow_ups_retried += 1;
                }
                Ok(())
            }
        }
    }

    /// Records the repair (which also restarts the stall clock), then sends what the run waits
    /// for with fresh message ids.
    async fn resume(
        &self,
        run: RunRecord,
        t: OffsetDateTime,
        report: &mut WatchdogReport,
    ) -> Result<(), PipelineError> {
        let mark = progress_mark(&run);
        let seen = run.write_id.clone();
        // The stored record does not hold the copied parts (their markers do): carry them
        // over, so only the parts without a marker are sent again.
        let copied: std::collections::BTreeSet<u32> = run
            .parts
            .iter()
            .filter(|p| p.done)
            .map(|p| p.index)
            .collect();
        let recorded = self
            .ledger
            .update(&run.run_id, |r| {
                // Only if nothing moved since we looked; otherwise the run is alive.
                (r.write_id == seen).then(|| {
                    r.repairs = if r.repair_mark == Some(mark) {
                        r.repairs + 1
                    } else {
                        1
                    };
                    r.repair_mark = Some(mark);
                    r.repaired_at = Some(t);
                    r.repairs
                })
            })
            .await?;
        let Some((mut run, repair)) = recorded else {
            return Ok(());
        };
        for p in &mut run.parts {
            p.done |= copied.contains(&p.index);
        }
        tracing::warn!(run_id = %run.run_id, state = run.state.as_str(), repair, "run stalled; watchdog resumes it");
        match run.state {
            RunState::Starting => {
                self.submit(&run.run_id).await?;
                report.resubmitted += 1;
            }
            RunState::Polling => {
                let job = PollJob::new(run.run_id.clone(), run.polls);
                self.send_poll_as(&job, job.repair_message_id(repair), t)
                    .await?;
                report.polls_resent += 1;
            }
            RunState::Copying => {
                report.copies_resent += self.send_copy_jobs_as(&run, Some(repair)).await?;
            }
            RunState::Completed | RunState::Failed => {}
        }
        Ok(())
    }
}

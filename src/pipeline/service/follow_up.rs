//! After `ExportCompleted`: the invoice check and the FinOps hubs landing, as one step with its
//! own bounded retries and its own outcome (`RunRecord::follow_up`, shown by the status API).
//! The completion never waits for it and never repeats because of it: a missing hubs
//! container or an unreadable invoice leaves the run completed, its event sent once, and the
//! step retried with backoff by the watchdog until it lands or gives up.

use std::time::Duration;

use time::OffsetDateTime;

use super::super::run::{FollowUp, FollowUpState, RunRecord};
use super::{Pipeline, PipelineError};

/// Attempts of one run's follow-up, counted as they start (a crashed attempt counts too).
pub const MAX_FOLLOW_UP_ATTEMPTS: u32 = 5;
/// How long an attempt under way holds the step before the watchdog may take it over.
pub(super) const FOLLOW_UP_LEASE: Duration = Duration::from_secs(600);
/// Wait before the second attempt; each further one waits twice as long (5, 10, 20, 40 min).
const FIRST_BACKOFF: Duration = Duration::from_secs(300);

fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF * 2u32.pow(attempts.saturating_sub(1).min(10))
}

impl Pipeline {
    /// The follow-up a completed run starts with, its first attempt claimed; `None` when
    /// there is nothing to follow up (no data, or no Parquet to check or land).
    pub(super) fn first_follow_up(&self, run: &RunRecord, t: OffsetDateTime) -> Option<FollowUp> {
        (!run.no_data && self.cfg.formats.parquet).then(|| FollowUp {
            state: FollowUpState::Pending,
            attempts: 1,
            next_attempt_at: Some(t + FOLLOW_UP_LEASE),
            error: None,
        })
    }

    /// Runs the claimed attempt and records its outcome. Never fails: what goes wrong is the
    /// follow-up's own outcome.
    pub(super) async fn follow_up(&self, run: &RunRecord, t: OffsetDateTime) -> Option<FollowUp> {
        let result = self.check_and_land(run).await;
        let recorded = self
            .ledger
            .update(&run.run_id, |r| {
                let f = r.follow_up.as_mut()?;
                if f.state != FollowUpState::Pending {
                    return None;
                }
                settle(f, &result, t);
                Some(f.clone())
            })
            .await;
        let f = match recorded {
            Ok(Some((_, f))) => f,
            Ok(None) => return None,
            Err(e) => {
                // The lease runs out and the watchdog tries again.
                tracing::warn!(run_id = %run.run_id, error = %e, "could not record the follow-up's outcome");
                return None;
            }
        };
        match f.state {
            FollowUpState::Done => {}
            FollowUpState::Pending => {
                tracing::warn!(run_id = %run.run_id, attempts = f.attempts, error = f.error.as_deref().unwrap_or(""), "invoice check or hubs landing failed; retried later");
            }
            FollowUpState::GaveUp => {
                tracing::error!(run_id = %run.run_id, attempts = f.attempts, error = f.error.as_deref().unwrap_or(""), "invoice check or hubs landing gave up; the export's data is landed, a new run of it tries again");
            }
        }
        Some(f)
    }

    /// The watchdog's part: claims a due follow-up (or gives it up when its attempts are spent)
    /// and runs it. `None` when another instance claimed it first.
    pub(super) async fn retry_follow_up(
        &self,
        run: &RunRecord,
        t: OffsetDateTime,
    ) -> Result<Option<FollowUp>, PipelineError> {
        let claimed = self
            .ledger
            .update(&run.run_id, |r| {
                let f = r.follow_up.as_mut().filter(|f| is_due(f, t))?;
                if f.attempts >= MAX_FOLLOW_UP_ATTEMPTS {
                    f.state = FollowUpState::GaveUp;
                    f.next_attempt_at = None;
                    f.error
                        .get_or_insert_with(|| "the last attempt never finished".into());
                    return Some(false);
                }
                f.attempts += 1;
                f.next_attempt_at = Some(t + FOLLOW_UP_LEASE);
                Some(true)
            })
            .await?;
        match claimed {
            Some((run, true)) => Ok(self.follow_up(&run, t).await),
            Some((run, false)) => Ok(run.follow_up),
            None => Ok(None),
        }
    }
}

/// Whether the watchdog should act on this follow-up at `t`.
pub(super) fn is_due(f: &FollowUp, t: OffsetDateTime) -> bool {
    f.state == FollowUpState::Pending && f.next_attempt_at.is_none_or(|at| at <= t)
}

fn settle(f: &mut FollowUp, result: &Result<(), PipelineError>, t: OffsetDateTime) {
    match result {
        Ok(()) => {
            f.state = FollowUpState::Done;
            f.next_attempt_at = None;
            f.error = None;
        }
        Err(e) => {
            f.error = Some(e.to_string().chars().take(1000).collect());
            if f.attempts >= MAX_FOLLOW_UP_ATTEMPTS {
                f.state = FollowUpState::GaveUp;
                f.next_attempt_at = None;
            } else {
                f.next_attempt_at = Some(t + backoff(f.attempts));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn pending(attempts: u32) -> FollowUp {
        FollowUp {
            state: FollowUpState::Pending,
            attempts,
            next_attempt_at: None,
            error: None,
        }
    }

    #[test]
    fn failures_back_off_then_give_up_and_success_ends_the_step() {
        let t = datetime!(2026-11-20 06:00 UTC);
        let failed: Result<(), PipelineError> = Err(PipelineError::Source("no container".into()));
        let mut f = pending(1);
        settle(&mut f, &failed, t);
        assert_eq!(f.next_attempt_at, Some(t + Duration::from_secs(300)));
        f.attempts = 4;
        settle(&mut f, &failed, t);
        assert_eq!(f.next_attempt_at, Some(t + Duration::from_secs(2400)));
        assert!(is_due(&f, t + Duration::from_secs(2400)));
        assert!(!is_due(&f, t));
        f.attempts = MAX_FOLLOW_UP_ATTEMPTS;
        settle(&mut f, &failed, t);
        assert_eq!(f.state, FollowUpState::GaveUp);
        assert!(
            !is_due(&f, t + Duration::from_secs(86_400)),
            "nothing retries it"
        );

        let mut f = pending(2);
        settle(&mut f, &Ok(()), t);
        assert_eq!(
            (f.state, f.error, f.next_attempt_at),
            (FollowUpState::Done, None, None)
        );
    }
}

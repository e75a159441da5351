//! The poll state machine's decisions, as pure functions of (run, message, Graph's answer, now).
//! No I/O here, so every branch is unit-tested.

use std::time::Duration;

use time::OffsetDateTime;

use super::run::{FailureCode, RunRecord, RunState};
use crate::billing::{BillingError, ManifestLocation, OperationState, PollOutcome};

#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    /// Used when Graph sends no `Retry-After`.
    pub default_retry_after: Duration,
    /// Floor under every poll delay: `Retry-After: 0` or a date in the past must not become a
    /// tight loop of polls.
    pub min_retry_after: Duration,
    /// Cap on any wait Graph asks for.
    pub max_retry_after: Duration,
    /// How often a `410 Gone` operation is restarted before the run fails.
    pub max_restarts: u32,
}

impl PollPolicy {
    /// When to poll `run` next after Graph asked to wait `wait` (its `Retry-After`; the default
    /// when it sent none): between the floor and the cap, and never more than a moment past
    /// the run's deadline, whose poll then fails it. Every reschedule of a poll goes through
    /// this, so none can push a run past its bound.
    pub fn next_poll(
        &self,
        run: &RunRecord,
        wait: Option<Duration>,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        let d = wait
            .unwrap_or(self.default_retry_after)
            .max(self.min_retry_after)
            .min(self.max_retry_after.max(self.min_retry_after));
        (now + d).min(run.poll_deadline + Duration::from_secs(1))
    }
}

/// What to do with a poll message before calling Graph.
#[derive(Debug, Clone, PartialEq)]
pub enum BeforePoll {
    /// A duplicate or superseded message: acknowledge and do nothing.
    Stale,
    /// The run is finished (or not ours to poll): acknowledge.
    Done,
    /// The manifest is known but copy jobs may not all have been sent: send them again.
    ResendCopies,
    /// The operation ran past the deadline: fail the run.
    DeadlineExceeded,
    /// Call Graph.
    Poll,
}

pub fn before_poll(run: &RunRecord, seq: u32, now: OffsetDateTime) -> BeforePoll {
    if seq < run.polls {
        return BeforePoll::Stale;
    }
    match run.state {
        RunState::Completed | RunState::Failed | RunState::Starting => BeforePoll::Done,
        RunState::Copying => BeforePoll::ResendCopies,
        RunState::Polling if now > run.poll_deadline => BeforePoll::DeadlineExceeded,
        RunState::Polling => BeforePoll::Poll,
    }
}

/// What Graph's answer means for the run.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterPoll {
    /// Still running: poll again at `at`.
    Reschedule {
        at: OffsetDateTime,
        status: String,
    },
    /// Graph could not be reached (after the client's own retries): poll again later.
    RetryLater {
        at: OffsetDateTime,
        reason: String,
    },
    /// The operation expired: start the export again.
    Restart,
    Succeeded(ManifestLocation),
    /// Graph has no data for this export (code [`NO_DATA_CODE`]): the run completes empty.
    NoData {
        message: String,
    },
    Fail {
        code: FailureCode,
        message: String,
    },
}

/// Graph's failed-operation code for "No data available" (docs/graph-api.md §2, §5), e.g. an
/// invoice without Azure usage: the export is finished and there is nothing to copy.
pub const NO_DATA_CODE: &str = "5000";

pub fn after_poll(
    run: &RunRecord,
    answer: Result<PollOutcome, &BillingError>,
    now: OffsetDateTime,
    policy: &PollPolicy,
) -> AfterPoll {
    let later = |wait: Option<Duration>| policy.next_poll(run, wait, now);
    match answer {
        Err(e) if e.is_transient() => AfterPoll::RetryLater {
            at: later(e.retry_after()),
            reason: e.to_string(),
        },
        // An inline manifest we refuse (hostile field, foreign storage host) fails like a
        // linked one does when it is fetched: code `manifest`.
        Err(e @ BillingError::InvalidManifest(_)) => AfterPoll::Fail {
            code: FailureCode::Manifest,
            message: e.to_string(),
        },
        Err(e) => AfterPoll::Fail {
            code: FailureCode::PollFailed,
            message: e.to_string(),
        },
        Ok(PollOutcome::Gone) if run.restarts < policy.max_restarts => AfterPoll::Restart,
        Ok(PollOutcome::Gone) => AfterPoll::Fail {
            code: FailureCode::Gone,
            message: format!(
                "the export operation expired (410 Gone) {} times; giving up",
                run.restarts + 1
            ),
        },
        Ok(PollOutcome::Operation(op)) => match op.state {
            OperationState::Running { status } => AfterPoll::Reschedule {
                at: later(op.retry_after),
                status,
            },
            OperationState::Succeeded { manifest } => AfterPoll::Succeeded(manifest),
            OperationState::Failed { error } if error.code.trim() == NO_DATA_CODE => {
                AfterPoll::NoData {
                    message: if error.message.is_empty() {
                        "No data available".into()
                    } else {
                        error.message
                    },
                }
            }
            OperationState::Failed { error } => AfterPoll::Fail {
                code: if error.code.is_empty() {
                    FailureCode::Failed
                } else {
                    FailureCode::Graph(error.code)
                },
                message: if error.message.is_empty() {
                    "the export operation failed without a message".into()
                } else {
                    error.message
                },
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{AttributeSet, ExportKind, ExportRequest, OperationError, OperationPoll};
    use crate::pipeline::run::{RunId, Trigger};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 10:00:00 UTC);

    fn run(state: RunState, polls: u32) -> RunRecord {
        let req = ExportRequest::billed(
            ExportKind::BilledUsage,
            "G1".parse().unwrap(),
            AttributeSet::Full,
        )
        .unwrap();
        let mut r = RunRecord::new(
            "20261125t100000-aaaaaaaaaaaa".parse::<RunId>().unwrap(),
            req,
            Trigger::Http,
            NOW,
            NOW + Duration::from_secs(3600),
        );
        r.state = state;
        r.polls = polls;
        r
    }

    fn policy() -> PollPolicy {
        PollPolicy {
            default_retry_after: Duration::from_secs(30),
            min_retry_after: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(24 * 3600),
            max_restarts: 2,
        }
    }

    fn op(state: OperationState, retry_after: Option<u64>) -> PollOutcome {
        PollOutcome::Operation(OperationPoll {
            id: "op".into(),
            state,
            retry_after: retry_after.map(Duration::from_secs),
            created_date_time: None,
            last_action_date_time: None,
        })
    }

    #[test]
    fn before_poll_covers_every_state() {
        assert_eq!(
            before_poll(&run(RunState::Polling, 3), 2, NOW),
            BeforePoll::Stale
        );
        assert_eq!(
            before_poll(&run(RunState::Polling, 3), 3, NOW),
            BeforePoll::Poll
        );
        assert_eq!(
            before_poll(&run(RunState::Polling, 3), 4, NOW),
            BeforePoll::Poll
        );
        assert_eq!(
            before_poll(&run(RunState::Copying, 3), 3, NOW),
            BeforePoll::ResendCopies
        );
        assert_eq!(
            before_poll(&run(RunState::Completed, 0), 0, NOW),
            BeforePoll::Done
        );
        assert_eq!(
            before_poll(&run(RunState::Failed, 0), 0, NOW),
            BeforePoll::Done
        );
        assert_eq!(
            before_poll(&run(RunState::Starting, 0), 0, NOW),
            BeforePoll::Done
        );
        assert_eq!(
            before_poll(
                &run(RunState::Polling, 0),
                0,
                NOW + Duration::from_secs(3601)
            ),
            BeforePoll::DeadlineExceeded
        );
    }

    #[test]
    fn running_reschedules_at_retry_after_or_default() {
        let r = run(RunState::Polling, 0);
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Running {
                    status: "running".into(),
                },
                Some(7),
            )),
            NOW,
            &policy(),
        );
        assert_eq!(
            a,
            AfterPoll::Reschedule {
                at: NOW + Duration::from_secs(7),
                status: "running".into()
            }
        );
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Running {
                    status: "queued".into(),
                },
                None,
            )),
            NOW,
            &policy(),
        );
        assert_eq!(
            a,
            AfterPoll::Reschedule {
                at: NOW + Duration::from_secs(30),
                status: "queued".into()
            }
        );
        // Never far beyond the deadline.
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Running {
                    status: "running".into(),
                },
                Some(7200),
            )),
            NOW,
            &policy(),
        );
        assert_eq!(
            a,
            AfterPoll::Reschedule {
                at: r.poll_deadline + Duration::from_secs(1),
                status: "running".into()
            }
        );
    }

    #[test]
    fn success_failure_gone_and_errors() {
        let r = run(RunState::Polling, 0);
        let link = url::Url::parse(
            "https://graph.microsoft.com/v1.0/reports/partners/billing/manifests/m",
        )
        .unwrap();
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Succeeded {
                    manifest: ManifestLocation::Link(link.clone()),
                },
                None,
            )),
            NOW,
            &policy(),
        );
        assert_eq!(a, AfterPoll::Succeeded(ManifestLocation::Link(link)));
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Failed {
                    error: OperationError {
                        code: "5000".into(),
                        message: "No data available".into(),
                    },
                },
                None,
            )),
            NOW,
            &policy(),
        );
        assert_eq!(
            a,
            AfterPoll::NoData {
                message: "No data available".into()
            },
            "no data is not a failure"
        );
        let a = after_poll(
            &r,
            Ok(op(
                OperationState::Failed {
                    error: OperationError {
                        code: "5001".into(),
                        message: "Something else".into(),
                    },
                },
                None,
            )),
            NOW,
            &policy(),
        );
        assert_eq!(
            a,
            AfterPoll::Fail {
                code: FailureCode::Graph("5001".into()),
                message: "Something else".into()
            }
        );
        assert_eq!(
            after_poll(&r, Ok(PollOutcome::Gone), NOW, &policy()),
            AfterPoll::Restart
        );
        let mut tired = run(RunState::Polling, 0);
        tired.restarts = 2;
        assert!(matches!(
            after_poll(&tired, Ok(PollOutcome::Gone), NOW, &policy()),
            AfterPoll::Fail {
                code: FailureCode::Gone,
                ..
            }
        ));
        let transient = BillingError::Unavailable {
            attempts: 5,
            last: "HTTP 503".into(),
            retry_after: None,
        };
        assert!(
            matches!(after_poll(&r, Err(&transient), NOW, &policy()), AfterPoll::RetryLater { at, .. } if at == NOW + Duration::from_secs(30))
        );
        let fatal = BillingError::Rejected {
            status: 403,
            code: "Forbidden".into(),
            message: "no".into(),
        };
        assert!(matches!(
            after_poll(&r, Err(&fatal), NOW, &policy()),
            AfterPoll::Fail {
                code: FailureCode::PollFailed,
                ..
            }
        ));
        let refused = BillingError::InvalidManifest("manifest: rootDirectory is on x".into());
        assert!(matches!(
            after_poll(&r, Err(&refused), NOW, &policy()),
            AfterPoll::Fail {
                code: FailureCode::Manifest,
                ..
            }
        ));
    }

    /// `Retry-After: 0` (or a date in the past, parsed as zero) must not poll in a tight loop.
    #[test]
    fn retry_after_has_a_floor() {
        let r = run(RunState::Polling, 0);
        let zero = op(
            OperationState::Running {
                status: "running".into(),
            },
            Some(0),
        );
        assert!(matches!(
            after_poll(&r, Ok(zero), NOW, &policy()),
            AfterPoll::Reschedule { at, .. } if at == NOW + Duration::from_secs(5)
        ));
    }

    /// Every reschedule (polls, starts and restarts alike) is clamped to the cap and to the
    /// run's deadline: a day-long `Retry-After` cannot carry a run past its bound.
    #[test]
    fn every_reschedule_stays_within_the_cap_and_the_deadline() {
        let r = run(RunState::Polling, 0);
        let p = PollPolicy {
            max_retry_after: Duration::from_secs(3600),
            ..policy()
        };
        let day = Some(Duration::from_secs(24 * 3600));
        assert_eq!(p.next_poll(&r, day, NOW), NOW + Duration::from_secs(3600));
        let near_deadline = r.poll_deadline - Duration::from_secs(60);
        assert_eq!(
            p.next_poll(&r, day, near_deadline),
            r.poll_deadline + Duration::from_secs(1)
        );
        assert_eq!(
            p.next_poll(&r, None, NOW),
            NOW + p.default_retry_after,
            "no Retry-After: the default"
        );
    }

    /// A long `Retry-After` from a throttled Graph becomes the scheduled time of the next poll,
    /// not a sleep inside the invocation.
    #[test]
    fn a_long_retry_after_is_scheduled() {
        let r = run(RunState::Polling, 0);
        let throttled = BillingError::Unavailable {
            attempts: 1,
            last: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(1200)),
        };
        assert!(matches!(
            after_poll(&r, Err(&throttled), NOW, &policy()),
            AfterPoll::RetryLater { at, .. } if at == NOW + Duration::from_secs(1200)
        ));
    }

    /// A token that could not be fetched (identity endpoint or Entra ID down) is an outage to
    /// wait out, not a failed run.
    #[test]
    fn a_token_outage_is_retried_later() {
        let r = run(RunState::Polling, 0);
        let no_token = BillingError::Auth(crate::auth::AuthError::Credential {
            credential: "managed identity".into(),
            audience: "Microsoft Graph",
            reason: "identity endpoint unreachable".into(),
        });
        assert!(matches!(
            after_poll(&r, Err(&no_token), NOW, &policy()),
            AfterPoll::RetryLater { .. }
        ));
    }
}

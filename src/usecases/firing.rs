//! A start timer's firing: plan each partner's exports, announce what planning found, start
//! what was planned. A partner whose exports could not all be started gets one
//! `ExportsNotStarted` event; what did start is a no-op duplicate on the host's retry.

use time::OffsetDateTime;

use super::news;
use super::plans::timer_plans;
use super::starts::{start_plan, StartReport};
use crate::app::App;
use crate::pipeline::{notify, Trigger};
use crate::planner::KindGroup;

/// One partner's part of a firing.
#[derive(Debug)]
pub struct PartnerFiring {
    /// What planning found worth a log line (news, notes).
    pub news: Vec<String>,
    pub start: StartReport,
    /// Why some exports could not be started, if any could not.
    pub failure: Option<String>,
}

/// The reason line for the exports of `start` that could not be started, if any.
fn failure_of(start: &StartReport) -> Option<String> {
    let failures: Vec<String> = start
        .failures()
        .map(|(req, e)| format!("{req}: {e}"))
        .collect();
    (!failures.is_empty()).then(|| {
        format!(
            "{} export(s) could not be started: {}",
            failures.len(),
            failures.join("; ")
        )
    })
}

/// What a firing came to, partner by partner.
#[derive(Debug)]
pub struct FiringReport {
    pub group: KindGroup,
    pub partners: Vec<PartnerFiring>,
}

/// Fires `group`'s timer at `now` for every partner, side by side.
pub async fn fire(app: &App, group: KindGroup, now: OffsetDateTime) -> FiringReport {
    let today = now.date();
    let plans = timer_plans(app, group, now, None).await;
    let partners = futures::future::join_all(plans.into_iter().map(|p| async move {
        let news = news::announce(app, &p.plan, today).await;
        let start = start_plan(app, &p.plan, Trigger::Timer).await;
        let failure = failure_of(&start);
        let firing = PartnerFiring {
            news,
            start,
            failure,
        };
        if let Some(reason) = &firing.failure {
            let partner = &firing.start.partner;
            tracing::error!(partner = %partner, error = %reason, "exports of this partner could not be started; the other partners went on");
            let event = notify::exports_not_started(
                app.pipeline.event_source(),
                partner,
                group.as_str(),
                today,
                firing.start.counts().failed,
                reason,
            );
            if let Err(e) = app.pipeline.announce(event).await {
                tracing::warn!(partner = %partner, error = %e, "could not publish ExportsNotStarted");
            }
        }
        let c = firing.start.counts();
        tracing::info!(
            partner = %firing.start.partner,
            started = c.started,
            duplicates = c.duplicates,
            rejected = c.rejected,
            skipped = firing.start.skipped,
            failed = c.failed,
            "timer run planned"
        );
        firing
    }))
    .await;
    FiringReport { group, partners }
}

//! Planning per partner, side by side: one partner's slow or throttled Partner Center calls
//! (its own client, its own bound) never hold up another's.

use time::OffsetDateTime;

use crate::app::App;
use crate::billing::PartnerId;
use crate::config::PartnerConfig;
use crate::contracts::plan::{
    DiscoveryFailureNote, InvoicesMissingNote, PlannedExport, SkippedExport, TimerPlan,
};
use crate::planner::{self, KindGroup, Plan, PlanScope};

/// One partner's plan and the scope it was planned for.
#[derive(Debug)]
pub struct PartnerPlan {
    pub scope: PlanScope,
    pub plan: Plan,
}

/// `partner`'s plan for `scope`, with its own invoice listing and the shared ledger.
pub async fn plan_for(
    app: &App,
    partner: &PartnerConfig,
    scope: &PlanScope,
    now: OffsetDateTime,
) -> Plan {
    planner::plan(
        &partner.id,
        &partner.plan,
        app.invoices_for(partner),
        app.pipeline.ledger(),
        scope,
        now,
    )
    .await
}

/// What a firing of `group`'s timer at `now` plans for each partner (or only `only`): the
/// timer and `GET /api/plan` alike.
pub async fn timer_plans(
    app: &App,
    group: KindGroup,
    now: OffsetDateTime,
    only: Option<&PartnerId>,
) -> Vec<PartnerPlan> {
    let partners = app
        .config
        .partners
        .iter()
        .filter(|p| only.is_none_or(|o| o == &p.id));
    futures::future::join_all(partners.map(|p| async move {
        let scope = PlanScope::timer(&p.plan, group, now.date());
        let plan = plan_for(app, p, &scope, now).await;
        PartnerPlan { scope, plan }
    }))
    .await
}

/// `id` if the configuration has that partner, else why not (naming the field `partner`).
pub fn known_partner(app: &App, id: &str) -> Result<PartnerId, crate::billing::InvalidInput> {
    let id: PartnerId = id.parse()?;
    if app.config.partner(&id).is_some() {
        return Ok(id);
    }
    let names: Vec<&str> = app.config.partners.iter().map(|p| p.id.as_str()).collect();
    Err(crate::billing::InvalidInput::new(
        "partner",
        format!(
            "{:?} is not configured; expected one of {}",
            id.as_str(),
            names.join(", ")
        ),
    ))
}

/// A plan as its contract shows it (a listed partner's names the partner): `GET /api/plan`,
/// the backfill answer and `export --dry-run` alike.
pub fn timer_plan(plan: &Plan) -> TimerPlan {
    TimerPlan {
        start: plan
            .requests
            .iter()
            .map(|p| PlannedExport::of(&p.request, p.billing_month))
            .collect(),
        skipped: plan.skipped.iter().map(skipped_export).collect(),
        notes: plan.notes.clone(),
        invoices_missing: plan.invoices_missing.as_ref().map(|m| InvoicesMissingNote {
            billing_month: m.month,
            expected_by: m.expected_by,
        }),
        discovery_failure: plan
            .discovery_failure
            .as_ref()
            .map(|f| discovery_note(f, None)),
        partner: plan.partner.listed().cloned(),
        billing_months: None,
    }
}

fn skipped_export(s: &planner::Skipped) -> SkippedExport {
    SkippedExport {
        billing_month: s.billing_month,
        what: s.what.clone(),
        run_id: s.run_id.clone(),
        reason: s.reason.clone(),
    }
}

pub fn discovery_note(
    f: &planner::DiscoveryFailure,
    partner: Option<&PartnerId>,
) -> DiscoveryFailureNote {
    DiscoveryFailureNote {
        partner: partner.cloned(),
        billing_month: f.month.to_string(),
        reason: f.error.to_string(),
        fix: f.hint().to_string(),
    }
}

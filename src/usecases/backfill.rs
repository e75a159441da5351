//! A backfill: a range of billing months planned for the selected partners (each with its own
//! kinds and invoices), and what the ledger lacks started unless it is a dry run.

use time::OffsetDateTime;

use super::plans::plan_for;
use super::starts::{start_plan, StartReport};
use crate::app::App;
use crate::billing::{BillingMonth, ExportKind, InvalidInput, PartnerId};
use crate::pipeline::Trigger;
use crate::planner::{Plan, PlanScope};

/// A backfill longer than this is almost certainly a typo (ten years).
pub const MAX_BACKFILL_MONTHS: usize = 120;

/// What to backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillRequest {
    pub from: BillingMonth,
    pub to: BillingMonth,
    pub kinds: Option<Vec<ExportKind>>,
    /// Only these partners (all when `None`).
    pub partners: Option<Vec<PartnerId>>,
    pub dry_run: bool,
}

impl BackfillRequest {
    /// Checks the range: in order, and not longer than [`MAX_BACKFILL_MONTHS`].
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.to < self.from {
            return Err(InvalidInput::new(
                "to",
                format!(
                    "the range ends ({}) before it starts ({})",
                    self.to, self.from
                ),
            ));
        }
        if self.from.through(self.to).len() > MAX_BACKFILL_MONTHS {
            return Err(InvalidInput::new(
                "to",
                format!("more than {MAX_BACKFILL_MONTHS} months"),
            ));
        }
        Ok(())
    }
}

/// What a backfill planned and, unless a dry run, started.
#[derive(Debug)]
pub struct BackfillReport {
    pub request: BackfillRequest,
    /// The partners planned, in configuration order.
    pub partners: Vec<PartnerId>,
    /// One plan per partner; months left out are in its `skipped`, first.
    pub plans: Vec<Plan>,
    /// One report per partner; empty for a dry run.
    pub starts: Vec<StartReport>,
}

/// Plans `req` at `now` and starts what the ledger lacks (nothing for a dry run).
pub async fn backfill(
    app: &App,
    req: BackfillRequest,
    now: OffsetDateTime,
) -> Result<BackfillReport, InvalidInput> {
    req.validate()?;
    let selected = match &req.partners {
        None => app.config.partners.iter().collect::<Vec<_>>(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                super::plans::known_partner(app, id.as_str())
                    .map_err(|e| InvalidInput::new("partners", e.reason))
                    .map(|id| app.config.partner(&id).expect("known"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let today = now.date();
    let plans = futures::future::join_all(selected.iter().map(|partner| {
        let kinds = req.kinds.clone();
        async move {
            let (scope, mut skipped) =
                PlanScope::backfill(&partner.plan, req.from, req.to, kinds, today);
            let mut plan = plan_for(app, partner, &scope, now).await;
            skipped.append(&mut plan.skipped);
            plan.skipped = skipped;
            plan
        }
    }))
    .await;
    let starts = if req.dry_run {
        Vec::new()
    } else {
        let mut starts = Vec::new();
        for plan in &plans {
            starts.push(start_plan(app, plan, Trigger::Http).await);
        }
        starts
    };
    Ok(BackfillReport {
        partners: selected.iter().map(|p| p.id.clone()).collect(),
        request: req,
        plans,
        starts,
    })
}

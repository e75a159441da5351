//! Which exports `export` runs: billed ones per invoice (named, or discovered in Partner Center
//! for each month of `--months`), unbilled ones per period and currency.
//! (A planner shared with the timer will replace the discovery here.)

use std::collections::BTreeSet;

use time::Date;

use super::args::{ExportArgs, MonthRange, YearMonth};
use crate::billing::invoices::{billed_invoices_for_month, PartnerCenterClient};
use crate::billing::{BillingError, ExportKind, ExportRequest, InvoiceId};
use crate::config::{PartnerConfig, PlanConfig};
use crate::planner::previous_month;

#[derive(Debug, Default)]
pub struct ExportPlan {
    pub requests: Vec<ExportRequest>,
    /// Worth telling the user (a month without invoices, ...).
    pub notes: Vec<String>,
    /// Whether invoices were looked up in Partner Center.
    pub discovered: Option<MonthRange>,
}

/// Whether the plan needs Partner Center (billed kinds without invoice ids).
pub fn needs_discovery(args: &ExportArgs, cfg: &PlanConfig) -> bool {
    kinds(args).iter().any(|k| k.is_billed())
        && args.invoices.is_empty()
        && (args.months.is_some() || cfg.invoice_ids.is_empty())
}

fn kinds(args: &ExportArgs) -> Vec<ExportKind> {
    if args.kinds.is_empty() {
        ExportKind::ALL.to_vec()
    } else {
        args.kinds
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// `partner`'s exports as `args` select them (its plan supplies what `args` leave out).
pub async fn plan(
    args: &ExportArgs,
    partner: &PartnerConfig,
    invoices: &PartnerCenterClient,
    today: Date,
) -> Result<ExportPlan, BillingError> {
    let cfg = &partner.plan;
    let mut out = ExportPlan::default();
    let kinds = kinds(args);
    let attribute_set = args.attribute_set.unwrap_or(cfg.attribute_set);
    let ids: Vec<InvoiceId> = if !kinds.iter().any(|k| k.is_billed()) {
        Vec::new()
    } else if !args.invoices.is_empty() {
        args.invoices.clone()
    } else if args.months.is_none() && !cfg.invoice_ids.is_empty() {
        cfg.invoice_ids.clone()
    } else {
        let range = args.months.unwrap_or_else(|| {
            let (year, month) = previous_month(today);
            MonthRange::single(YearMonth { year, month })
        });
        out.discovered = Some(range);
        discover(invoices, range, &mut out.notes).await?
    };
    for kind in kinds.iter().filter(|k| k.is_billed()) {
        for id in &ids {
            out.requests.push(
                ExportRequest::billed(*kind, id.clone(), attribute_set).expect("billed kind"),
            );
        }
    }
    let periods = if args.periods.is_empty() {
        cfg.periods.clone()
    } else {
        args.periods.clone()
    };
    let currencies = if args.currencies.is_empty() {
        cfg.currencies.clone()
    } else {
        args.currencies.clone()
    };
    for kind in kinds.iter().filter(|k| !k.is_billed()) {
        for period in &periods {
            for currency in &currencies {
                out.requests.push(
                    ExportRequest::unbilled(*kind, *period, currency.clone(), attribute_set)
                        .expect("unbilled kind"),
                );
            }
        }
    }
    for r in &mut out.requests {
        r.partner = partner.id.clone();
    }
    out.requests.sort();
    out.requests.dedup();
    Ok(out)
}

/// The new-commerce invoices of each month of `range`, from one Partner Center listing.
async fn discover(
    client: &PartnerCenterClient,
    range: MonthRange,
    notes: &mut Vec<String>,
) -> Result<Vec<InvoiceId>, BillingError> {
    let all = client.list_invoices().await?;
    let mut ids = BTreeSet::new();
    for m in range.months() {
        let found = billed_invoices_for_month(&all, m.year, m.month);
        if found.is_empty() {
            notes.push(format!(
                "Partner Center lists no new-commerce invoice for {m}"
            ));
        }
        ids.extend(found);
    }
    Ok(ids.into_iter().collect())
}

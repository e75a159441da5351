//! Which exports a firing (or a backfill) starts, and what it leaves out and why.
//!
//! - **Billed** (usage and reconciliation per invoice): the invoices of the last
//!   `BILLED_LOOKBACK_MONTHS` billing months (from Partner Center, or `EXPORT_INVOICE_IDS`),
//!   minus every invoice the ledger already has a completed run of (a run Graph had no data
//!   for counts as completed). A daily firing is therefore cheap, catches invoices published
//!   late, and a second firing starts nothing new.
//! - **Unbilled** (usage and reconciliation per period and currency): every firing refreshes
//!   them; Graph only serves `current` and `last`.
//!
//! Credit notes and legacy (`D…`) invoices are left out deliberately: the async export API
//! serves new-commerce invoices only (`billed_invoices_for_month`).

use std::collections::HashMap;

use serde::Serialize;
use time::{Date, Month};

use crate::billing::invoices::{billed_invoices_for_month, PartnerCenterClient};
use crate::billing::{
    BillingError, BillingMonth, BillingPeriod, ExportKind, ExportRequest, ExportScope, InvoiceId,
    PartnerId,
};
use crate::config::PlanConfig;
use crate::pipeline::{Ledger, RunRecord, RunState};

/// The kinds one timer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindGroup {
    /// Billed usage and billed reconciliation (`StartBilledExports`).
    Billed,
    /// Unbilled usage and unbilled reconciliation (`StartUnbilledExports`).
    Unbilled,
}

impl KindGroup {
    pub fn has(self, kind: ExportKind) -> bool {
        kind.is_billed() == (self == KindGroup::Billed)
    }
}

/// What to plan: kinds, the billing months whose invoices count, the unbilled periods.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanScope {
    pub kinds: Vec<ExportKind>,
    /// Billing months whose invoices the billed kinds export, oldest first.
    pub months: Vec<BillingMonth>,
    pub periods: Vec<BillingPeriod>,
    /// Whether last month's invoices being overdue is news (timer firings).
    pub check_missing: bool,
}

impl PlanScope {
    /// What a firing of `group`'s timer on `today` looks at.
    pub fn timer(cfg: &PlanConfig, group: KindGroup, today: Date) -> Self {
        let kinds: Vec<ExportKind> = cfg
            .kinds
            .iter()
            .copied()
            .filter(|k| group.has(*k))
            .collect();
        let this = BillingMonth::of(today);
        let mut months = Vec::new();
        let mut m = this;
        for _ in 0..cfg.billed_lookback_months {
            m = m.previous();
            if m >= cfg.billed_history_from {
                months.push(m);
            }
        }
        months.reverse();
        Self {
            months: if group == KindGroup::Billed {
                months
            } else {
                Vec::new()
            },
            periods: if group == KindGroup::Unbilled {
                cfg.periods.clone()
            } else {
                Vec::new()
            },
            kinds,
            check_missing: group == KindGroup::Billed,
        }
    }

    /// A backfill of `from..=to` for `kinds` (all configured kinds when `None`): billed months
    /// from `BILLED_HISTORY_FROM` up to last month; unbilled only for the current month
    /// (`current`) and last month (`last`). Every month left out is named with the reason.
    pub fn backfill(
        cfg: &PlanConfig,
        from: BillingMonth,
        to: BillingMonth,
        kinds: Option<Vec<ExportKind>>,
        today: Date,
    ) -> (Self, Vec<Skipped>) {
        let kinds = kinds.unwrap_or_else(|| cfg.kinds.clone());
        let billed = kinds.iter().any(|k| k.is_billed());
        let unbilled = kinds.iter().any(|k| !k.is_billed());
        let this = BillingMonth::of(today);
        let mut skipped = Vec::new();
        let (mut months, mut periods) = (Vec::new(), Vec::new());
        for m in from.through(to) {
            if billed {
                if m < cfg.billed_history_from {
                    skipped.push(Skipped::month(
                        m,
                        "billed",
                        format!(
                            "before {}, the first billing month the billed export API serves (BILLED_HISTORY_FROM)",
                            cfg.billed_history_from
                        ),
                    ));
                } else if m >= this {
                    skipped.push(Skipped::month(
                        m,
                        "billed",
                        "not invoiced yet: a month's invoices are published about the 8th of the following month".into(),
                    ));
                } else {
                    months.push(m);
                }
            }
            if unbilled {
                if m == this {
                    periods.push(BillingPeriod::Current);
                } else if m == this.previous() {
                    periods.push(BillingPeriod::Last);
                } else {
                    skipped.push(Skipped::month(
                        m,
                        "unbilled",
                        "unbilled data is served only for the current and the last billing period"
                            .into(),
                    ));
                }
            }
        }
        let scope = Self {
            kinds,
            months,
            periods,
            check_missing: false,
        };
        (scope, skipped)
    }
}

/// Something a plan leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_month: Option<BillingMonth>,
    /// `billed`, `unbilled`, or the export request (`billedUsage invoice G… (full)`).
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub reason: String,
}

impl Skipped {
    fn month(m: BillingMonth, what: &str, reason: String) -> Self {
        Self {
            billing_month: Some(m),
            what: what.into(),
            run_id: None,
            reason,
        }
    }
}

/// One export a plan starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub request: ExportRequest,
    /// The billing month of its invoice, when discovered from Partner Center.
    pub billing_month: Option<BillingMonth>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Whose exports these are.
    pub partner: PartnerId,
    pub requests: Vec<Planned>,
    pub skipped: Vec<Skipped>,
    /// Things the operator should know (no invoices found, discovery off and no ids, ...).
    pub notes: Vec<String>,
    /// Invoice discovery failed: billed exports were not planned, unbilled ones were (a
    /// Partner Center problem never holds up the rest).
    pub discovery_failure: Option<DiscoveryFailure>,
    /// Last month's invoices were not listed by the configured day (`INVOICES_MISSING_DAY`).
    pub invoices_missing: Option<MissingInvoices>,
}

/// Partner Center could not list the invoices, and what the operator can do about it.
#[derive(Debug)]
pub struct DiscoveryFailure {
    pub year: i32,
    pub month: Month,
    pub error: BillingError,
}

/// A month whose invoices are overdue.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingInvoices {
    pub month: BillingMonth,
    pub expected_by: Date,
}

impl DiscoveryFailure {
    /// The fix, in one sentence an operator can act on.
    pub fn hint(&self) -> &'static str {
        match &self.error {
            BillingError::Rejected { status: 401 | 403, .. } | BillingError::Auth(_) => {
                "Partner Center accepts app-only tokens only from an app registered in Partner Center \
                 (Account settings > App management), which a managed identity cannot be: register an app \
                 that trusts the Function App's identity and set GRAPH_CREDENTIAL_KIND=federated-managed-identity \
                 with GRAPH_TENANT_ID and GRAPH_CLIENT_ID (no secret; docs/deploy.md), or use client-secret / \
                 client-certificate, or set INVOICE_DISCOVERY=off and list invoice ids in EXPORT_INVOICE_IDS"
            }
            BillingError::Unavailable { .. } => {
                "Partner Center did not answer; the next firing plans these billed exports again \
                 (or start them now with POST /api/exports)"
            }
            _ => {
                "Partner Center answered unexpectedly; set INVOICE_DISCOVERY=off and list invoice \
                 ids in EXPORT_INVOICE_IDS until it is resolved"
            }
        }
    }
}

/// The month before `today`'s.
pub fn previous_month(today: Date) -> (i32, Month) {
    let m = BillingMonth::of(today).previous();
    (m.year, m.month)
}

/// The run the ledger's request index names for each candidate (one index read and one record
/// read per candidate, however long the history). The index names the latest run that claimed
/// the request; a failed one does not hold it back. A forced rerun that failed after an earlier
/// success is planned again, which lands in the same data version and copies nothing new.
async fn known_runs(
    ledger: &Ledger,
    candidates: &[Planned],
) -> Result<HashMap<String, RunRecord>, String> {
    let mut known = HashMap::new();
    for c in candidates {
        let key = c.request.key();
        if let Some(r) = ledger
            .run_of_request(&key)
            .await
            .map_err(|e| e.to_string())?
        {
            if r.state != RunState::Failed {
                known.insert(key, r);
            }
        }
    }
    Ok(known)
}

/// `partner`'s exports for `scope`: `cfg` is that partner's plan, `invoices` its invoice listing.
pub async fn plan(
    partner: &PartnerId,
    cfg: &PlanConfig,
    invoices: &PartnerCenterClient,
    ledger: &Ledger,
    scope: &PlanScope,
    today: Date,
) -> Plan {
    let mut out = Plan {
        partner: partner.clone(),
        ..Plan::default()
    };
    let billed: Vec<_> = scope
        .kinds
        .iter()
        .copied()
        .filter(|k| k.is_billed())
        .collect();
    let unbilled: Vec<_> = scope
        .kinds
        .iter()
        .copied()
        .filter(|k| !k.is_billed())
        .collect();

    // (invoice, its billing month when known)
    let mut ids: Vec<(InvoiceId, Option<BillingMonth>)> = Vec::new();
    if !billed.is_empty() && !scope.months.is_empty() {
        if !cfg.invoice_ids.is_empty() {
            ids = cfg.invoice_ids.iter().map(|i| (i.clone(), None)).collect();
        } else if cfg.discover_invoices {
            match invoices.list_invoices().await {
                Ok(all) => {
                    let last = BillingMonth::of(today).previous();
                    for m in &scope.months {
                        let found = billed_invoices_for_month(&all, m.year, m.month);
                        if found.is_empty() {
                            out.notes.push(format!(
                                "Partner Center lists no new-commerce invoice for {m} yet; no billed exports started for it"
                            ));
                            let due = cfg.invoices_missing_day;
                            if scope.check_missing && *m == last && due > 0 && today.day() >= due {
                                out.invoices_missing = Some(MissingInvoices {
                                    month: *m,
                                    expected_by: today.replace_day(due).expect("day 1 to 28"),
                                });
                            }
                        }
                        ids.extend(found.into_iter().map(|i| (i, Some(*m))));
                    }
                }
                Err(error) => {
                    let (year, month) = previous_month(today);
                    out.discovery_failure = Some(DiscoveryFailure { year, month, error });
                }
            }
        } else {
            out.notes.push(
                "billed exports configured but EXPORT_INVOICE_IDS is empty and INVOICE_DISCOVERY=off"
                    .into(),
            );
        }
    }
    let mut candidates: Vec<Planned> = Vec::new();
    for kind in &billed {
        for (id, month) in &ids {
            candidates.push(Planned {
                request: ExportRequest::billed(*kind, id.clone(), cfg.attribute_set)
                    .expect("billed kind")
                    .for_partner(partner.clone()),
                billing_month: *month,
            });
        }
    }
    // Billed data does not change once invoiced: skip what the ledger has.
    if !candidates.is_empty() {
        match known_runs(ledger, &candidates).await {
            Ok(known) => {
                for c in candidates {
                    let key = c.request.key();
                    let (run, why) = match known.get(&key) {
                        Some(r) if r.state == RunState::Completed => {
                            let how = if r.no_data {
                                "already exported (Graph had no data for it)"
                            } else {
                                "already exported"
                            };
                            (Some(r), how)
                        }
                        Some(r) => (Some(r), "running"),
                        None => (None, ""),
                    };
                    match run {
                        Some(r) => out.skipped.push(Skipped {
                            billing_month: c.billing_month,
                            what: c.request.to_string(),
                            run_id: Some(r.run_id.to_string()),
                            reason: why.into(),
                        }),
                        None => out.requests.push(c),
                    }
                }
            }
            Err(e) => {
                // Starting again is safe (a running export is a duplicate start; a finished
                // one lands in the same data version), so a ledger hiccup never skips a month.
                out.notes.push(format!(
                    "could not read the run ledger ({e}); planning every invoice"
                ));
                out.requests.extend(candidates);
            }
        }
    }
    for kind in &unbilled {
        for period in &scope.periods {
            for cur in &cfg.currencies {
                out.requests.push(Planned {
                    request: ExportRequest::unbilled(
                        *kind,
                        *period,
                        cur.clone(),
                        cfg.attribute_set,
                    )
                    .expect("unbilled kind")
                    .for_partner(partner.clone()),
                    billing_month: None,
                });
            }
        }
    }
    out
}

/// The billing month a planned request's scope names, for display.
pub fn describe(p: &Planned) -> serde_json::Value {
    let mut v = serde_json::json!({ "request": p.request.to_string(), "kind": p.request.kind });
    if !p.request.partner.is_default() {
        v["partner"] = serde_json::json!(p.request.partner);
    }
    match &p.request.scope {
        ExportScope::Invoice { invoice_id } => {
            v["invoiceId"] = serde_json::json!(invoice_id);
        }
        ExportScope::Period { period, currency } => {
            v["billingPeriod"] = serde_json::json!(period);
            v["currencyCode"] = serde_json::json!(currency);
        }
    }
    if let Some(m) = p.billing_month {
        v["billingMonth"] = serde_json::json!(m);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::AttributeSet;
    use time::macros::date;

    fn cfg() -> PlanConfig {
        PlanConfig {
            kinds: vec![
                ExportKind::BilledUsage,
                ExportKind::BilledReconciliation,
                ExportKind::UnbilledUsage,
            ],
            attribute_set: AttributeSet::Full,
            invoice_ids: vec![],
            currencies: vec!["USD".parse().unwrap()],
            periods: vec![BillingPeriod::Current],
            discover_invoices: true,
            billed_lookback_months: 3,
            invoices_missing_day: 12,
            billed_history_from: "2022-09".parse().unwrap(),
        }
    }

    #[test]
    fn previous_month_wraps_the_year() {
        assert_eq!(
            previous_month(date!(2026 - 01 - 05)),
            (2025, Month::December)
        );
        assert_eq!(
            previous_month(date!(2026 - 11 - 25)),
            (2026, Month::October)
        );
    }

    #[test]
    fn timer_scopes_split_by_kind_and_look_back() {
        let b = PlanScope::timer(&cfg(), KindGroup::Billed, date!(2026 - 01 - 05));
        assert_eq!(b.kinds.len(), 2);
        let months: Vec<String> = b.months.iter().map(|m| m.to_string()).collect();
        assert_eq!(months, ["2025-10", "2025-11", "2025-12"]);
        assert!(b.periods.is_empty());
        let u = PlanScope::timer(&cfg(), KindGroup::Unbilled, date!(2026 - 01 - 05));
        assert_eq!(u.kinds, vec![ExportKind::UnbilledUsage]);
        assert!(u.months.is_empty());
        assert_eq!(u.periods, vec![BillingPeriod::Current]);
        // Never before the first month the API serves.
        let early = PlanScope::timer(&cfg(), KindGroup::Billed, date!(2022 - 10 - 05));
        assert_eq!(early.months.len(), 1);
    }

    #[test]
    fn backfill_says_what_it_skips() {
        let (s, skipped) = PlanScope::backfill(
            &cfg(),
            "2022-07".parse().unwrap(),
            "2026-01".parse().unwrap(),
            None,
            date!(2026 - 01 - 20),
        );
        assert_eq!(s.months.first().unwrap().to_string(), "2022-09");
        assert_eq!(s.months.last().unwrap().to_string(), "2025-12");
        assert_eq!(s.periods, vec![BillingPeriod::Last, BillingPeriod::Current]);
        let billed: Vec<_> = skipped.iter().filter(|s| s.what == "billed").collect();
        assert_eq!(billed.len(), 3, "2022-07, 2022-08, 2026-01: {billed:?}");
        assert!(billed[0].reason.contains("BILLED_HISTORY_FROM"));
        assert!(billed[2].reason.contains("not invoiced yet"));
        assert!(skipped
            .iter()
            .any(|s| s.what == "unbilled" && s.reason.contains("current and the last")));
    }
}

//! Which exports a firing (or a backfill) starts, and what it leaves out and why.
//!
//! One planner serves every front end: the timers, `GET /api/plan`, `POST /api/backfill` and
//! the `export` command.
//!
//! - **Billed** (usage and reconciliation per invoice): the invoices of the last
//!   `BILLED_LOOKBACK_MONTHS` billing months (from Partner Center, or `EXPORT_INVOICE_IDS`),
//!   minus every invoice the ledger already has a completed run of. A daily firing is
//!   therefore cheap, catches invoices published late, and a second firing starts nothing new.
//!   An export Graph had no data for is tried once more `NO_DATA_RETRY_HOURS` later (Graph
//!   can answer "no data" on the day an invoice appears); one that failed
//!   `MAX_EXPORT_ATTEMPTS` times is given up, with the reason.
//! - **Unbilled** (usage and reconciliation per period and currency): every firing refreshes
//!   them, in the configured currencies and every currency of the partner's recent invoices.
//!   Graph serves `current` and `last`; `last` holds data only until last month is invoiced.
//!
//! Credit notes and legacy (`D…`) invoices are left out deliberately: the async export API
//! serves new-commerce invoices only (`billed_invoices`).

use std::collections::BTreeSet;

use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::billing::invoices::{
    billed_invoices, billed_invoices_for_month, billing_month, Invoice, PartnerCenterClient,
};
use crate::billing::{
    AttributeSet, BillingError, BillingMonth, BillingPeriod, CurrencyCode, ExportKind,
    ExportRequest, InvoiceId, PartnerId,
};
use crate::config::PlanConfig;
use crate::pipeline::{Attempts, Ledger, RunId, RunRecord, RunState};

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

    /// `billed` or `unbilled`, as events and plan bodies name the group.
    pub fn as_str(self) -> &'static str {
        match self {
            KindGroup::Billed => "billed",
            KindGroup::Unbilled => "unbilled",
        }
    }
}

/// What to plan: kinds, the billing months whose invoices count, the unbilled periods, and
/// what the caller names explicitly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanScope {
    pub kinds: Vec<ExportKind>,
    /// Billing months whose invoices the billed kinds export, oldest first.
    pub months: Vec<BillingMonth>,
    pub periods: Vec<BillingPeriod>,
    /// Whether last month's invoices being overdue is news (timer firings).
    pub check_missing: bool,
    /// Invoices the caller names (`export --invoice`): exported instead of discovered ones.
    pub invoices: Vec<InvoiceId>,
    /// Currencies the caller names (`export --currency`): instead of the configured and
    /// learned ones.
    pub currencies: Vec<CurrencyCode>,
    /// Overrides the partner's attribute set.
    pub attribute_set: Option<AttributeSet>,
    /// Export again what the ledger has finished or given up (`export --force`).
    pub force: bool,
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
            ..Self::default()
        }
    }

    /// Both timers' scopes in one (the `export` command without `--months`).
    pub fn both_timers(cfg: &PlanConfig, today: Date) -> Self {
        let billed = Self::timer(cfg, KindGroup::Billed, today);
        let unbilled = Self::timer(cfg, KindGroup::Unbilled, today);
        Self {
            kinds: cfg.kinds.clone(),
            periods: unbilled.periods,
            check_missing: false,
            ..billed
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
            ..Self::default()
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
    /// Exports given up after `MAX_EXPORT_ATTEMPTS` failed runs (also in `skipped`).
    pub abandoned: Vec<Abandoned>,
    /// Runs still under way for planned exports (also in `skipped`): the `export` command
    /// resumes them.
    pub running: Vec<RunRecord>,
    /// Finished runs of planned exports, skipped as already exported (also in `skipped`).
    pub finished: Vec<RunRecord>,
}

/// Partner Center could not list the invoices, and what the operator can do about it.
#[derive(Debug)]
pub struct DiscoveryFailure {
    /// The latest billing month whose billed exports were not planned.
    pub month: BillingMonth,
    pub error: BillingError,
}

/// A month whose invoices are overdue.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingInvoices {
    pub month: BillingMonth,
    pub expected_by: Date,
}

/// An export planning no longer starts: its last `attempts` runs failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Abandoned {
    pub request: ExportRequest,
    /// The last failed run.
    pub run_id: RunId,
    pub attempts: u32,
    /// Why the last run failed.
    pub reason: String,
    pub billing_month: Option<BillingMonth>,
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

/// What planning does with a candidate, given the ledger's latest run of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Start,
    /// A run of it is under way.
    Running,
    Skip(String),
    /// Failed too often: skipped, and news once.
    GiveUp(String),
}

/// How much earlier than the no-data delay a firing may retry.
const RETRY_ALLOWANCE: time::Duration = time::Duration::hours(1);

/// The rule for one candidate: `run` is the latest run of its request and `attempts` the
/// outcomes of all its runs (that one included).
pub fn verdict(
    request: &ExportRequest,
    run: &RunRecord,
    attempts: Attempts,
    cfg: &PlanConfig,
    force: bool,
    now: OffsetDateTime,
) -> Verdict {
    match run.state {
        s if !s.is_terminal() => Verdict::Running,
        _ if force => Verdict::Start,
        RunState::Failed if attempts.failed >= cfg.max_attempts => {
            let why = run
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            Verdict::GiveUp(format!(
                "given up after {} failed attempts (MAX_EXPORT_ATTEMPTS; export --force or POST /api/exports starts it again): {why}",
                attempts.failed
            ))
        }
        RunState::Failed => Verdict::Start,
        // Unbilled data changes daily: every firing refreshes it.
        _ if !request.kind.is_billed() => Verdict::Start,
        _ if !run.no_data => Verdict::Skip("already exported".into()),
        _ => {
            let first_no_data = attempts.no_data == 1 && attempts.completed == 0;
            // A daily timer fires at the same time each day, a little before the minute the
            // run finished: the hour's allowance lets the firing 72 hours on count.
            let finished = run.finished_at.unwrap_or(run.updated_at) - RETRY_ALLOWANCE;
            match cfg.no_data_retry_after {
                Some(delay) if first_no_data && now >= finished + delay => Verdict::Start,
                Some(delay) if first_no_data => Verdict::Skip(format!(
                    "already exported (Graph had no data for it); tried once more from {}",
                    (finished + delay).date()
                )),
                _ => Verdict::Skip("already exported (Graph had no data for it)".into()),
            }
        }
    }
}

/// `partner`'s exports for `scope`: `cfg` is that partner's plan, `invoices` its invoice listing.
pub async fn plan(
    partner: &PartnerId,
    cfg: &PlanConfig,
    invoices: &PartnerCenterClient,
    ledger: &Ledger,
    scope: &PlanScope,
    now: OffsetDateTime,
) -> Plan {
    let today = now.date();
    let mut out = Plan {
        partner: partner.clone(),
        ..Plan::default()
    };
    let has_billed = scope.kinds.iter().any(|k| k.is_billed());
    let has_unbilled = scope.kinds.iter().any(|k| !k.is_billed()) && !scope.periods.is_empty();
    let discover_billed = has_billed
        && scope.invoices.is_empty()
        && !scope.months.is_empty()
        && cfg.invoice_ids.is_empty();
    let learn_unbilled = has_unbilled
        && (scope.currencies.is_empty() || scope.periods.contains(&BillingPeriod::Last));
    let listing = if cfg.discover_invoices && (discover_billed || learn_unbilled) {
        Some(invoices.list_invoices().await)
    } else {
        None
    };
    let mut candidates = Vec::new();
    if has_unbilled {
        let listed = match &listing {
            Some(Ok(all)) => Some(all.as_slice()),
            Some(Err(e)) if !discover_billed => {
                out.notes.push(format!(
                    "could not list the partner's invoices in Partner Center ({e}); unbilled exports use the configured currencies"
                ));
                None
            }
            _ => None,
        };
        candidates.extend(unbilled_candidates(
            partner, cfg, scope, listed, today, &mut out,
        ));
    }
    if has_billed {
        let mut billed = billed_candidates(partner, cfg, scope, listing, today, &mut out);
        billed.append(&mut candidates);
        candidates = billed;
    }
    filter_by_ledger(cfg, ledger, scope, candidates, now, &mut out).await;
    out
}

/// The billed exports of the scope's invoices: named ones, configured ones, or those Partner
/// Center lists for the scope's months.
fn billed_candidates(
    partner: &PartnerId,
    cfg: &PlanConfig,
    scope: &PlanScope,
    listing: Option<Result<Vec<Invoice>, BillingError>>,
    today: Date,
    out: &mut Plan,
) -> Vec<Planned> {
    let mut ids: Vec<(InvoiceId, Option<BillingMonth>)> = Vec::new();
    if !scope.invoices.is_empty() {
        ids = scope.invoices.iter().map(|i| (i.clone(), None)).collect();
    } else if scope.months.is_empty() {
    } else if !cfg.invoice_ids.is_empty() {
        ids = cfg.invoice_ids.iter().map(|i| (i.clone(), None)).collect();
    } else if !cfg.discover_invoices {
        out.notes.push(
            "billed exports configured but EXPORT_INVOICE_IDS is empty and INVOICE_DISCOVERY=off"
                .into(),
        );
    } else {
        match listing {
            Some(Ok(all)) => {
                let last = BillingMonth::of(today).previous();
                for m in &scope.months {
                    let found = billed_invoices_for_month(&all, *m);
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
            Some(Err(error)) => {
                let month = *scope.months.last().expect("months is not empty");
                out.discovery_failure = Some(DiscoveryFailure { month, error });
            }
            None => {}
        }
    }
    let attribute_set = scope.attribute_set.unwrap_or(cfg.attribute_set);
    let mut candidates = Vec::new();
    for kind in scope.kinds.iter().filter(|k| k.is_billed()) {
        for (id, month) in &ids {
            candidates.push(Planned {
                request: ExportRequest::billed(*kind, id.clone(), attribute_set)
                    .expect("billed kind")
                    .for_partner(partner.clone()),
                billing_month: *month,
            });
        }
    }
    candidates
}

/// The unbilled exports of the scope's periods, in the scope's currencies, or the configured
/// ones plus every currency of the partner's invoices in the look-back window. `last` is
/// left out once last month is invoiced: Graph serves it only until then.
fn unbilled_candidates(
    partner: &PartnerId,
    cfg: &PlanConfig,
    scope: &PlanScope,
    listing: Option<&[Invoice]>,
    today: Date,
    out: &mut Plan,
) -> Vec<Planned> {
    let this = BillingMonth::of(today);
    let window = this.previous();
    let oldest = (1..cfg.billed_lookback_months).fold(window, |m, _| m.previous());
    let learned: BTreeSet<CurrencyCode> = listing
        .into_iter()
        .flat_map(billed_invoices)
        .filter(|i| billing_month(i).is_some_and(|m| m >= oldest && m < this))
        .filter_map(|i| i.currency_code.clone())
        .collect();
    let currencies: Vec<CurrencyCode> = if !scope.currencies.is_empty() {
        scope.currencies.clone()
    } else {
        let mut all: BTreeSet<CurrencyCode> = cfg.currencies.iter().cloned().collect();
        if !learned.is_empty() {
            for c in cfg.currencies.iter().filter(|c| !learned.contains(c)) {
                out.notes.push(format!(
                    "{c} is configured for unbilled exports (EXPORT_UNBILLED_CURRENCIES or currencies) but none of the partner's invoices since {oldest} is in {c}; Graph is likely to have no data for it"
                ));
            }
        }
        all.extend(learned.iter().cloned());
        if all.is_empty() {
            out.notes.push(
                "no invoice currency known yet and none configured; unbilled exports use USD"
                    .into(),
            );
            all.insert("USD".parse().expect("USD is a currency code"));
        }
        all.into_iter().collect()
    };
    let last_invoiced = match listing {
        Some(all) => !billed_invoices_for_month(all, this.previous()).is_empty(),
        // Without a listing, the day invoices are overdue by stands in for it.
        None => cfg.invoices_missing_day > 0 && today.day() >= cfg.invoices_missing_day,
    };
    let attribute_set = scope.attribute_set.unwrap_or(cfg.attribute_set);
    let mut candidates = Vec::new();
    for period in &scope.periods {
        if *period == BillingPeriod::Last && last_invoiced {
            out.skipped.push(Skipped::month(
                this.previous(),
                "unbilled",
                "last month is invoiced: its data is in the billed exports, and Graph serves unbilled `last` only until then".into(),
            ));
            continue;
        }
        for kind in scope.kinds.iter().filter(|k| !k.is_billed()) {
            for cur in &currencies {
                candidates.push(Planned {
                    request: ExportRequest::unbilled(*kind, *period, cur.clone(), attribute_set)
                        .expect("unbilled kind")
                        .for_partner(partner.clone()),
                    billing_month: None,
                });
            }
        }
    }
    candidates
}

/// Keeps the candidates the ledger says to start (one index read and one record read each,
/// however long the history); the rest are skipped with the reason.
async fn filter_by_ledger(
    cfg: &PlanConfig,
    ledger: &Ledger,
    scope: &PlanScope,
    candidates: Vec<Planned>,
    now: OffsetDateTime,
    out: &mut Plan,
) {
    let mut unreadable = None;
    for c in candidates {
        let key = c.request.ledger_key(now.date());
        let found = match ledger.request_history(&key).await {
            Ok(found) => found,
            Err(e) => {
                // Starting again is safe (a running export is a duplicate start; a finished
                // one lands in the same data version), so a ledger hiccup never skips one.
                unreadable.get_or_insert(e.to_string());
                None
            }
        };
        let Some((run, attempts)) = found else {
            out.requests.push(c);
            continue;
        };
        let skip = |reason: String| Skipped {
            billing_month: c.billing_month,
            what: c.request.to_string(),
            run_id: Some(run.run_id.to_string()),
            reason,
        };
        match verdict(&c.request, &run, attempts, cfg, scope.force, now) {
            Verdict::Start => out.requests.push(c),
            Verdict::Running => {
                out.skipped.push(skip("running".into()));
                out.running.push(run);
            }
            Verdict::Skip(reason) => {
                out.skipped.push(skip(reason));
                if run.state == RunState::Completed {
                    out.finished.push(run);
                }
            }
            Verdict::GiveUp(reason) => {
                out.skipped.push(skip(reason));
                out.abandoned.push(Abandoned {
                    request: c.request.clone(),
                    run_id: run.run_id.clone(),
                    attempts: attempts.failed,
                    reason: run
                        .failure
                        .as_ref()
                        .map(|f| f.message.clone())
                        .unwrap_or_default(),
                    billing_month: c.billing_month,
                });
            }
        }
    }
    if let Some(e) = unreadable {
        out.notes.push(format!(
            "could not read the run ledger ({e}); planning those exports anyway"
        ));
    }
}

#[cfg(test)]
mod tests;

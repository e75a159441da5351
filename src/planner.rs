//! Which exports the timer starts: billed usage and billed reconciliation per invoice (listed
//! in settings, or discovered from Partner Center for last month), unbilled usage and unbilled
//! reconciliation per period and currency.

use time::{Date, Month};

use crate::billing::invoices::{billed_invoices_for_month, PartnerCenterClient};
use crate::billing::{BillingError, ExportRequest, InvoiceId};
use crate::config::PlanConfig;

#[derive(Debug, Default)]
pub struct Plan {
    pub requests: Vec<ExportRequest>,
    /// Things the operator should know (no invoices found, discovery off and no ids, ...).
    pub notes: Vec<String>,
    /// Invoice discovery failed: billed exports of this month were not planned, unbilled ones
    /// were (a Partner Center problem never holds up the rest).
    pub discovery_failure: Option<DiscoveryFailure>,
}

/// Partner Center could not list the invoices, and what the operator can do about it.
#[derive(Debug)]
pub struct DiscoveryFailure {
    pub year: i32,
    pub month: Month,
    pub error: BillingError,
}

impl DiscoveryFailure {
    /// The fix, in one sentence an operator can act on.
    pub fn hint(&self) -> &'static str {
        match &self.error {
            BillingError::Rejected { status: 401 | 403, .. } | BillingError::Auth(_) => {
                "Partner Center accepts app-only tokens only from an app registered in Partner Center \
                 (Account settings > App management), which a managed identity cannot be: register an app, \
                 set GRAPH_CREDENTIAL_KIND=client-secret with GRAPH_TENANT_ID, GRAPH_CLIENT_ID and \
                 GRAPH_CLIENT_SECRET, or set INVOICE_DISCOVERY=off and list invoice ids in EXPORT_INVOICE_IDS"
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
    match today.month() {
        Month::January => (today.year() - 1, Month::December),
        m => (today.year(), m.previous()),
    }
}

pub async fn plan(cfg: &PlanConfig, invoices: &PartnerCenterClient, today: Date) -> Plan {
    let mut out = Plan::default();
    let billed: Vec<_> = cfg
        .kinds
        .iter()
        .copied()
        .filter(|k| k.is_billed())
        .collect();
    let unbilled: Vec<_> = cfg
        .kinds
        .iter()
        .copied()
        .filter(|k| !k.is_billed())
        .collect();

    if !billed.is_empty() {
        let ids: Vec<InvoiceId> = if !cfg.invoice_ids.is_empty() {
            cfg.invoice_ids.clone()
        } else if cfg.discover_invoices {
            let (y, m) = previous_month(today);
            match invoices.list_invoices().await {
                Ok(all) => {
                    let found = billed_invoices_for_month(&all, y, m);
                    if found.is_empty() {
                        out.notes.push(format!(
                            "Partner Center lists no new-commerce invoice for {y}-{:02}; no billed exports started",
                            u8::from(m)
                        ));
                    }
                    found
                }
                Err(error) => {
                    out.discovery_failure = Some(DiscoveryFailure {
                        year: y,
                        month: m,
                        error,
                    });
                    Vec::new()
                }
            }
        } else {
            out.notes
                .push("billed exports configured but EXPORT_INVOICE_IDS is empty and INVOICE_DISCOVERY=off".into());
            Vec::new()
        };
        for kind in &billed {
            for id in &ids {
                out.requests.push(
                    ExportRequest::billed(*kind, id.clone(), cfg.attribute_set)
                        .expect("billed kind"),
                );
            }
        }
    }
    for kind in &unbilled {
        for period in &cfg.periods {
            for cur in &cfg.currencies {
                out.requests.push(
                    ExportRequest::unbilled(*kind, *period, cur.clone(), cfg.attribute_set)
                        .expect("unbilled kind"),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

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
}

//! The invoice check: a billed reconciliation export, summed per currency from its rows, against
//! the invoice total Partner Center reports (`GET /v1/invoices/{id}`, field `totalCharges`).
//! Nothing else compares landed billing data with the invoice it belongs to; a mismatch
//! beyond the tolerance withholds the FinOps hubs manifest so wrong data is not ingested.
//!
//! What is compared, deliberately: the invoice is in one currency; every reconciliation row
//! of the invoice should carry it. The check sums `Total` (tax included, as `totalCharges`
//! is) over all rows in the invoice currency; rows in any other currency are a mismatch of
//! their own. Per-customer totals travel in the events so finance can trace a difference to
//! the customers it sits with.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::derived::Amount;
use crate::billing::invoices::{InvoiceTotal, PartnerCenterClient};
use crate::billing::{BillingError, InvoiceId};

/// Where invoice totals come from (Partner Center in production and locally).
#[async_trait]
pub trait InvoiceSource: Send + Sync + std::fmt::Debug {
    async fn invoice_total(&self, id: &InvoiceId) -> Result<InvoiceTotal, BillingError>;
}

#[async_trait]
impl InvoiceSource for PartnerCenterClient {
    async fn invoice_total(&self, id: &InvoiceId) -> Result<InvoiceTotal, BillingError> {
        PartnerCenterClient::invoice_total(self, id).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Reconciled,
    Mismatch,
}

/// One customer's share of the reconciliation total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerTotal {
    pub customer_id: String,
    pub currency: String,
    pub total: Amount,
}

/// The result, as `InvoiceReconciled` / `InvoiceMismatch` events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceCheck {
    pub verdict: Verdict,
    pub invoice_id: String,
    pub currency: String,
    /// `totalCharges` of the invoice.
    pub invoice_total: Amount,
    /// Σ `Total` of the reconciliation rows in the invoice currency.
    pub data_total: Amount,
    /// `data_total - invoice_total`.
    pub difference: Amount,
    pub tolerance: Amount,
    /// Totals of rows in other currencies (each one a mismatch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_currencies: Vec<CustomerTotal>,
    /// Per customer, largest first (at most [`MAX_CUSTOMERS`]).
    pub customers: Vec<CustomerTotal>,
    pub customers_truncated: bool,
}

/// Customers listed in an event; Event Grid takes events up to 1 MB.
pub const MAX_CUSTOMERS: usize = 200;

/// Compares `totals` ((customer, currency) → Σ Total) with the invoice.
pub fn check(
    invoice: &InvoiceTotal,
    totals: &BTreeMap<(String, String), Amount>,
    tolerance: Amount,
) -> Result<InvoiceCheck, String> {
    let invoice_total: Amount = invoice
        .total_charges
        .parse()
        .map_err(|e| format!("invoice {}: totalCharges {e}", invoice.id))?;
    let currency = invoice.currency_code.as_str();
    let mut data_total = Amount::default();
    let mut customers = Vec::new();
    let mut other_currencies = Vec::new();
    for ((customer, ccy), amount) in totals {
        let line = CustomerTotal {
            customer_id: customer.clone(),
            currency: ccy.clone(),
            total: *amount,
        };
        if ccy.eq_ignore_ascii_case(currency) {
            data_total = data_total
                .checked_add(*amount)
                .ok_or("the reconciliation total overflows")?;
            customers.push(line);
        } else if !amount.is_zero() {
            other_currencies.push(line);
        }
    }
    let difference = data_total
        .checked_sub(invoice_total)
        .ok_or("the difference overflows")?;
    let within = difference
        .abs_diff(Amount::default())
        .is_some_and(|d| d <= tolerance);
    customers.sort_by(|a, b| {
        b.total
            .cmp(&a.total)
            .then(a.customer_id.cmp(&b.customer_id))
    });
    let customers_truncated = customers.len() > MAX_CUSTOMERS;
    customers.truncate(MAX_CUSTOMERS);
    Ok(InvoiceCheck {
        verdict: if within && other_currencies.is_empty() {
            Verdict::Reconciled
        } else {
            Verdict::Mismatch
        },
        invoice_id: invoice.id.to_string(),
        currency: currency.to_string(),
        invoice_total,
        data_total,
        difference,
        tolerance,
        other_currencies,
        customers,
        customers_truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(total: &str) -> InvoiceTotal {
        InvoiceTotal {
            id: "G026110001".parse().unwrap(),
            total_charges: total.into(),
            currency_code: "USD".parse().unwrap(),
            document_type: Some("Invoice".into()),
        }
    }

    fn totals(rows: &[(&str, &str, &str)]) -> BTreeMap<(String, String), Amount> {
        rows.iter()
            .map(|(c, ccy, a)| ((c.to_string(), ccy.to_string()), a.parse().unwrap()))
            .collect()
    }

    fn cent() -> Amount {
        "0.01".parse().unwrap()
    }

    #[test]
    fn an_invoice_that_balances_is_reconciled() {
        let t = totals(&[("c1", "USD", "100.10"), ("c2", "USD", "23.45")]);
        let r = check(&invoice("123.55"), &t, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Reconciled);
        assert!(r.difference.is_zero());
        assert_eq!(r.customers[0].customer_id, "c1", "largest first");
    }

    #[test]
    fn a_difference_beyond_the_tolerance_is_a_mismatch() {
        let t = totals(&[("c1", "USD", "100.10"), ("c2", "USD", "23.45")]);
        let r = check(&invoice("124.55"), &t, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Mismatch);
        assert_eq!(r.difference, "-1".parse().unwrap());
        // Within the tolerance: rounding of the invoice is not a mismatch.
        let r = check(&invoice("123.56"), &t, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Reconciled);
    }

    #[test]
    fn rows_in_another_currency_are_a_mismatch() {
        let t = totals(&[("c1", "USD", "10"), ("c2", "EUR", "5")]);
        let r = check(&invoice("10"), &t, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Mismatch);
        assert_eq!(r.other_currencies.len(), 1);
    }

    #[test]
    fn credit_notes_balance_with_negative_totals() {
        let t = totals(&[("c1", "USD", "-120.00")]);
        assert_eq!(
            check(&invoice("-120"), &t, cent()).unwrap().verdict,
            Verdict::Reconciled
        );
    }

    #[test]
    fn an_unreadable_invoice_total_is_an_error_not_a_verdict() {
        assert!(check(&invoice("12,5"), &BTreeMap::new(), cent()).is_err());
    }
}

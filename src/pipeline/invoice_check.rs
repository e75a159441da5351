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
//!
//! Billed usage is compared with the invoice's Azure lines as well, once both billed exports of
//! the invoice have landed. The Azure lines are the reconciliation rows of the products the
//! billed usage names: Microsoft matches usage with reconciliation rows on `ProductId` and
//! `SkuId` (learn.microsoft.com, partner-center/billing/usage-aggregated-reconciliation-files).
//! Per customer, Σ `BillingPreTaxTotal` of the usage should equal Σ `Subtotal` of those lines.
//! Each line is rounded down twice ("Usage-based: ROUNDDOWN(ROUNDDOWN(EffectiveUnitPrice *
//! BillableQuantity, 2) * PCToBCExchangeRate, 2)", partner-center/billing/
//! modern-invoice-reconciliation-file) while usage rows are not, so a line may be short by up to
//! one cent of the pricing currency times the rate plus one cent: the allowance is the
//! tolerance times (1 + rate) per line, plus the tolerance once.

use std::collections::BTreeMap;

use super::derived::{Amount, LineTotals, Product};
use crate::billing::invoices::{InvoiceTotal, PartnerCenterClient};
use crate::billing::{BillingError, InvoiceId};
use async_trait::async_trait;

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

pub use crate::contracts::events::{
    CustomerTotal, InvoiceCheck, UsageCheck, UsageDifference, Verdict,
};

impl InvoiceCheck {
    /// Adds the usage comparison; a usage mismatch makes the whole check a mismatch.
    pub fn with_usage(mut self, usage: UsageCheck) -> Self {
        if usage.verdict == Verdict::Mismatch {
            self.verdict = Verdict::Mismatch;
        }
        self.azure_usage = Some(usage);
        self
    }
}

type ProductTotals = BTreeMap<(String, String, Product), LineTotals>;

/// Compares billed usage with the reconciliation rows of the products it names, per customer
/// and currency.
pub fn check_usage(
    usage_run_id: &str,
    usage: &ProductTotals,
    reconciliation: &ProductTotals,
    tolerance: Amount,
) -> Result<UsageCheck, String> {
    let overflow = || "the usage comparison overflows".to_string();
    let products: std::collections::BTreeSet<&Product> = usage.keys().map(|(_, _, p)| p).collect();
    #[derive(Default)]
    struct Side {
        usage: Amount,
        lines: Amount,
        rows: u64,
        rate_sum: Amount,
    }
    let mut per: BTreeMap<(&str, &str), Side> = BTreeMap::new();
    for ((c, ccy, _), t) in usage {
        let side = per.entry((c, ccy)).or_default();
        side.usage = side.usage.checked_add(t.pre_tax).ok_or_else(overflow)?;
    }
    for ((c, ccy, p), t) in reconciliation {
        if !products.contains(p) {
            continue;
        }
        let side = per.entry((c, ccy)).or_default();
        side.lines = side.lines.checked_add(t.pre_tax).ok_or_else(overflow)?;
        side.rows += t.rows;
        side.rate_sum = side.rate_sum.checked_add(t.rate_sum).ok_or_else(overflow)?;
    }
    let (mut usage_total, mut azure_lines_total) = (Amount::default(), Amount::default());
    let mut customers = Vec::with_capacity(per.len());
    for ((c, ccy), s) in per {
        usage_total = usage_total.checked_add(s.usage).ok_or_else(overflow)?;
        azure_lines_total = azure_lines_total
            .checked_add(s.lines)
            .ok_or_else(overflow)?;
        let per_line = Amount::from_int(s.rows)
            .checked_add(s.rate_sum)
            .and_then(|n| tolerance.checked_mul(n))
            .ok_or_else(overflow)?;
        customers.push(UsageDifference {
            customer_id: c.to_string(),
            currency: ccy.to_string(),
            usage_total: s.usage,
            azure_lines_total: s.lines,
            difference: s.usage.checked_sub(s.lines).ok_or_else(overflow)?,
            allowed: per_line.checked_add(tolerance).ok_or_else(overflow)?,
            azure_lines: s.rows,
        });
    }
    let beyond = |d: &UsageDifference| {
        d.difference
            .abs_diff(Amount::default())
            .is_none_or(|x| x > d.allowed)
    };
    let mismatch = customers.iter().any(beyond);
    customers.sort_by_cached_key(|d| {
        (
            !beyond(d),
            std::cmp::Reverse(d.difference.abs_diff(Amount::default())),
            d.customer_id.clone(),
        )
    });
    let customers_truncated = customers.len() > MAX_CUSTOMERS;
    customers.truncate(MAX_CUSTOMERS);
    Ok(UsageCheck {
        verdict: if mismatch {
            Verdict::Mismatch
        } else {
            Verdict::Reconciled
        },
        usage_run_id: usage_run_id.to_string(),
        products: products.len(),
        usage_total,
        azure_lines_total,
        customers,
        customers_truncated,
    })
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
        azure_usage: None,
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

    fn lines(rows: &[(&str, &str, &str, u64, &str)]) -> ProductTotals {
        rows.iter()
            .map(|(c, product, pre_tax, n, rate)| {
                (
                    (
                        c.to_string(),
                        "EUR".to_string(),
                        Product {
                            product_id: product.to_string(),
                            sku_id: "0001".into(),
                        },
                    ),
                    LineTotals {
                        rows: *n,
                        pre_tax: pre_tax.parse().unwrap(),
                        rate_sum: rate.parse().unwrap(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn usage_matches_the_lines_of_its_products_within_their_rounding() {
        // Usage is unrounded; each line lost up to a cent times (1 + rate) to ROUNDDOWN.
        let usage = lines(&[
            ("c1", "VM", "100.0149", 300, "0"),
            ("c2", "DISK", "5.5", 20, "0"),
        ]);
        let recon = lines(&[
            ("c1", "VM", "99.99", 1, "0.92"),
            ("c2", "DISK", "5.49", 1, "0.92"),
            // A licence line: not an Azure line, whatever its amount.
            ("c1", "M365", "600", 1, "0.92"),
        ]);
        let r = check_usage("run-u", &usage, &recon, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Reconciled, "{r:#?}");
        assert_eq!(r.products, 2);
        assert_eq!(r.azure_lines_total, "105.48".parse().unwrap());
        let c1 = r.customers.iter().find(|d| d.customer_id == "c1").unwrap();
        assert_eq!(c1.azure_lines, 1);
        assert_eq!(c1.allowed, "0.0292".parse().unwrap());
    }

    #[test]
    fn usage_beyond_its_lines_is_a_mismatch_named_by_customer() {
        let usage = lines(&[("c1", "VM", "100", 3, "0"), ("c2", "VM", "7", 3, "0")]);
        // c2's usage has no line on the invoice at all; c1's line is right.
        let recon = lines(&[("c1", "VM", "100", 1, "1")]);
        let r = check_usage("run-u", &usage, &recon, cent()).unwrap();
        assert_eq!(r.verdict, Verdict::Mismatch);
        assert_eq!(r.customers[0].customer_id, "c2", "beyond first");
        assert_eq!(r.customers[0].difference, "7".parse().unwrap());
        let inv = check(&invoice("100"), &totals(&[("c1", "USD", "100")]), cent()).unwrap();
        assert_eq!(inv.verdict, Verdict::Reconciled);
        assert_eq!(inv.with_usage(r).verdict, Verdict::Mismatch);
    }

    #[test]
    fn an_unreadable_invoice_total_is_an_error_not_a_verdict() {
        assert!(check(&invoice("12,5"), &BTreeMap::new(), cent()).is_err());
    }
}

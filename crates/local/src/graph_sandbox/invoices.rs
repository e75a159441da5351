//! Partner Center's `GET /v1/invoices`: the invoice list the pipeline reads to find invoice ids.

use serde_json::{json, Value};
use time::{Date, Duration};

use super::data::{add_months, month_bounds};

/// One invoice as Partner Center lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxInvoice {
    pub id: String,
    pub invoice_date: Date,
    pub billing_period_start: Date,
    pub billing_period_end: Date,
    pub total_charges: f64,
    pub paid_amount: f64,
    pub currency_code: String,
    pub currency_symbol: String,
    /// `"Invoice"` or `"Credit Note"`.
    pub document_type: String,
    /// e.g. `"Recurring"` or `"OneTime"`.
    pub invoice_type: String,
}

impl SandboxInvoice {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "invoiceDate": midnight(self.invoice_date),
            "billingPeriodStartDate": midnight(self.billing_period_start),
            "billingPeriodEndDate": midnight(self.billing_period_end),
            "totalCharges": self.total_charges,
            "paidAmount": self.paid_amount,
            "currencyCode": self.currency_code,
            "currencySymbol": self.currency_symbol,
            "documentType": self.document_type,
            "invoiceType": self.invoice_type,
            "attributes": {"objectType": "Invoice"},
        })
    }
}

fn midnight(d: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}T00:00:00Z",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// What a partner typically sees for the month before `today`: new-commerce `G` invoices in a
/// few currencies, a credit note, and one legacy `D` invoice (not exportable through Graph).
pub fn default_invoices(today: Date) -> Vec<SandboxInvoice> {
    let (start, end) = month_bounds(add_months(today.replace_day(1).expect("day 1"), -1));
    let issued = end + Duration::days(8);
    let ym = format!("{:02}{:02}", start.year() % 100, u8::from(start.month()));
    let inv = |id: String, total: f64, ccy: &str, sym: &str, doc: &str| SandboxInvoice {
        id,
        invoice_date: issued,
        billing_period_start: start,
        billing_period_end: end,
        total_charges: total,
        paid_amount: 0.0,
        currency_code: ccy.into(),
        currency_symbol: sym.into(),
        document_type: doc.into(),
        invoice_type: "Recurring".into(),
    };
    vec![
        inv(format!("G0{ym}0001"), 12840.55, "USD", "$", "Invoice"),
        inv(format!("G0{ym}0002"), 4210.10, "EUR", "€", "Invoice"),
        inv(format!("G0{ym}0003"), 977.42, "GBP", "£", "Invoice"),
        inv(format!("G0{ym}0004"), -120.00, "USD", "$", "Credit Note"),
        inv(format!("D0{ym}0005"), 310.00, "USD", "$", "Invoice"),
    ]
}

/// Largest page Partner Center hands out.
pub const MAX_PAGE_SIZE: usize = 100;

/// One page of the collection, with `next` while more remain. `base` is the absolute URL of
/// `/v1/invoices` without a query.
pub fn page(all: &[SandboxInvoice], size: usize, offset: usize, base: &str) -> Value {
    let size = size.clamp(1, MAX_PAGE_SIZE);
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(size)
        .map(SandboxInvoice::to_json)
        .collect();
    let mut links = json!({
        "self": {"uri": format!("{base}?size={size}&offset={offset}"), "method": "GET", "headers": []}
    });
    if offset.saturating_add(size) < all.len() {
        links["next"] = json!({
            "uri": format!("{base}?size={size}&offset={}", offset + size),
            "method": "GET",
            "headers": []
        });
    }
    json!({
        "totalCount": all.len(),
        "items": items,
        "links": links,
        "attributes": {"objectType": "Collection"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn defaults_cover_the_previous_month() {
        let all = default_invoices(date!(2026 - 01 - 15));
        assert_eq!(all[0].id, "G025120001");
        assert_eq!(all[0].billing_period_start, date!(2025 - 12 - 01));
        assert_eq!(all[0].billing_period_end, date!(2025 - 12 - 31));
        assert!(all.iter().any(|i| i.document_type == "Credit Note"));
        assert!(all.iter().any(|i| i.id.starts_with('D')));
    }

    #[test]
    fn pages_link_to_the_next_one() {
        let all = default_invoices(date!(2026 - 01 - 15));
        let p = page(&all, 2, 0, "http://h/v1/invoices");
        assert_eq!(p["totalCount"], 5);
        assert_eq!(p["items"].as_array().unwrap().len(), 2);
        assert_eq!(
            p["links"]["next"]["uri"],
            "http://h/v1/invoices?size=2&offset=2"
        );
        let last = page(&all, 2, 4, "http://h/v1/invoices");
        assert_eq!(last["items"].as_array().unwrap().len(), 1);
        assert!(last["links"].get("next").is_none());
        let capped = page(&all, 10_000, 0, "u");
        assert!(capped["links"]["self"]["uri"]
            .as_str()
            .unwrap()
            .contains("size=100"));
    }
}

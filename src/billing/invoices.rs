//! Partner Center invoice discovery: Graph has no invoice list, so billed exports find their
//! invoice ids through `GET {partner center}/v1/invoices` (its own token audience).

use serde_json::Value;
use time::{Month, OffsetDateTime};
use url::Url;

use super::client::{json_body, rejected, BillingError, RetryingSender};
use super::types::{CurrencyCode, InvoiceId};
use crate::auth::{Audience, AuthorizedHttp};
use crate::runtime::codec::parse_timestamp;

const PAGE_SIZE: u64 = 100;
const MAX_PAGES: u64 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub id: InvoiceId,
    pub invoice_date: Option<OffsetDateTime>,
    pub billing_period_start_date: Option<OffsetDateTime>,
    pub billing_period_end_date: Option<OffsetDateTime>,
    pub currency_code: Option<CurrencyCode>,
    pub document_type: Option<String>,
    pub invoice_type: Option<String>,
}

impl Invoice {
    fn from_json(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        let date = |k: &str| text(k).and_then(parse_timestamp);
        let id = match text("id")?.parse::<InvoiceId>() {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "skipping an invoice with an unusable id");
                return None;
            }
        };
        Some(Self {
            id,
            invoice_date: date("invoiceDate"),
            billing_period_start_date: date("billingPeriodStartDate"),
            billing_period_end_date: date("billingPeriodEndDate"),
            currency_code: text("currencyCode").and_then(|c| c.parse().ok()),
            document_type: text("documentType").map(str::to_string),
            invoice_type: text("invoiceType").map(str::to_string),
        })
    }
}

#[derive(Debug, Clone)]
pub struct PartnerCenterClient {
    sender: RetryingSender,
    base_url: Url,
}

impl PartnerCenterClient {
    pub fn new(http: AuthorizedHttp, base_url: Url) -> Self {
        Self {
            sender: RetryingSender {
                http,
                policy: crate::http_retry::RetryPolicy {
                    max_attempts: 5,
                    base_delay: std::time::Duration::from_millis(500),
                    max_delay: std::time::Duration::from_secs(120),
                },
            },
            base_url,
        }
    }

    /// Every invoice, page by page (bounded).
    pub async fn list_invoices(&self) -> Result<Vec<Invoice>, BillingError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let mut url = self.base_url.clone();
            let path = format!("{}/v1/invoices", url.path().trim_end_matches('/'));
            url.set_path(&path);
            url.query_pairs_mut()
                .append_pair("size", &PAGE_SIZE.to_string())
                .append_pair("offset", &offset.to_string());
            let correlation = uuid::Uuid::new_v4().to_string();
            let res = self
                .sender
                .send(
                    Audience::PartnerCenter,
                    reqwest::Method::GET,
                    &url,
                    None,
                    &[
                        ("MS-RequestId", uuid::Uuid::new_v4().to_string()),
                        ("MS-CorrelationId", correlation),
                    ],
                )
                .await?;
            if res.status().as_u16() != 200 {
                return Err(rejected(res).await);
            }
            let page = json_body(res).await?;
            let items = page
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = items.len() as u64;
            out.extend(items.iter().filter_map(Invoice::from_json));
            offset += n;
            let total = page.get("totalCount").and_then(Value::as_u64);
            if n == 0 || total.is_some_and(|t| offset >= t) || (total.is_none() && n < PAGE_SIZE) {
                return Ok(out);
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "stopped listing invoices at the page limit"
        );
        Ok(out)
    }
}

/// New-commerce invoices (ids starting with `G`, documentType Invoice) whose billing period
/// ends in `year`-`month` (or, without a period, dated in the month after).
pub fn billed_invoices_for_month(invoices: &[Invoice], year: i32, month: Month) -> Vec<InvoiceId> {
    let (next_year, next_month) = if month == Month::December {
        (year + 1, Month::January)
    } else {
        (year, month.next())
    };
    let mut ids: Vec<InvoiceId> = invoices
        .iter()
        .filter(|i| {
            i.document_type
                .as_deref()
                .is_none_or(|d| d.eq_ignore_ascii_case("invoice"))
        })
        .filter(|i| i.id.as_str().starts_with('G'))
        .filter(|i| match (i.billing_period_end_date, i.invoice_date) {
            (Some(end), _) => end.year() == year && end.month() == month,
            (None, Some(d)) => d.year() == next_year && d.month() == next_month,
            (None, None) => false,
        })
        .map(|i| i.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_new_commerce_invoices_of_the_month() {
        let raw = json!([
            {"id": "G000000001", "documentType": "Invoice", "billingPeriodEndDate": "2026-10-31T00:00:00Z"},
            {"id": "G000000002", "billingPeriodEndDate": "2026-10-30T23:59:59Z"},
            {"id": "G000000003", "documentType": "Credit Note", "billingPeriodEndDate": "2026-10-31T00:00:00Z"},
            {"id": "D000000004", "documentType": "Invoice", "billingPeriodEndDate": "2026-10-31T00:00:00Z"},
            {"id": "G000000005", "documentType": "Invoice", "billingPeriodEndDate": "2026-09-30T00:00:00Z"},
            {"id": "G000000006", "documentType": "Invoice", "invoiceDate": "2026-11-08T00:00:00Z"},
            {"id": "../bad", "documentType": "Invoice"},
            {"id": "G000000001", "documentType": "Invoice", "billingPeriodEndDate": "2026-10-31T00:00:00Z"}
        ]);
        let invoices: Vec<Invoice> = raw
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Invoice::from_json)
            .collect();
        assert_eq!(invoices.len(), 7);
        let ids: Vec<String> = billed_invoices_for_month(&invoices, 2026, Month::October)
            .into_iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ids, vec!["G000000001", "G000000002", "G000000006"]);
    }
}

//! Partner Center invoice discovery: Graph has no invoice list, so billed exports take their
//! invoice ids from Partner Center's `GET /v1/invoices` (docs/graph-api.md §6.1), called with a
//! Partner Center token (a Graph token is not valid there).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;
use url::Url;

use super::client::{read_json, send_with_retry, Call, GraphConfig};

use super::error::BillingError;
use super::month::BillingMonth;
use super::types::{CurrencyCode, InvoiceId};
use super::wire::{optional_str, parse_graph_timestamp};
use crate::auth::{redact_url, Audience, AuthorizedHttp};
use crate::http_retry::RetryPolicy;

/// Largest page Partner Center hands out.
pub const PAGE_SIZE: usize = 100;
/// Stops a server that never ends its listing (10 000 invoices).
pub const MAX_PAGES: usize = 100;
const MAX_FIELD_LEN: usize = 256;

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

#[derive(Debug, Clone)]
pub struct PartnerCenterClient {
    http: AuthorizedHttp,
    base_url: Url,
    retry: RetryPolicy,
}

impl PartnerCenterClient {
    /// `base_url` is what `/v1/invoices` goes below, e.g. `https://api.partnercenter.microsoft.com`.
    pub fn new(http: AuthorizedHttp, base_url: Url) -> Self {
        Self {
            http,
            base_url,
            retry: GraphConfig::default().retry_policy(),
        }
    }

    /// Overrides the retry policy (the Graph defaults otherwise).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `{base}/v1/invoices?size=100&offset={offset}`.
    pub fn invoices_url(&self, offset: usize) -> Url {
        let mut url = self.base_url.clone();
        url.set_fragment(None);
        url.path_segments_mut()
            .expect("Partner Center base URL is an http(s) URL")
            .pop_if_empty()
            .extend(["v1", "invoices"]);
        url.query_pairs_mut()
            .clear()
            .append_pair("size", &PAGE_SIZE.to_string())
            .append_pair("offset", &offset.to_string());
        url
    }

    /// Every invoice, page by page, until a page is empty or `totalCount` is reached.
    /// After [`MAX_PAGES`] pages the listing stops with a warning and returns what it has.
    pub async fn list_invoices(&self) -> Result<Vec<Invoice>, BillingError> {
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let mut out = Vec::new();
        let mut offset = 0usize;
        for _ in 0..MAX_PAGES {
            let page = self.page(offset, &correlation_id).await?;
            let items = page_items(&page)?;
            if items.is_empty() {
                return Ok(out);
            }
            offset += items.len();
            out.extend(items.iter().filter_map(parse_invoice));
            if total_count(&page).is_some_and(|total| offset as u64 >= total) {
                return Ok(out);
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            invoices = out.len(),
            "Partner Center invoice listing hit the page cap; older invoices are not listed"
        );
        Ok(out)
    }

    /// One invoice's totals: `GET {base}/v1/invoices/{id}`.
    pub async fn invoice_total(&self, id: &InvoiceId) -> Result<InvoiceTotal, BillingError> {
        let mut url = self.base_url.clone();
        url.set_fragment(None);
        url.set_query(None);
        url.path_segments_mut()
            .expect("Partner Center base URL is an http(s) URL")
            .pop_if_empty()
            .extend(["v1", "invoices", id.as_str()]);
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let v = self.get_json(&url, &correlation_id, "invoice").await?;
        parse_invoice_total(&v)
    }

    async fn page(&self, offset: usize, correlation_id: &str) -> Result<Value, BillingError> {
        self.get_json(&self.invoices_url(offset), correlation_id, "invoice page")
            .await
    }

    /// An authorised GET with Partner Center's request and correlation ids, retried.
    async fn get_json(
        &self,
        url: &Url,
        correlation_id: &str,
        what: &str,
    ) -> Result<Value, BillingError> {
        let headers = [
            ("Accept", "application/json".to_string()),
            ("MS-RequestId", uuid::Uuid::new_v4().to_string()),
            ("MS-CorrelationId", correlation_id.to_string()),
        ];
        tracing::debug!(url = %redact_url(url), correlation_id, "reading {what} from Partner Center");
        let call = Call {
            audience: Audience::PartnerCenter,
            method: Method::GET,
            url,
            headers: &headers,
            json: None,
            pass_through: &[],
        };
        let resp = send_with_retry(&self.http, &self.retry, &call).await?;
        read_json(resp, what).await
    }
}

/// What the invoice check needs of an invoice. `total_charges` is the JSON number's text,
/// exact as Partner Center wrote it (no float rounding here).
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceTotal {
    pub id: InvoiceId,
    pub total_charges: String,
    pub currency_code: CurrencyCode,
    pub document_type: Option<String>,
}

fn parse_invoice_total(v: &Value) -> Result<InvoiceTotal, BillingError> {
    let bad = |what: &str| BillingError::InvalidResponse(format!("invoice: {what}"));
    let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<InvoiceId>().ok())
        .ok_or_else(|| bad("no usable id"))?;
    let total_charges = match obj.get("totalCharges") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if s.len() <= 64 => s.clone(),
        _ => return Err(bad("totalCharges is not a number")),
    };
    let currency_code = obj
        .get("currencyCode")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<CurrencyCode>().ok())
        .ok_or_else(|| bad("no usable currencyCode"))?;
    let document_type = optional_str(obj, "documentType", MAX_FIELD_LEN)
        .ok()
        .filter(|s| !s.is_empty());
    Ok(InvoiceTotal {
        id,
        total_charges,
        currency_code,
        document_type,
    })
}

fn page_items(page: &Value) -> Result<&[Value], BillingError> {
    match page.get("items") {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Ok(&[]),
        Some(_) => Err(BillingError::InvalidResponse(
            "invoice page: items is not an array".into(),
        )),
    }
}

fn total_count(page: &Value) -> Option<u64> {
    page.get("totalCount")?.as_u64()
}

/// One listed invoice; `None` (with a warning) when its id is not a usable invoice id.
fn parse_invoice(v: &Value) -> Option<Invoice> {
    let obj = v.as_object()?;
    let raw_id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
    let id = match raw_id.parse::<InvoiceId>() {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "skipping a Partner Center invoice with an unusable id");
            return None;
        }
    };
    let text = |key: &str| -> Option<String> {
        optional_str(obj, key, MAX_FIELD_LEN)
            .ok()
            .filter(|s| !s.is_empty())
    };
    let date = |key: &str| text(key).and_then(|s| parse_graph_timestamp(&s));
    Some(Invoice {
        invoice_date: date("invoiceDate"),
        billing_period_start_date: date("billingPeriodStartDate"),
        billing_period_end_date: date("billingPeriodEndDate"),
        currency_code: text("currencyCode").and_then(|s| s.parse().ok()),
        document_type: text("documentType"),
        invoice_type: text("invoiceType"),
        id,
    })
}

/// New-commerce (`G…`) invoices — not credit notes — of billing month `month` (see
/// [`billing_month`]). Sorted and deduplicated.
pub fn billed_invoices_for_month(invoices: &[Invoice], month: BillingMonth) -> Vec<InvoiceId> {
    billed_invoices(invoices)
        .filter(|i| billing_month(i) == Some(month))
        .map(|i| i.id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The invoices the billed export API serves: documents of type "Invoice" (any case; a missing
/// type counts as one) with a new-commerce (`G…`) id.
pub fn billed_invoices(invoices: &[Invoice]) -> impl Iterator<Item = &Invoice> {
    invoices
        .iter()
        .filter(|i| is_invoice_document(i) && i.id.as_str().starts_with('G'))
}

/// `documentType` "Invoice" (any case); a missing type counts as an invoice.
fn is_invoice_document(i: &Invoice) -> bool {
    i.document_type
        .as_deref()
        .is_none_or(|d| d.trim().eq_ignore_ascii_case("invoice"))
}

/// The billing month an invoice bills: the UTC month its billing period starts in. Partner
/// Center does not say whether `billingPeriodEndDate` is inclusive, so the end date (one
/// second before or at midnight of the next month) is only the fallback, taken a day early;
/// without either date, the month before the invoice was issued.
pub fn billing_month(i: &Invoice) -> Option<BillingMonth> {
    let utc = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC).date();
    if let Some(start) = i.billing_period_start_date {
        return Some(BillingMonth::of(utc(start)));
    }
    if let Some(end) = i.billing_period_end_date {
        let day_before = utc(end).previous_day().unwrap_or(utc(end));
        return Some(BillingMonth::of(day_before));
    }
    i.invoice_date
        .map(|issued| BillingMonth::of(utc(issued)).previous())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;
    use time::Month;

    fn inv(
        id: &str,
        doc: Option<&str>,
        end: Option<OffsetDateTime>,
        issued: Option<OffsetDateTime>,
    ) -> Invoice {
        Invoice {
            id: id.parse().unwrap(),
            invoice_date: issued,
            billing_period_start_date: None,
            billing_period_end_date: end,
            currency_code: None,
            document_type: doc.map(str::to_string),
            invoice_type: None,
        }
    }

    #[test]
    fn parses_partner_center_items() {
        let item: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/partner-center/invoice-lowercase-currency.json"
        ))
        .unwrap();
        let i = parse_invoice(&item).unwrap();
        assert_eq!(i.id.as_str(), "G000024135");
        assert_eq!(
            i.billing_period_end_date,
            Some(datetime!(2024-12-31 0:00 UTC))
        );
        assert_eq!(i.invoice_date, Some(datetime!(2025-01-08 0:00 UTC)));
        assert_eq!(i.currency_code.unwrap().as_str(), "USD");
        assert_eq!(i.invoice_type.as_deref(), Some("Recurring"));
        assert!(parse_invoice(&json!({"id": "../x"})).is_none());
        assert!(parse_invoice(&json!({"id": 5})).is_none());
        assert!(parse_invoice(&json!("G1")).is_none());
    }

    #[test]
    fn filters_billed_new_commerce_invoices_of_the_month() {
        let dec_end = Some(datetime!(2024-12-31 0:00 UTC));
        let list = vec![
            inv("G0003", Some("Invoice"), dec_end, None),
            inv("G0001", Some("INVOICE"), dec_end, None),
            inv("G0001", Some("Invoice"), dec_end, None),
            inv("G0002", None, dec_end, None),
            inv("G0004", Some("Credit Note"), dec_end, None),
            inv("D0005", Some("Invoice"), dec_end, None),
            inv(
                "G0006",
                Some("Invoice"),
                Some(datetime!(2024-11-30 0:00 UTC)),
                None,
            ),
            // No period: issued in January means December's invoice.
            inv(
                "G0007",
                Some("Invoice"),
                None,
                Some(datetime!(2025-01-08 0:00 UTC)),
            ),
            inv(
                "G0008",
                Some("Invoice"),
                None,
                Some(datetime!(2024-12-08 0:00 UTC)),
            ),
            inv("G0009", Some("Invoice"), None, None),
            // An exclusive end (midnight of the next month) is still December's invoice.
            inv(
                "G0010",
                Some("Invoice"),
                Some(datetime!(2025-01-01 0:00 UTC)),
                None,
            ),
            // The period start decides, whatever the end says.
            Invoice {
                billing_period_start_date: Some(datetime!(2024-12-01 0:00 UTC)),
                ..inv(
                    "G0011",
                    Some("Invoice"),
                    Some(datetime!(2025-01-15 0:00 UTC)),
                    None,
                )
            },
        ];
        let dec = BillingMonth::new(2024, Month::December);
        let ids: Vec<String> = billed_invoices_for_month(&list, dec)
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(ids, ["G0001", "G0002", "G0003", "G0007", "G0010", "G0011"]);
        let nov: Vec<String> = billed_invoices_for_month(&list, dec.previous())
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(nov, ["G0006", "G0008"]);
    }

    #[test]
    fn invoices_url_keeps_the_base_path() {
        let http = AuthorizedHttp::new(
            crate::auth::http_client(),
            std::sync::Arc::new(crate::auth::StaticTokenSource::new()),
            crate::auth::AllowList::default(),
        );
        let c = PartnerCenterClient::new(
            http.clone(),
            Url::parse("http://127.0.0.1:5/partnercenter").unwrap(),
        );
        assert_eq!(
            c.invoices_url(200).as_str(),
            "http://127.0.0.1:5/partnercenter/v1/invoices?size=100&offset=200"
        );
        let c = PartnerCenterClient::new(
            http,
            Url::parse("https://api.partnercenter.microsoft.com/").unwrap(),
        );
        assert_eq!(
            c.invoices_url(0).as_str(),
            "https://api.partnercenter.microsoft.com/v1/invoices?size=100&offset=0"
        );
    }

    #[test]
    fn page_shape_checks() {
        assert!(page_items(&json!({"items": {}})).is_err());
        assert_eq!(page_items(&json!({"totalCount": 0})).unwrap().len(), 0);
        assert_eq!(total_count(&json!({"totalCount": 3})), Some(3));
    }
}

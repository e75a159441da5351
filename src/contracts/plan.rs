//! `GET /api/plan` and `POST /api/backfill`: what the start timers would start ([`PlanBody`]
//! of [`TimerPlan`]s), the backfill request ([`BackfillRequest`]) and its answer
//! ([`BackfillBody`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::billing::{
    BillingMonth, BillingPeriod, CurrencyCode, ExportKind, ExportRequest, ExportScope,
    InvalidInput, InvoiceId, PartnerId,
};

/// `GET /api/plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanBody {
    #[serde(with = "super::date")]
    pub as_of: time::Date,
    /// By timer name (`StartBilledExports`, `StartUnbilledExports`).
    pub timers: BTreeMap<String, TimerPlans>,
}

/// One timer's plan: the implicit partner's alone, or one per listed partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimerPlans {
    Partners {
        partners: BTreeMap<PartnerId, TimerPlan>,
    },
    Single(Box<TimerPlan>),
}

/// What one firing would start for one partner, and what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerPlan {
    pub start: Vec<PlannedExport>,
    pub skipped: Vec<SkippedExport>,
    pub notes: Vec<String>,
    pub invoices_missing: Option<InvoicesMissingNote>,
    pub discovery_failure: Option<DiscoveryFailureNote>,
    /// A listed partner's plan names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
    /// The look-back window (the plan of a timer; a backfill names `from` and `to` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_months: Option<Vec<BillingMonth>>,
}

/// One export a plan starts; in a backfill answer, with what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedExport {
    /// The request in words (`billedUsage invoice G… (full)`).
    pub request: String,
    pub kind: ExportKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_period: Option<BillingPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<CurrencyCode>,
    /// The billing month of its invoice, when discovered from Partner Center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_month: Option<BillingMonth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<BackfillOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// Why it was rejected, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PlannedExport {
    /// A planned request, before anything became of it.
    pub fn of(request: &ExportRequest, billing_month: Option<BillingMonth>) -> Self {
        let (invoice_id, billing_period, currency_code) = match &request.scope {
            ExportScope::Invoice { invoice_id } => (Some(invoice_id.clone()), None, None),
            ExportScope::Period { period, currency } => {
                (None, Some(*period), Some(currency.clone()))
            }
        };
        Self {
            request: request.to_string(),
            kind: request.kind,
            partner: request.partner.listed().cloned(),
            invoice_id,
            billing_period,
            currency_code,
            billing_month,
            outcome: None,
            run_id: None,
            status_url: None,
            reason: None,
        }
    }
}

/// What a backfill did with a planned export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BackfillOutcome {
    Started,
    Duplicate,
    Rejected,
    Error,
}

/// Something a plan leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedExport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_month: Option<BillingMonth>,
    /// `billed`, `unbilled`, or the export request (`billedUsage invoice G… (full)`).
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `already exported`, `already exported (Graph had no data for it)`, `running`, ...
    pub reason: String,
}

/// Last month's invoices are overdue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicesMissingNote {
    pub billing_month: BillingMonth,
    #[serde(with = "super::date")]
    pub expected_by: time::Date,
}

/// Partner Center could not list the invoices: billed exports were not planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryFailureNote {
    /// In a backfill answer of listed partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
    /// `yyyy-MM`.
    pub billing_month: String,
    pub reason: String,
    /// What the operator can do about it.
    pub fix: String,
}

/// The body of `POST /api/backfill`: `{"from": "2025-01", "to": "2025-06"}`, optional `kinds`
/// (default `EXPORT_KINDS`), `partners` (default all) and `dryRun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillRequest {
    pub from: BillingMonth,
    /// Default: `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<BillingMonth>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed_list")]
    pub kinds: Option<Vec<ExportKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed_list")]
    pub partners: Option<Vec<PartnerId>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl BackfillRequest {
    pub const FIELDS: [&'static str; 5] = ["from", "to", "kinds", "partners", "dryRun"];

    /// Reads the body, naming the offending field on error (`body` for the body as a whole).
    /// The range itself (`to` not before `from`, its length) is the caller's to check.
    pub fn parse(body: Option<&str>) -> Result<Self, InvalidInput> {
        let body = body.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
            InvalidInput::new(
                "body",
                "expected {\"from\": \"2025-01\", \"to\": \"2025-06\"}",
            )
        })?;
        let mut r: Self = super::parse_body(body, &Self::FIELDS)?;
        if r.partners.as_ref().is_some_and(Vec::is_empty) {
            return Err(InvalidInput::new(
                "partners",
                "expected a non-empty array of partner ids",
            ));
        }
        r.to.get_or_insert(r.from);
        Ok(r)
    }

    /// The range, checked: `to` not before `from`, at most `max_months` months.
    pub fn range(&self, max_months: usize) -> Result<(BillingMonth, BillingMonth), InvalidInput> {
        let (from, to) = (self.from, self.to.unwrap_or(self.from));
        if to < from {
            return Err(InvalidInput::new(
                "to",
                format!("the range ends ({to}) before it starts ({from})"),
            ));
        }
        if from.through(to).len() > max_months {
            return Err(InvalidInput::new(
                "to",
                format!("more than {max_months} months"),
            ));
        }
        Ok((from, to))
    }
}

/// `POST /api/backfill`'s answer: the plan of the range, each `start[]` entry with its
/// `outcome` (none in a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillBody {
    #[serde(flatten)]
    pub plan: TimerPlan,
    pub from: BillingMonth,
    pub to: BillingMonth,
    pub dry_run: bool,
    /// The partners planned, when the deployment lists partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partners: Option<Vec<PartnerId>>,
    /// Each listed partner's discovery failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_failures: Option<Vec<DiscoveryFailureNote>>,
}

/// An optional list of values each read with `FromStr` (`billed-usage` for `billedUsage`).
mod parsed_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Vec<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Vec<T>>, D::Error>
    where
        T: std::str::FromStr<Err = crate::billing::InvalidInput>,
        D: Deserializer<'de>,
    {
        Option::<Vec<String>>::deserialize(d)?
            .map(|items| {
                items
                    .iter()
                    .map(|s| s.parse::<T>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| serde::de::Error::custom(e.reason))
            })
            .transpose()
    }
}

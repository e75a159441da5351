//! The `Exports` HTTP API: the body `POST /api/exports` takes ([`StartExportBody`]), the view
//! of one run (`GET /api/exports/{runId}`, [`RunView`]; the start answer adds [`StartedRun`]),
//! and the list of runs (`GET /api/exports`, [`RunList`] of [`RunBrief`], filtered and paged by
//! a [`ListQuery`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::run::{FailureCode, RunId, RunState, Trigger};
use crate::billing::{
    AttributeSet, BillingMonth, BillingPeriod, CurrencyCode, ExportKind, ExportRequest,
    InvalidInput, InvoiceId, PartnerId,
};

/// A run as the status API shows it: progress while running, files and counts when done, the
/// reason when failed. Never a SAS or token (the ledger holds none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: RunId,
    pub status: RunState,
    /// Always present (`default` for the implicit partner).
    pub partner: PartnerId,
    /// The run record's request, as the ledger stores it (`scope` with `by`).
    pub request: ExportRequest,
    pub trigger: Trigger,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub progress: RunProgress,
    /// Completed runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Failed runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RunFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunProgress {
    pub polls: u32,
    pub restarts: u32,
    pub last_operation_status: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_poll_at: Option<OffsetDateTime>,
    pub parts_done: usize,
    pub parts_total: usize,
    pub bytes_copied: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub folder: Option<String>,
    /// The run's `_manifest.json`.
    pub manifest: Option<String>,
    #[serde(rename = "sourceETag")]
    pub source_etag: Option<String>,
    pub no_data: bool,
    pub no_data_reason: Option<String>,
    /// `yyyyMM`.
    pub billing_month: Option<String>,
    pub blob_count: usize,
    pub byte_count: u64,
    pub row_count: Option<u64>,
    pub files: Vec<RunFile>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// The invoice check and FinOps hubs landing after completion, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<super::run::FollowUp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFile {
    pub path: String,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    pub md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFailure {
    pub code: Option<FailureCode>,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

/// The answer to `POST /api/exports`: the run, where to ask about it, and whether the same
/// export was already running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    #[serde(flatten)]
    pub run: RunView,
    pub status_url: String,
    pub duplicate: bool,
}

/// One run in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunBrief {
    pub run_id: RunId,
    pub status: RunState,
    pub partner: PartnerId,
    pub request: ExportRequest,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub no_data: bool,
    /// `yyyyMM`.
    pub billing_month: Option<String>,
    pub parts_done: usize,
    pub parts_total: usize,
}

/// `GET /api/exports`: a page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunBrief>,
    /// Runs that matched, when the listing got to the end of them (a first page without
    /// `after` that holds every match); absent when counting would mean reading all history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    pub offset: usize,
    pub limit: usize,
    /// The next page's URL, while more match.
    pub next: Option<String>,
}

/// A run state to list, or `noData` (completed without data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StateFilter {
    Starting,
    Polling,
    Copying,
    Completed,
    Failed,
    NoData,
}

impl StateFilter {
    pub const ALL: [StateFilter; 6] = [
        StateFilter::Starting,
        StateFilter::Polling,
        StateFilter::Copying,
        StateFilter::Completed,
        StateFilter::Failed,
        StateFilter::NoData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Starting => "starting",
            StateFilter::Polling => "polling",
            StateFilter::Copying => "copying",
            StateFilter::Completed => "completed",
            StateFilter::Failed => "failed",
            StateFilter::NoData => "noData",
        }
    }
}

/// Largest page of runs.
pub const MAX_PAGE: usize = 500;
/// Page size without `limit`.
pub const DEFAULT_PAGE: usize = 100;

/// `GET /api/exports` filters and paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub partner: Option<PartnerId>,
    pub kind: Option<ExportKind>,
    pub state: Option<StateFilter>,
    pub billing_month: Option<BillingMonth>,
    pub limit: usize,
    pub offset: usize,
    /// Runs older than this one only: the cursor `next` links carry, so a page costs the same
    /// however deep into history it is.
    pub after: Option<RunId>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            partner: None,
            kind: None,
            state: None,
            billing_month: None,
            limit: DEFAULT_PAGE,
            offset: 0,
            after: None,
        }
    }
}

/// The body of `POST /api/exports`: `kind`, and `invoiceId` (billed kinds) or `billingPeriod`
/// and `currencyCode` (unbilled kinds); optional `attributeSet` and `partner`. Unknown fields
/// are refused: a typo such as `inoiceId` must not silently start the wrong export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartExportBody {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub partner: Option<PartnerId>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub kind: Option<ExportKind>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub invoice_id: Option<InvoiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub billing_period: Option<BillingPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub currency_code: Option<CurrencyCode>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "parsed")]
    pub attribute_set: Option<AttributeSet>,
}

impl StartExportBody {
    pub const FIELDS: [&'static str; 6] = [
        "partner",
        "kind",
        "invoiceId",
        "billingPeriod",
        "currencyCode",
        "attributeSet",
    ];

    /// Reads the body, naming the offending field on error (`body` for the body as a whole).
    pub fn parse(body: Option<&str>) -> Result<Self, InvalidInput> {
        let body = body.ok_or_else(|| InvalidInput::new("body", "a JSON object is required"))?;
        super::parse_body(body, &Self::FIELDS)
    }

    /// The export it asks for, with the scope checked against the kind.
    pub fn into_request(self) -> Result<ExportRequest, InvalidInput> {
        let kind = self
            .kind
            .ok_or_else(|| InvalidInput::new("kind", "is required"))?;
        let attribute_set = self.attribute_set.unwrap_or(AttributeSet::Full);
        let partner = self.partner.unwrap_or_default();
        if kind.is_billed() {
            let not_billed = [
                ("billingPeriod", self.billing_period.is_some()),
                ("currencyCode", self.currency_code.is_some()),
            ];
            if let Some((f, _)) = not_billed.into_iter().find(|(_, present)| *present) {
                return Err(InvalidInput::new(
                    f,
                    format!("does not apply to {kind} (billed exports take invoiceId)"),
                ));
            }
            let invoice = self
                .invoice_id
                .ok_or_else(|| InvalidInput::new("invoiceId", format!("is required for {kind}")))?;
            ExportRequest::billed(kind, invoice, attribute_set).map(|r| r.for_partner(partner))
        } else {
            if self.invoice_id.is_some() {
                return Err(InvalidInput::new(
                    "invoiceId",
                    format!("does not apply to {kind} (unbilled exports take billingPeriod and currencyCode)"),
                ));
            }
            let period = self.billing_period.ok_or_else(|| {
                InvalidInput::new("billingPeriod", format!("is required for {kind}"))
            })?;
            let currency = self.currency_code.ok_or_else(|| {
                InvalidInput::new("currencyCode", format!("is required for {kind}"))
            })?;
            ExportRequest::unbilled(kind, period, currency, attribute_set)
                .map(|r| r.for_partner(partner))
        }
    }
}

/// An optional value read from a string the way a person may write it (`FromStr`: e.g.
/// `billed-usage` for `billedUsage`), written as its canonical JSON.
pub(crate) mod parsed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: std::str::FromStr<Err = crate::billing::InvalidInput>,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e: crate::billing::InvalidInput| serde::de::Error::custom(e.reason)),
        }
    }
}

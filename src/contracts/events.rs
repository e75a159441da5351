//! The `data` of every CloudEvent we publish, and the event type names. The envelope
//! (`adapters::events::CloudEvent`) carries one [`EventData`]: its variant is the `type`, its
//! content the `data`. A breaking change to a payload gets a new `.v2` type.
//!
//! A listed partner's events carry `partner` (run events also `partnerTenantId`); the implicit
//! partner's carry neither ([`PartnerId::listed`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::amount::Amount;
use super::run::{CopyMethod, FailureCode, RunId, Trigger};
use crate::billing::{
    AttributeSet, BillingPeriod, CurrencyCode, ExportKind, ExportRequest, ExportScope, InvoiceId,
    PartnerId,
};

/// Declares the event types: the [`EventType`] vocabulary and the [`EventData`] enum, from one
/// list, so a type name is written once.
macro_rules! event_types {
    ($($(#[$doc:meta])* $variant:ident($payload:ty) = $name:literal;)+) => {
        /// Our event types, with their stable CloudEvents `type` names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)+
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)+];

            /// The CloudEvents `type`, e.g. `PartnerBillingExport.ExportStarted.v1`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)+
                }
            }
        }

        /// An event's `data`, by its `type` (adjacently tagged, as the envelope carries them).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum EventData {
            $($(#[$doc])* #[serde(rename = $name)] $variant($payload),)+
        }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self {
                    $(EventData::$variant(_) => EventType::$variant,)+
                }
            }

            /// The `data` member alone.
            pub fn to_data(&self) -> serde_json::Value {
                let data = match self {
                    $(EventData::$variant(d) => serde_json::to_value(d),)+
                };
                // Every payload is a struct of plain fields: serialising cannot fail.
                data.unwrap_or_default()
            }
        }
    };
}

event_types! {
    /// Graph accepted the export (again after a `410 Gone` restart).
    ExportStarted(ExportStarted) = "PartnerBillingExport.ExportStarted.v1";
    /// Every partition copied and verified, or Graph had no data for the export.
    ExportCompleted(ExportCompleted) = "PartnerBillingExport.ExportCompleted.v1";
    /// The run failed (Graph's code, or ours).
    ExportFailed(ExportFailed) = "PartnerBillingExport.ExportFailed.v1";
    /// The timer could not list invoices in Partner Center.
    InvoiceDiscoveryFailed(InvoiceDiscoveryFailed) = "PartnerBillingExport.InvoiceDiscoveryFailed.v1";
    /// A billed reconciliation (and its usage) adds up to its invoice.
    InvoiceReconciled(InvoiceChecked) = "PartnerBillingExport.InvoiceReconciled.v1";
    /// The data does not add up to its invoice.
    InvoiceMismatch(InvoiceChecked) = "PartnerBillingExport.InvoiceMismatch.v1";
    /// Last month's invoices had not appeared by the configured day.
    InvoicesMissing(InvoicesMissing) = "PartnerBillingExport.InvoicesMissing.v1";
    /// A firing could not start some of one partner's exports.
    ExportsNotStarted(ExportsNotStarted) = "PartnerBillingExport.ExportsNotStarted.v1";
    /// Planning gave an export up after failed attempts.
    ExportAbandoned(ExportAbandoned) = "PartnerBillingExport.ExportAbandoned.v1";
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventData {
    /// Reads an envelope's `type` and `data` back.
    pub fn parse(event_type: &str, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        let mut envelope = serde_json::Map::new();
        envelope.insert("type".into(), event_type.into());
        envelope.insert("data".into(), data);
        serde_json::from_value(serde_json::Value::Object(envelope))
    }

    /// Names the listed partner's tenant in a run event (`partnerTenantId`); other events
    /// are left as they are.
    pub fn set_partner_tenant(&mut self, tenant: &str) {
        let slot = match self {
            EventData::ExportStarted(d) => &mut d.run.partner_tenant_id,
            EventData::ExportCompleted(d) => &mut d.run.partner_tenant_id,
            EventData::ExportFailed(d) => &mut d.run.partner_tenant_id,
            _ => return,
        };
        *slot = Some(tenant.to_string());
    }
}

/// The export a run event is about, flattened for consumers: `kind`, `invoiceId` or
/// `billingPeriod` + `currencyCode`, `attributeSet` (and a listed partner's `partner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestData {
    pub kind: ExportKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_period: Option<BillingPeriod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<CurrencyCode>,
    pub attribute_set: AttributeSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
}

impl From<&ExportRequest> for RequestData {
    fn from(r: &ExportRequest) -> Self {
        let (invoice_id, billing_period, currency_code) = match &r.scope {
            ExportScope::Invoice { invoice_id } => (Some(invoice_id.clone()), None, None),
            ExportScope::Period { period, currency } => {
                (None, Some(*period), Some(currency.clone()))
            }
        };
        Self {
            kind: r.kind,
            invoice_id,
            billing_period,
            currency_code,
            attribute_set: r.attribute_set,
            partner: r.partner.listed().cloned(),
        }
    }
}

/// What every run event says about its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunData {
    pub run_id: RunId,
    pub trigger: Trigger,
    pub request: RequestData,
    /// A listed partner's id (absent for the implicit partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
    /// A listed partner's Entra ID tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_tenant_id: Option<String>,
}

/// `data` of `ExportStarted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportStarted {
    #[serde(flatten)]
    pub run: RunData,
    pub restarts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub poll_deadline: Option<OffsetDateTime>,
}

/// One copied blob in `ExportCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedBlob {
    pub path: String,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    pub md5: Option<String>,
    pub copy_method: Option<CopyMethod>,
}

/// Blobs listed inline in a completion event; beyond this the event points at `_manifest.json`
/// (Event Grid caps an event at 1 MB).
pub const MAX_EVENT_BLOBS: usize = 500;

/// `data` of `ExportCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCompleted {
    #[serde(flatten)]
    pub run: RunData,
    pub folder: String,
    pub manifest: String,
    /// The export's `_current.json`.
    pub current: Option<String>,
    #[serde(rename = "sourceETag")]
    pub source_etag: Option<String>,
    /// `yyyyMM`.
    pub billing_month: Option<String>,
    pub no_data: bool,
    pub no_data_reason: Option<String>,
    pub blob_count: usize,
    pub byte_count: u64,
    pub row_count: Option<u64>,
    /// The first [`MAX_EVENT_BLOBS`].
    pub blobs: Vec<CompletedBlob>,
    pub blobs_truncated: bool,
    /// Superseded versions of the export deleted by retention as this run became current;
    /// absent when there was nothing to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionOutcome>,
    /// Values the Parquet and FOCUS files could not hold exactly, rounded half to even
    /// (docs/parquet.md); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounded_values: Option<u64>,
}

/// What retention (`KEEP_SUPERSEDED_VERSIONS`) did to an export's older data versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionOutcome {
    pub versions_deleted: u32,
    pub files_deleted: u64,
    /// Superseded versions still in storage.
    pub versions_kept: u32,
    /// Why some deletion failed; it is tried again at the export's next completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `data` of `ExportFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFailed {
    #[serde(flatten)]
    pub run: RunData,
    pub code: Option<FailureCode>,
    pub reason: Option<String>,
    pub polls: u32,
    pub restarts: u32,
    pub parts_done: usize,
    pub parts_total: usize,
}

/// `data` of `InvoiceDiscoveryFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDiscoveryFailed {
    /// `yyyy-MM`.
    pub billing_month: String,
    pub reason: String,
    /// What to change.
    pub fix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
}

/// `data` of `ExportAbandoned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportAbandoned {
    /// The export, as logs name it.
    pub request: String,
    /// The last failed run.
    pub last_run_id: String,
    /// Failed runs of the export.
    pub attempts: u32,
    /// Why the last run failed.
    pub reason: String,
    /// What the operator can do.
    pub fix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
}

/// `data` of `ExportsNotStarted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportsNotStarted {
    /// `billed` or `unbilled`.
    pub group: String,
    #[serde(with = "super::date")]
    pub fired_on: time::Date,
    pub count: usize,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
}

/// `data` of `InvoicesMissing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicesMissing {
    /// `yyyy-MM`.
    pub billing_month: String,
    #[serde(with = "super::date")]
    pub expected_by: time::Date,
    #[serde(with = "super::date")]
    pub checked_on: time::Date,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
}

/// `data` of `InvoiceReconciled` and `InvoiceMismatch`: the check, and the reconciliation run
/// it checked (`runId` and `reconciliationRunId` are the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceChecked {
    pub run_id: String,
    pub reconciliation_run_id: String,
    #[serde(flatten)]
    pub check: InvoiceCheck,
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
    /// Per customer, largest first (at most 200).
    pub customers: Vec<CustomerTotal>,
    pub customers_truncated: bool,
    /// Billed usage against the invoice's Azure lines, once the invoice's billed usage has
    /// landed too (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_usage: Option<UsageCheck>,
}

/// One customer's billed usage against its Azure lines on the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDifference {
    pub customer_id: String,
    pub currency: String,
    /// Σ `BillingPreTaxTotal` of the customer's billed usage.
    pub usage_total: Amount,
    /// Σ `Subtotal` of the customer's Azure lines.
    pub azure_lines_total: Amount,
    /// `usage_total - azure_lines_total`.
    pub difference: Amount,
    /// The rounding the lines may account for (see the module comment).
    pub allowed: Amount,
    pub azure_lines: u64,
}

/// Billed usage summed against the invoice's Azure lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageCheck {
    pub verdict: Verdict,
    /// The billed usage run compared.
    pub usage_run_id: String,
    /// Distinct products (`ProductId`, `SkuId`) in the billed usage.
    pub products: usize,
    pub usage_total: Amount,
    pub azure_lines_total: Amount,
    /// Per customer and currency, those beyond their allowance first, then by size of the
    /// difference (at most 200).
    pub customers: Vec<UsageDifference>,
    pub customers_truncated: bool,
}

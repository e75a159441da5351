//! Domain types of the Graph partner billing export API. Every value that comes from outside
//! (HTTP bodies, queue messages, app settings) is parsed into one of these before use, so the
//! rest of the code never handles unchecked strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value was refused; `field` names the input field for 400 problem bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The four export endpoints under `/reports/partners/billing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum ExportKind {
    BilledUsage,
    UnbilledUsage,
    BilledReconciliation,
    UnbilledReconciliation,
}

impl ExportKind {
    pub const ALL: [ExportKind; 4] = [
        ExportKind::BilledUsage,
        ExportKind::UnbilledUsage,
        ExportKind::BilledReconciliation,
        ExportKind::UnbilledReconciliation,
    ];

    /// Path below `/reports/partners/billing/` (before `/export`).
    pub fn api_path(self) -> &'static str {
        match self {
            ExportKind::BilledUsage => "usage/billed",
            ExportKind::UnbilledUsage => "usage/unbilled",
            ExportKind::BilledReconciliation => "reconciliation/billed",
            ExportKind::UnbilledReconciliation => "reconciliation/unbilled",
        }
    }

    pub fn from_api_path(dataset: &str, state: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.api_path() == format!("{dataset}/{state}"))
    }

    /// Kebab-case name used in storage paths, event subjects and the CLI.
    pub fn slug(self) -> &'static str {
        match self {
            ExportKind::BilledUsage => "billed-usage",
            ExportKind::UnbilledUsage => "unbilled-usage",
            ExportKind::BilledReconciliation => "billed-reconciliation",
            ExportKind::UnbilledReconciliation => "unbilled-reconciliation",
        }
    }

    /// Billed exports are per invoice; unbilled ones per period and currency.
    pub fn is_billed(self) -> bool {
        matches!(
            self,
            ExportKind::BilledUsage | ExportKind::BilledReconciliation
        )
    }

    pub fn is_usage(self) -> bool {
        matches!(self, ExportKind::BilledUsage | ExportKind::UnbilledUsage)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::BilledUsage => "billedUsage",
            ExportKind::UnbilledUsage => "unbilledUsage",
            ExportKind::BilledReconciliation => "billedReconciliation",
            ExportKind::UnbilledReconciliation => "unbilledReconciliation",
        }
    }
}

impl fmt::Display for ExportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportKind {
    type Err = InvalidInput;
    /// Accepts the camelCase API name and the kebab-case slug, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s) || k.slug().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                InvalidInput::new(
                    "kind",
                    format!(
                        "unknown export kind {:?}; expected one of billedUsage, unbilledUsage, billedReconciliation, unbilledReconciliation",
                        truncate(s, 40)
                    ),
                )
            })
    }
}

/// A Partner Center invoice id such as `G016907411`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct InvoiceId(String);

impl InvoiceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InvoiceId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Real ids are a letter and digits; allow a little more but nothing that could
        // escape a path segment or a JSON string.
        if s.is_empty() || s.len() > 40 {
            return Err(InvalidInput::new("invoiceId", "must be 1 to 40 characters"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(InvalidInput::new(
                "invoiceId",
                "may contain only letters, digits and '-'",
            ));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }
}

impl TryFrom<String> for InvoiceId {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InvoiceId> for String {
    fn from(v: InvoiceId) -> String {
        v.0
    }
}

impl fmt::Display for InvoiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `billingPeriod` of the unbilled exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum BillingPeriod {
    Current,
    Last,
}

impl BillingPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingPeriod::Current => "current",
            BillingPeriod::Last => "last",
        }
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BillingPeriod {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "current" => Ok(BillingPeriod::Current),
            "last" => Ok(BillingPeriod::Last),
            _ => Err(InvalidInput::new(
                "billingPeriod",
                "expected \"current\" or \"last\"",
            )),
        }
    }
}

/// ISO 4217 alphabetic currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct CurrencyCode(String);

impl CurrencyCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CurrencyCode {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 3 && s.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(InvalidInput::new(
                "currencyCode",
                "expected a three-letter ISO 4217 code such as USD",
            ))
        }
    }
}

impl TryFrom<String> for CurrencyCode {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CurrencyCode> for String {
    fn from(v: CurrencyCode) -> String {
        v.0
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `attributeSet`: which columns the export carries.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub enum AttributeSet {
    #[default]
    Full,
    Basic,
}

impl AttributeSet {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeSet::Full => "full",
            AttributeSet::Basic => "basic",
        }
    }

    /// The set that is not this one.
    pub fn other(self) -> Self {
        match self {
            AttributeSet::Full => AttributeSet::Basic,
            AttributeSet::Basic => AttributeSet::Full,
        }
    }
}

impl fmt::Display for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttributeSet {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(AttributeSet::Full),
            "basic" => Ok(AttributeSet::Basic),
            _ => Err(InvalidInput::new(
                "attributeSet",
                "expected \"full\" or \"basic\"",
            )),
        }
    }
}

/// Which partner tenant an export is for: a path-safe slug (lower-case letters, digits, `-`),
/// used in output paths, ledger keys, events and the status API. [`PartnerId::DEFAULT`] is the
/// implicit partner of a single-tenant deployment (no `PARTNERS`), whose paths and keys carry no
/// partner at all, so a record without a partner is the implicit partner's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(try_from = "String", into = "String")]
pub struct PartnerId(String);

impl PartnerId {
    pub const DEFAULT_STR: &'static str = "default";

    /// The implicit partner of a single-tenant deployment.
    pub fn default_partner() -> Self {
        Self(Self::DEFAULT_STR.to_string())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT_STR
    }

    /// A listed partner's id; `None` for the implicit partner, whose paths, keys and events
    /// carry no partner at all.
    pub fn listed(&self) -> Option<&PartnerId> {
        (!self.is_default()).then_some(self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PartnerId {
    fn default() -> Self {
        Self::default_partner()
    }
}

impl FromStr for PartnerId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        // One path segment, short enough to leave room for the rest of a blob path.
        if s.is_empty() || s.len() > 64 {
            return Err(InvalidInput::new("partner", "must be 1 to 64 characters"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || s.starts_with('-')
            || s.ends_with('-')
        {
            return Err(InvalidInput::new(
                "partner",
                format!(
                    "{:?} may contain only letters, digits and '-' (not at either end)",
                    truncate(&s, 70)
                ),
            ));
        }
        Ok(Self(s))
    }
}

impl TryFrom<String> for PartnerId {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PartnerId> for String {
    fn from(v: PartnerId) -> String {
        v.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one export covers: an invoice (billed kinds) or a period in a currency (unbilled kinds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", tag = "by")]
pub enum ExportScope {
    Invoice {
        #[serde(rename = "invoiceId")]
        invoice_id: InvoiceId,
    },
    Period {
        #[serde(rename = "billingPeriod")]
        period: BillingPeriod,
        #[serde(rename = "currencyCode")]
        currency: CurrencyCode,
    },
}

/// One export to run: validated so that the scope always fits the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ExportRequest {
    pub kind: ExportKind,
    pub scope: ExportScope,
    #[serde(default)]
    pub attribute_set: AttributeSet,
    /// Left out for the implicit partner: single-tenant records, keys and events carry no
    /// partner field.
    #[serde(default, skip_serializing_if = "PartnerId::is_default")]
    pub partner: PartnerId,
}

impl ExportRequest {
    pub fn billed(
        kind: ExportKind,
        invoice: InvoiceId,
        attribute_set: AttributeSet,
    ) -> Result<Self, InvalidInput> {
        Self::new(
            kind,
            ExportScope::Invoice {
                invoice_id: invoice,
            },
            attribute_set,
        )
    }

    pub fn unbilled(
        kind: ExportKind,
        period: BillingPeriod,
        currency: CurrencyCode,
        attribute_set: AttributeSet,
    ) -> Result<Self, InvalidInput> {
        Self::new(
            kind,
            ExportScope::Period { period, currency },
            attribute_set,
        )
    }

    pub fn new(
        kind: ExportKind,
        scope: ExportScope,
        attribute_set: AttributeSet,
    ) -> Result<Self, InvalidInput> {
        let req = Self {
            kind,
            scope,
            attribute_set,
            partner: PartnerId::default_partner(),
        };
        req.validate()?;
        Ok(req)
    }

    /// The same export for another partner tenant.
    pub fn for_partner(mut self, partner: PartnerId) -> Self {
        self.partner = partner;
        self
    }

    /// Checks that the scope fits the kind (also used after deserializing from the ledger or a queue).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match (&self.scope, self.kind.is_billed()) {
            (ExportScope::Invoice { .. }, true) | (ExportScope::Period { .. }, false) => Ok(()),
            (ExportScope::Period { .. }, true) => Err(InvalidInput::new(
                "invoiceId",
                format!("{} exports need an invoiceId", self.kind),
            )),
            (ExportScope::Invoice { .. }, false) => Err(InvalidInput::new(
                "billingPeriod",
                format!("{} exports need billingPeriod and currencyCode", self.kind),
            )),
        }
    }

    /// The JSON body Graph expects for this export's POST.
    pub fn graph_body(&self) -> serde_json::Value {
        match &self.scope {
            ExportScope::Invoice { invoice_id } => serde_json::json!({
                "invoiceId": invoice_id.as_str(),
                "attributeSet": self.attribute_set.as_str(),
            }),
            ExportScope::Period { period, currency } => serde_json::json!({
                "billingPeriod": period.as_str(),
                "currencyCode": currency.as_str(),
                "attributeSet": self.attribute_set.as_str(),
            }),
        }
    }

    /// Stable, path-safe identity of the request: the same export asked twice has the same key.
    /// A listed partner's keys live under `partners/{id}/`; the implicit partner's have no
    /// `partners/` segment.
    pub fn key(&self) -> String {
        match self.partner.listed() {
            Some(p) => format!("partners/{p}/{}", self.partner_key()),
            None => self.partner_key(),
        }
    }

    /// The key the run ledger indexes a run of this export under when it starts on `on`: an
    /// unbilled export names its billing month too (`current` on 1 December is December's
    /// data, a different export from November's `current`), so a run still active across
    /// midnight on the 1st never holds up the new month's first start.
    pub fn ledger_key(&self, on: time::Date) -> String {
        match &self.scope {
            ExportScope::Invoice { .. } => self.key(),
            ExportScope::Period { period, .. } => {
                let month = match period {
                    BillingPeriod::Current => super::BillingMonth::of(on),
                    BillingPeriod::Last => super::BillingMonth::of(on).previous(),
                };
                format!("{}@{}", self.key(), month.compact())
            }
        }
    }

    /// The key within one partner.
    fn partner_key(&self) -> String {
        match &self.scope {
            ExportScope::Invoice { invoice_id } => {
                format!(
                    "{}/invoice-{}/{}",
                    self.kind.slug(),
                    invoice_id,
                    self.attribute_set
                )
            }
            ExportScope::Period { period, currency } => format!(
                "{}/{}-{}/{}",
                self.kind.slug(),
                period,
                currency.as_str().to_ascii_lowercase(),
                self.attribute_set
            ),
        }
    }
}

impl fmt::Display for ExportRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.partner.listed() {
            write!(f, "partner {p}: ")?;
        }
        match &self.scope {
            ExportScope::Invoice { invoice_id } => {
                write!(
                    f,
                    "{} invoice {} ({})",
                    self.kind, invoice_id, self.attribute_set
                )
            }
            ExportScope::Period { period, currency } => write!(
                f,
                "{} {} period in {} ({})",
                self.kind, period, currency, self.attribute_set
            ),
        }
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_api_names_and_slugs() {
        for k in ExportKind::ALL {
            assert_eq!(k.as_str().parse::<ExportKind>().unwrap(), k);
            assert_eq!(k.slug().parse::<ExportKind>().unwrap(), k);
            let (a, b) = k.api_path().split_once('/').unwrap();
            assert_eq!(ExportKind::from_api_path(a, b), Some(k));
        }
        let err = "usage".parse::<ExportKind>().unwrap_err();
        assert_eq!(err.field, "kind");
    }

    #[test]
    fn invoice_ids_are_checked_and_normalised() {
        assert_eq!(
            "g016907411".parse::<InvoiceId>().unwrap().as_str(),
            "G016907411"
        );
        assert!("../etc".parse::<InvoiceId>().is_err());
        assert!("".parse::<InvoiceId>().is_err());
        assert!("A".repeat(41).parse::<InvoiceId>().is_err());
    }

    #[test]
    fn currency_and_period_and_attribute_set() {
        assert_eq!("usd".parse::<CurrencyCode>().unwrap().as_str(), "USD");
        assert!("US".parse::<CurrencyCode>().is_err());
        assert!("U$D".parse::<CurrencyCode>().is_err());
        assert_eq!(
            "LAST".parse::<BillingPeriod>().unwrap(),
            BillingPeriod::Last
        );
        assert_eq!(
            "Basic".parse::<AttributeSet>().unwrap(),
            AttributeSet::Basic
        );
        assert!("everything".parse::<AttributeSet>().is_err());
    }

    #[test]
    fn scope_must_fit_kind() {
        let inv: InvoiceId = "G1".parse().unwrap();
        assert!(
            ExportRequest::billed(ExportKind::UnbilledUsage, inv.clone(), AttributeSet::Full)
                .is_err()
        );
        let r = ExportRequest::billed(ExportKind::BilledUsage, inv, AttributeSet::Full).unwrap();
        assert_eq!(
            r.graph_body(),
            serde_json::json!({"invoiceId": "G1", "attributeSet": "full"})
        );
        assert_eq!(r.key(), "billed-usage/invoice-G1/full");
        let u = ExportRequest::unbilled(
            ExportKind::UnbilledReconciliation,
            BillingPeriod::Current,
            "eur".parse().unwrap(),
            AttributeSet::Basic,
        )
        .unwrap();
        assert_eq!(
            u.graph_body(),
            serde_json::json!({"billingPeriod": "current", "currencyCode": "EUR", "attributeSet": "basic"})
        );
        assert_eq!(u.key(), "unbilled-reconciliation/current-eur/basic");
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<ExportRequest>(&json).unwrap(), u);
    }

    #[test]
    fn partner_ids_and_partner_keys() {
        assert_eq!(
            "Contoso-EU".parse::<PartnerId>().unwrap().as_str(),
            "contoso-eu"
        );
        for bad in ["", "a/b", "-a", "a-", "a b", "ä", &"x".repeat(65)] {
            assert!(bad.parse::<PartnerId>().is_err(), "{bad:?}");
        }
        let inv: InvoiceId = "G1".parse().unwrap();
        let r = ExportRequest::billed(ExportKind::BilledUsage, inv, AttributeSet::Full).unwrap();
        // The implicit partner is invisible: no partner in the key or the JSON.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "billedUsage", "scope": {"by": "invoice", "invoiceId": "G1"}, "attributeSet": "full"})
        );
        assert_eq!(serde_json::from_value::<ExportRequest>(json).unwrap(), r);
        let p = r.clone().for_partner("contoso".parse().unwrap());
        assert_eq!(p.key(), "partners/contoso/billed-usage/invoice-G1/full");
        assert_eq!(
            p.to_string(),
            "partner contoso: billedUsage invoice G1 (full)"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["partner"], "contoso");
        assert_eq!(serde_json::from_value::<ExportRequest>(json).unwrap(), p);
    }
}

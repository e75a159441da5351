//! What `export` accepts on its command line, and what its exit codes mean.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::billing::{
    AttributeSet, BillingMonth, BillingPeriod, CurrencyCode, ExportKind, InvoiceId, PartnerId,
};
use crate::usecases::backfill::MAX_BACKFILL_MONTHS;

/// `partner-billing-export export`: run exports end to end from this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Partner tenant (an id from PARTNERS / PARTNERS_FILE) to export for; required when the
    /// configuration lists several. Its kinds, currencies and folder apply.
    #[arg(long, value_name = "ID")]
    pub partner: Option<PartnerId>,
    /// Export kind (repeatable or comma-separated): billedUsage, billedReconciliation,
    /// unbilledUsage, unbilledReconciliation. Default: all four.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',')]
    pub kinds: Vec<ExportKind>,
    /// Invoice id for billed exports (repeatable or comma-separated), e.g. G016907411.
    #[arg(long = "invoice", value_name = "ID", value_delimiter = ',')]
    pub invoices: Vec<InvoiceId>,
    /// Billing months whose invoices to export, discovered in Partner Center: 2026-10 or
    /// 2025-09..2026-10. Default (without --invoice): the timer's look-back window
    /// (BILLED_LOOKBACK_MONTHS before this month). Months before BILLED_HISTORY_FROM or not
    /// invoiced yet are skipped, with the reason.
    #[arg(long, value_name = "FROM..TO", conflicts_with = "invoices")]
    pub months: Option<MonthRange>,
    /// Unbilled billing period (repeatable): current or last. Default: EXPORT_UNBILLED_PERIODS (current).
    #[arg(long = "period", value_name = "PERIOD", value_delimiter = ',')]
    pub periods: Vec<BillingPeriod>,
    /// Currency of unbilled exports (repeatable). Default: EXPORT_UNBILLED_CURRENCIES and the
    /// currencies of the partner's recent invoices (USD when none is known).
    #[arg(long = "currency", value_name = "CODE", value_delimiter = ',')]
    pub currencies: Vec<CurrencyCode>,
    /// full or basic. Default: EXPORT_ATTRIBUTE_SET (full).
    #[arg(long, value_name = "SET")]
    pub attribute_set: Option<AttributeSet>,
    /// Output folder (data, _manifest.json per run, the run ledger, events.jsonl). Default:
    /// ./billing-exports, or the blob destination when DESTINATION_KIND=blob is set.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the plan (what would be exported, what is already in the ledger and why) and
    /// start nothing: the same plan GET /api/plan shows.
    #[arg(long)]
    pub dry_run: bool,
    /// Export again what the ledger says is finished (or given up after failing): new Graph
    /// exports, landing as new versions. Without it a rerun exports only what is missing.
    #[arg(long)]
    pub force: bool,
    /// Machine-readable progress: one JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Partitions copied at the same time.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// How to sign in (boxed: the command's arguments stay small).
    #[command(flatten)]
    pub sign_in: Box<SignInArgs>,
}

/// How `export` signs in to Graph and Partner Center (rule: `cli::sign_in`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignInArgs {
    /// Sign in with a device code as a user of the partner tenant, through this app
    /// registration (application id): a public client with the delegated Microsoft Graph
    /// permission PartnerBilling.Read.All, admin-consented. Default: GRAPH_CLIENT_ID when
    /// GRAPH_CREDENTIAL_KIND=device-code.
    #[arg(long, value_name = "GUID", conflicts_with = "credential")]
    pub client_id: Option<ClientId>,
    /// The partner tenant to sign in to (tenant id or a domain such as contoso.onmicrosoft.com);
    /// overrides GRAPH_TENANT_ID. Default: the partner's tenantId in PARTNERS, else
    /// GRAPH_TENANT_ID.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<Tenant>,
    /// How to sign in to Graph and Partner Center instead of GRAPH_CREDENTIAL_KIND: device-code
    /// (with --client-id or GRAPH_CLIENT_ID) or azure-cli (whose tokens cannot carry
    /// PartnerBilling.Read.All; for other Graph endpoints only).
    #[arg(long, value_name = "KIND")]
    pub credential: Option<CredentialChoice>,
    /// File that keeps the device sign-in's tokens (created 0600). Default:
    /// $PARTNER_BILLING_TOKEN_CACHE, else $XDG_CACHE_HOME/partner-billing-export/tokens.json,
    /// else ~/.cache/partner-billing-export/tokens.json.
    #[arg(long, value_name = "FILE")]
    pub token_cache: Option<PathBuf>,
}

/// An app registration's application (client) id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s.trim())
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| {
                format!(
                    "{s:?} is not an application (client) id: expected a GUID such as \
                     11111111-2222-3333-4444-555555555555 (`az ad app list --display-name NAME --query [].appId`)"
                )
            })
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant: its id (GUID) or one of its domains (contoso.onmicrosoft.com).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a tenant id (which a token's `tid` can be compared with).
    pub fn is_id(&self) -> bool {
        uuid::Uuid::try_parse(&self.0).is_ok()
    }
}

impl FromStr for Tenant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(u) = uuid::Uuid::try_parse(t) {
            return Ok(Self(u.hyphenated().to_string()));
        }
        let domain = t.len() <= 253
            && t.contains('.')
            && t.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if domain {
            Ok(Self(t.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{s:?} is not a tenant: expected the tenant id (a GUID) or a domain of the \
                 tenant such as contoso.onmicrosoft.com"
            ))
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `--credential`: the sign-ins a laptop can use without Function app settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialChoice {
    DeviceCode,
    AzureCli,
}

impl CredentialChoice {
    /// As GRAPH_CREDENTIAL_KIND spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialChoice::DeviceCode => "device-code",
            CredentialChoice::AzureCli => "azure-cli",
        }
    }
}

impl FromStr for CredentialChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "device-code" => Ok(Self::DeviceCode),
            "azure-cli" => Ok(Self::AzureCli),
            other => Err(format!(
                "{other:?}: expected device-code or azure-cli (client secrets and certificates \
                 are set with GRAPH_CREDENTIAL_KIND and the GRAPH_* settings)"
            )),
        }
    }
}

/// The process exit codes of `export` (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every export completed (or Graph had no data for it).
    Completed,
    /// At least one export failed.
    SomeFailed,
    /// Bad arguments or settings, not signed in, destination not writable.
    Usage,
    /// Stopped by Ctrl-C (or SIGTERM); a rerun continues.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Completed => 0,
            ExitStatus::SomeFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
        }
    }
}

/// `2026-10` or `2025-09..2026-10` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthRange {
    pub from: BillingMonth,
    pub to: BillingMonth,
}

impl MonthRange {
    pub fn single(m: BillingMonth) -> Self {
        Self { from: m, to: m }
    }

    /// Every month from `from` to `to`, in order.
    pub fn months(&self) -> Vec<BillingMonth> {
        self.from.through(self.to)
    }
}

impl FromStr for MonthRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let range = match s.split_once("..") {
            Some((a, b)) => Self {
                from: a.parse()?,
                to: b.parse()?,
            },
            None => Self::single(s.parse()?),
        };
        if range.from > range.to {
            return Err(format!(
                "{s:?}: the range ends ({}) before it starts ({})",
                range.to, range.from
            ));
        }
        if range.months().len() > MAX_BACKFILL_MONTHS {
            return Err(format!("{s:?}: more than {MAX_BACKFILL_MONTHS} months"));
        }
        Ok(range)
    }
}

impl fmt::Display for MonthRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}..{}", self.from, self.to)
        }
    }
}

/// `export`'s arguments parsed from `v` (unit tests of the modules that read them).
#[cfg(test)]
pub(crate) fn try_parse_for_test(v: &[&str]) -> Result<ExportArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        export: ExportArgs,
    }
    <Cli as clap::Parser>::try_parse_from(std::iter::once("export").chain(v.iter().copied()))
        .map(|c| c.export)
}

/// [`try_parse_for_test`] for arguments that parse.
#[cfg(test)]
pub(crate) fn parse_for_test(v: &[&str]) -> ExportArgs {
    try_parse_for_test(v).expect("arguments parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ranges() {
        let r: MonthRange = "2025-11..2026-02".parse().unwrap();
        let shown: Vec<String> = r.months().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!("2026-10".parse::<MonthRange>().unwrap().months().len(), 1);
        for bad in [
            "2026-13",
            "2026-1",
            "26-10",
            "2026-10..2026-09",
            "x",
            "2000-01..2020-01",
        ] {
            assert!(bad.parse::<MonthRange>().is_err(), "{bad}");
        }
        assert_eq!(r.to_string(), "2025-11..2026-02");
    }

    #[test]
    fn sign_in_arguments() {
        let id: ClientId = " 11111111-2222-3333-4444-55555555555A ".parse().unwrap();
        assert_eq!(id.as_str(), "11111111-2222-3333-4444-55555555555a");
        assert!("my-app".parse::<ClientId>().is_err());
        let t: Tenant = "Contoso.onmicrosoft.com".parse().unwrap();
        assert_eq!(t.as_str(), "contoso.onmicrosoft.com");
        assert!(!t.is_id());
        let t: Tenant = "AAAAAAAA-1111-2222-3333-444444444444".parse().unwrap();
        assert!(t.is_id());
        assert_eq!(t.as_str(), "aaaaaaaa-1111-2222-3333-444444444444");
        for bad in ["contoso", "a/../b.com", "-x.com", "a..b", "organizations"] {
            assert!(bad.parse::<Tenant>().is_err(), "{bad}");
        }
        assert_eq!(
            "Azure-CLI".parse::<CredentialChoice>(),
            Ok(CredentialChoice::AzureCli)
        );
        assert!("client-secret".parse::<CredentialChoice>().is_err());
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            ExitStatus::Completed,
            ExitStatus::SomeFailed,
            ExitStatus::Usage,
            ExitStatus::Interrupted,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 130]);
    }
}

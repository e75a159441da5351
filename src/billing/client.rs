//! Graph partner billing REST client (CONTRACT: signatures fixed, bodies filled in by the
//! billing-client work).

use std::time::Duration;

use url::Url;

use super::model::{Manifest, ManifestLocation, PollOutcome, StartedExport};
use super::types::ExportRequest;
use crate::auth::{AuthError, AuthorizedHttp};

/// `v1.0` (GA, default) or `beta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphVersion {
    #[default]
    V1,
    Beta,
}

impl GraphVersion {
    pub fn segment(self) -> &'static str {
        match self {
            GraphVersion::V1 => "v1.0",
            GraphVersion::Beta => "beta",
        }
    }
}

impl std::str::FromStr for GraphVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1.0" | "v1" | "1.0" => Ok(GraphVersion::V1),
            "beta" => Ok(GraphVersion::Beta),
            other => Err(format!(
                "unknown Graph API version {other:?}; expected v1.0 or beta"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Scheme and host (and port), e.g. `https://graph.microsoft.com`. No version segment.
    pub base_url: Url,
    pub version: GraphVersion,
    /// Used when a running operation carries no `Retry-After`.
    pub default_retry_after: Duration,
    /// Upper bound applied to any `Retry-After` (seconds or HTTP-date).
    pub max_retry_after: Duration,
    /// Attempts per request for 429 / 5xx / network errors (1 = no retry).
    pub max_attempts: u32,
    /// First backoff delay when the answer carries no `Retry-After`; doubles each attempt.
    pub backoff_base: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse("https://graph.microsoft.com").expect("static url"),
            version: GraphVersion::V1,
            default_retry_after: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(3600),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Graph answered 4xx (other than 429/410) with its error envelope.
    #[error("Graph refused the request ({status}): {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// 429 / 5xx / network errors that outlasted the retry budget.
    #[error("Graph did not answer successfully after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// A response that breaks the documented contract (missing Location, bad JSON, hostile manifest ...).
    #[error("unexpected answer from Graph: {0}")]
    InvalidResponse(String),
}

impl BillingError {
    /// Whether trying the same step later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BillingError::Unavailable { .. })
    }
}

#[derive(Debug, Clone)]
pub struct BillingClient {
    http: AuthorizedHttp,
    cfg: GraphConfig,
}

impl BillingClient {
    pub fn new(http: AuthorizedHttp, cfg: GraphConfig) -> Self {
        Self { http, cfg }
    }

    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// `{base}/{version}/reports/partners/billing/{kind path}/export`.
    pub fn export_url(&self, kind: super::ExportKind) -> Url {
        let _ = (&self.http, kind);
        todo!()
    }

    /// POST the export; expects 202 + `Location` (on the Graph allow-list).
    pub async fn start_export(&self, req: &ExportRequest) -> Result<StartedExport, BillingError> {
        let _ = req;
        todo!()
    }

    /// GET the operation at `operation_url` (checked against the allow-list first).
    pub async fn get_operation(&self, operation_url: &Url) -> Result<PollOutcome, BillingError> {
        let _ = operation_url;
        todo!()
    }

    /// GET a manifest by its navigation link.
    pub async fn get_manifest(&self, url: &Url) -> Result<Manifest, BillingError> {
        let _ = url;
        todo!()
    }

    /// Inline manifests are returned as they are; links are followed.
    pub async fn resolve_manifest(&self, loc: ManifestLocation) -> Result<Manifest, BillingError> {
        match loc {
            ManifestLocation::Inline(m) => Ok(*m),
            ManifestLocation::Link(u) => self.get_manifest(&u).await,
        }
    }
}

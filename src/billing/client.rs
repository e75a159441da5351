//! Graph partner billing REST client: the four export POSTs (202 + `Location`), operation polls,
//! manifests; bounded retries that honour `Retry-After`; tokens only to allow-listed hosts.

use std::time::Duration;

use url::Url;

use super::manifest::parse_manifest;
use super::model::{Manifest, ManifestLocation, PollOutcome, StartedExport};
use super::operation::parse_operation;
use super::types::ExportRequest;
use crate::auth::{redact_url, Audience, AuthError, AuthorizedHttp};
use crate::http_retry::{retry_after, send_with_retry, RetryPolicy, Sent};

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

/// Sends Graph / Partner Center requests through the shared retry loop, with a fresh
/// `client-request-id` per attempt (Microsoft's support asks for it).
#[derive(Debug, Clone)]
pub(crate) struct RetryingSender {
    pub http: AuthorizedHttp,
    pub policy: RetryPolicy,
}

impl RetryingSender {
    /// Returns the first answer that is not worth retrying (any status), or `Unavailable`.
    pub async fn send(
        &self,
        audience: Audience,
        method: reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, BillingError> {
        let (http, method) = (&self.http, &method);
        let sent = send_with_retry(&self.policy, audience.name(), move || async move {
            let mut req = http
                .request(audience, method.clone(), url.clone())
                .await?
                .header("client-request-id", uuid::Uuid::new_v4().to_string())
                .header(reqwest::header::ACCEPT, "application/json");
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            Ok::<_, BillingError>(req)
        })
        .await?;
        match sent {
            Sent::Answer(res) => Ok(res),
            Sent::Exhausted { attempts, last } => {
                tracing::warn!(url = %redact_url(url), attempts, error = %last, "giving up");
                Err(BillingError::Unavailable { attempts, last })
            }
        }
    }
}

/// Maps a non-success answer to `Rejected`, reading Graph's (or Partner Center's) error body.
pub(crate) async fn rejected(res: reqwest::Response) -> BillingError {
    let status = res.status().as_u16();
    let text: String = res
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(4096)
        .collect();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let pick = |ptrs: &[&str]| {
        ptrs.iter().find_map(|p| v.pointer(p)).map(|x| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string())
        })
    };
    let code = pick(&["/error/code", "/code"]).unwrap_or_else(|| format!("HTTP{status}"));
    let message = pick(&["/error/message", "/description", "/message"])
        .unwrap_or_else(|| text.chars().take(300).collect());
    BillingError::Rejected {
        status,
        code: code.chars().take(100).collect(),
        message: message.chars().take(300).collect(),
    }
}

#[derive(Debug, Clone)]
pub struct BillingClient {
    sender: RetryingSender,
    cfg: GraphConfig,
}

impl BillingClient {
    pub fn new(http: AuthorizedHttp, cfg: GraphConfig) -> Self {
        Self {
            sender: RetryingSender {
                http,
                policy: RetryPolicy {
                    max_attempts: cfg.max_attempts,
                    base_delay: cfg.backoff_base,
                    max_delay: cfg.max_retry_after,
                },
            },
            cfg,
        }
    }

    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// Local mode's sandbox serves plain http on loopback; production never does.
    fn loopback_ok(&self) -> bool {
        super::manifest::is_loopback(&self.cfg.base_url)
    }

    /// `{base}/{version}/reports/partners/billing/{kind path}/export`.
    pub fn export_url(&self, kind: super::ExportKind) -> Url {
        let mut url = self.cfg.base_url.clone();
        url.set_path(&format!(
            "/{}/reports/partners/billing/{}/export",
            self.cfg.version.segment(),
            kind.api_path()
        ));
        url
    }

    /// POST the export; expects 202 + `Location` (on the Graph allow-list).
    pub async fn start_export(&self, req: &ExportRequest) -> Result<StartedExport, BillingError> {
        let url = self.export_url(req.kind);
        let res = self
            .sender
            .send(
                Audience::Graph,
                reqwest::Method::POST,
                &url,
                Some(&req.graph_body()),
                &[],
            )
            .await?;
        let status = res.status().as_u16();
        // The docs show `202 OK` once: a typo; any 2xx with a Location is an accepted export.
        if !(200..300).contains(&status) {
            return Err(rejected(res).await);
        }
        let location = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                BillingError::InvalidResponse(format!(
                    "export answered {status} without a Location header"
                ))
            })?;
        // Documented as absolute; a relative one (open question in the reference) is resolved
        // against the URL we posted to.
        let operation_url = url
            .join(location)
            .map_err(|e| BillingError::InvalidResponse(format!("Location is not a URL: {e}")))?;
        // Refuse before anyone attaches a Graph token to it.
        self.sender
            .http
            .allow_list()
            .check(Audience::Graph, &operation_url)?;
        let retry_after = retry_after(res.headers(), self.cfg.max_retry_after);
        tracing::info!(kind = %req.kind, operation = %redact_url(&operation_url), "export accepted");
        Ok(StartedExport {
            operation_url,
            retry_after,
        })
    }

    /// GET the operation at `operation_url` (checked against the allow-list first).
    pub async fn get_operation(&self, operation_url: &Url) -> Result<PollOutcome, BillingError> {
        let res = self
            .sender
            .send(
                Audience::Graph,
                reqwest::Method::GET,
                operation_url,
                None,
                &[],
            )
            .await?;
        match res.status().as_u16() {
            200 => {}
            410 => return Ok(PollOutcome::Gone),
            _ => return Err(rejected(res).await),
        }
        let retry_after = retry_after(res.headers(), self.cfg.max_retry_after);
        let v = json_body(res).await?;
        Ok(PollOutcome::Operation(parse_operation(
            &v,
            retry_after,
            self.loopback_ok(),
        )?))
    }

    /// GET a manifest by its navigation link.
    pub async fn get_manifest(&self, url: &Url) -> Result<Manifest, BillingError> {
        let res = self
            .sender
            .send(Audience::Graph, reqwest::Method::GET, url, None, &[])
            .await?;
        if res.status().as_u16() != 200 {
            return Err(rejected(res).await);
        }
        parse_manifest(&json_body(res).await?, self.loopback_ok())
    }

    /// Inline manifests are returned as they are; links are followed.
    pub async fn resolve_manifest(&self, loc: ManifestLocation) -> Result<Manifest, BillingError> {
        match loc {
            ManifestLocation::Inline(m) => Ok(*m),
            ManifestLocation::Link(u) => self.get_manifest(&u).await,
        }
    }
}

/// Largest JSON answer we read from Graph (a manifest with many blobs is the biggest).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub(crate) async fn json_body(res: reqwest::Response) -> Result<serde_json::Value, BillingError> {
    if res
        .content_length()
        .is_some_and(|l| l as usize > MAX_RESPONSE_BYTES)
    {
        return Err(BillingError::InvalidResponse("answer is too large".into()));
    }
    let bytes = res.bytes().await.map_err(|e| BillingError::Unavailable {
        attempts: 1,
        last: e.without_url().to_string(),
    })?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(BillingError::InvalidResponse("answer is too large".into()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| BillingError::InvalidResponse(format!("answer is not JSON: {e}")))
}

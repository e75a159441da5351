//! Graph partner billing REST client: start an export, poll its operation, read its manifest.
//! Every request goes through [`send_with_retry`] (shared with the Partner Center client), and
//! every URL Graph hands back is checked against the Graph allow-list before a token goes near it.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use url::Url;

use super::error::BillingError;
use super::manifest::{parse_manifest, SourceHosts};
use super::model::{Manifest, ManifestLocation, PollOutcome, StartedExport};
use super::operation::parse_operation;
use super::types::{truncate, ExportRequest};
use crate::auth::{redact_url, Audience, AuthError, AuthorizedHttp};
use crate::http_retry::{self, retry_after, RetryPolicy, Sent};

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
    /// Where a manifest's `rootDirectory` may point (`SOURCE_STORAGE_HOSTS`). Graph's own host
    /// is added when Graph is on loopback (the local sandbox).
    pub source_hosts: SourceHosts,
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
            source_hosts: SourceHosts::default(),
        }
    }
}

impl GraphConfig {
    /// The crate-wide retry loop's policy for Graph (and, by default, Partner Center) calls.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: self.backoff_base,
            max_delay: self
                .max_retry_after
                .min(crate::http_retry::MAX_IN_CALL_WAIT),
        }
    }
}

/// Largest JSON body we read (a 100 000-blob manifest is ~15 MB).
const MAX_JSON_BODY: usize = 32 * 1024 * 1024;
/// How much of an error body we read to find the error envelope.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// How much of an error's code and message ends up in a `BillingError`.
const MAX_ERROR_TEXT: usize = 300;
/// Longest `Location` header we follow.
const MAX_LOCATION_LEN: usize = 2048;

/// One logical request, rebuilt for every attempt (a token is fetched each time).
pub(crate) struct Call<'a> {
    pub audience: Audience,
    pub method: Method,
    pub url: &'a Url,
    pub headers: &'a [(&'static str, String)],
    pub json: Option<&'a Value>,
    /// Non-2xx statuses handed back to the caller instead of being turned into errors.
    pub pass_through: &'a [StatusCode],
}

/// Sends `call` through the crate's one retry loop ([`http_retry::send_with_retry`]: 408, 429,
/// 5xx and network errors, `Retry-After` honoured and capped, else exponential backoff with
/// jitter), then sorts the answer: 2xx and `pass_through` come back as the response, other
/// 4xx become [`BillingError::Rejected`], anything else [`BillingError::InvalidResponse`],
/// and an exhausted budget [`BillingError::Unavailable`].
pub(crate) async fn send_with_retry(
    http: &AuthorizedHttp,
    policy: &RetryPolicy,
    call: &Call<'_>,
) -> Result<Response, BillingError> {
    let target = redact_url(call.url);
    let sent = http_retry::send_with_retry(policy, &target, || async {
        let mut rb = http
            .request(call.audience, call.method.clone(), call.url.clone())
            .await?;
        for (name, value) in call.headers {
            rb = rb.header(*name, value);
        }
        if let Some(body) = call.json {
            rb = rb.json(body);
        }
        Ok::<_, AuthError>(rb)
    })
    .await?;
    match sent {
        Sent::Exhausted {
            attempts,
            last,
            retry_after,
        } => Err(BillingError::Unavailable {
            attempts,
            last,
            retry_after,
        }),
        Sent::Answer(resp)
            if resp.status().is_success() || call.pass_through.contains(&resp.status()) =>
        {
            tracing::debug!(method = %call.method, url = %target, status = %resp.status(), "answered");
            Ok(resp)
        }
        Sent::Answer(resp) => Err(refusal(resp).await),
    }
}

/// An error and its causes on one bounded line (callers strip URLs first).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    truncate(&s, MAX_ERROR_TEXT).to_string()
}

/// A 4xx as `Rejected` (error envelope parsed), anything else unexpected as `InvalidResponse`.
async fn refusal(resp: Response) -> BillingError {
    let status = resp.status();
    let (code, message) = error_envelope(status, &read_prefix(resp, MAX_ERROR_BODY).await);
    if status.is_client_error() {
        BillingError::Rejected {
            status: status.as_u16(),
            code,
            message,
        }
    } else {
        BillingError::InvalidResponse(format!("unexpected HTTP {status}: {code}: {message}"))
    }
}

/// Code and message of a Graph error envelope `{"error":{"code","message"}}` (or Partner
/// Center's flat `{"code","description"}`), bounded; a non-JSON body becomes a short excerpt.
fn error_envelope(status: StatusCode, body: &[u8]) -> (String, String) {
    let fallback_code = status.canonical_reason().unwrap_or("error").to_string();
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let (code, message) = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let e = json.get("error").filter(|e| e.is_object()).unwrap_or(&json);
            (
                text(e.get("code")),
                text(e.get("message")).or_else(|| text(e.get("description"))),
            )
        }
        Err(_) => (None, Some(String::from_utf8_lossy(body).into_owned())),
    };
    (
        clean(&code.unwrap_or(fallback_code)),
        clean(&message.unwrap_or_default()),
    )
}

/// Bounded, single-line text for errors and logs.
fn clean(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(one_line.trim(), MAX_ERROR_TEXT).to_string()
}

/// Up to `cap` bytes of the body; read errors just end the excerpt.
async fn read_prefix(mut resp: Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < cap {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]),
            _ => break,
        }
    }
    out
}

/// The body as JSON, refusing bodies larger than [`MAX_JSON_BODY`].
pub(crate) async fn read_json(mut resp: Response, what: &str) -> Result<Value, BillingError> {
    let too_big =
        || BillingError::InvalidResponse(format!("{what}: body larger than {MAX_JSON_BODY} bytes"));
    if content_length(resp.headers()).is_some_and(|n| n > MAX_JSON_BODY as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_JSON_BODY {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(BillingError::Unavailable {
                    attempts: 1,
                    last: format!("reading {what}: {}", error_chain(&e.without_url())),
                    retry_after: None,
                })
            }
        }
    }
    serde_json::from_slice(&body)
        .map_err(|e| BillingError::InvalidResponse(format!("{what}: not valid JSON ({e})")))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[derive(Debug, Clone)]
pub struct BillingClient {
    http: AuthorizedHttp,
    cfg: GraphConfig,
    /// `cfg.source_hosts`, plus Graph's host when Graph is on loopback.
    source_hosts: SourceHosts,
    /// Graph calls in flight at most (one partner tenant's bound), held across the retry loop:
    /// a throttled partner waits out its 429s on its own permits, never on another's.
    limit: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl BillingClient {
    /// Gets a Graph token the way an export would, so a credential that signs in to the wrong
    /// tenant or lacks the permission is refused before anything starts.
    pub async fn check_access(&self) -> Result<(), BillingError> {
        Ok(self.http.preflight(Audience::Graph).await?)
    }

    pub fn new(http: AuthorizedHttp, cfg: GraphConfig) -> Self {
        let source_hosts = cfg.source_hosts.clone().with_graph_base(&cfg.base_url);
        Self {
            http,
            cfg,
            source_hosts,
            limit: None,
        }
    }

    /// At most `n` Graph calls of this client in flight (each with its retries).
    pub fn with_concurrency_limit(mut self, n: usize) -> Self {
        self.limit = Some(std::sync::Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// Where manifests may point: the configured storage hosts, and Graph's own host when
    /// Graph itself is on loopback (the local sandbox), so loopback roots work only there.
    pub fn source_hosts(&self) -> &SourceHosts {
        &self.source_hosts
    }

    /// `{base}/{version}/reports/partners/billing/{kind path}/export`.
    pub fn export_url(&self, kind: super::ExportKind) -> Url {
        let mut url = self.cfg.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .expect("Graph base URL is an http(s) URL")
            .pop_if_empty()
            .push(self.cfg.version.segment())
            .extend(["reports", "partners", "billing"])
            .extend(kind.api_path().split('/'))
            .push("export");
        url
    }

    /// Sends a Graph request with a fresh `client-request-id` (logged, for support cases).
    async fn send(
        &self,
        method: Method,
        url: &Url,
        json: Option<&Value>,
        pass_through: &[StatusCode],
    ) -> Result<Response, BillingError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        tracing::debug!(%method, url = %redact_url(url), client_request_id = %request_id, "Graph request");
        let headers = [
            ("client-request-id", request_id),
            (ACCEPT.as_str(), "application/json".to_string()),
        ];
        let call = Call {
            audience: Audience::Graph,
            method,
            url,
            headers: &headers,
            json,
            pass_through,
        };
        let _permit = match &self.limit {
            Some(l) => Some(l.acquire().await.expect("the limit is never closed")),
            None => None,
        };
        send_with_retry(&self.http, &self.cfg.retry_policy(), &call).await
    }

    /// POST the export; expects 202 + `Location` (on the Graph allow-list).
    pub async fn start_export(&self, req: &ExportRequest) -> Result<StartedExport, BillingError> {
        let url = self.export_url(req.kind);
        let body = req.graph_body();
        let resp = self.send(Method::POST, &url, Some(&body), &[]).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(BillingError::InvalidResponse(format!(
                "export POST to {} answered {}, expected 202 Accepted",
                redact_url(&url),
                resp.status()
            )));
        }
        let retry_after = retry_after(resp.headers(), self.cfg.max_retry_after);
        let operation_url = operation_location(resp.headers(), &url)?;
        // The Location decides where the next Graph token goes: refuse a foreign host now.
        self.http
            .allow_list()
            .check(Audience::Graph, &operation_url)?;
        tracing::info!(export = %req, operation = %redact_url(&operation_url), "export started");
        Ok(StartedExport {
            operation_url,
            retry_after,
        })
    }

    /// GET the operation at `operation_url` (checked against the allow-list first).
    pub async fn get_operation(&self, operation_url: &Url) -> Result<PollOutcome, BillingError> {
        self.http
            .allow_list()
            .check(Audience::Graph, operation_url)?;
        let resp = self
            .send(Method::GET, operation_url, None, &[StatusCode::GONE])
            .await?;
        if resp.status() == StatusCode::GONE {
            tracing::info!(operation = %redact_url(operation_url), "operation gone (410)");
            return Ok(PollOutcome::Gone);
        }
        let retry_after = retry_after(resp.headers(), self.cfg.max_retry_after);
        let json = read_json(resp, "operation").await?;
        let poll = parse_operation(&json, retry_after, &self.source_hosts)?;
        tracing::debug!(operation = %poll.id, state = ?state_name(&poll.state), "operation polled");
        Ok(PollOutcome::Operation(poll))
    }

    /// GET a manifest by its navigation link.
    pub async fn get_manifest(&self, url: &Url) -> Result<Manifest, BillingError> {
        self.http.allow_list().check(Audience::Graph, url)?;
        let resp = self.send(Method::GET, url, None, &[]).await?;
        let json = read_json(resp, "manifest").await?;
        parse_manifest(&json, &self.source_hosts)
    }

    /// Inline manifests are returned as they are; links are followed.
    pub async fn resolve_manifest(&self, loc: ManifestLocation) -> Result<Manifest, BillingError> {
        match loc {
            ManifestLocation::Inline(m) => Ok(*m),
            ManifestLocation::Link(u) => self.get_manifest(&u).await,
        }
    }
}

/// A state's name for logs (the manifest inside `Succeeded` holds a SAS; never log it whole).
fn state_name(s: &super::model::OperationState) -> &'static str {
    match s {
        super::model::OperationState::Running { .. } => "running",
        super::model::OperationState::Succeeded { .. } => "succeeded",
        super::model::OperationState::Failed { .. } => "failed",
    }
}

/// The 202's `Location` as an absolute URL. The docs show it absolute; whether it can be
/// relative is undocumented (docs/graph-api.md §8, open question 13), so a relative one is
/// resolved against the URL we posted to, which is how HTTP defines it (RFC 9110, section
/// 10.2.2) and, for the usual `/v1.0/...` form, the same as resolving against the configured
/// base URL.
fn operation_location(headers: &HeaderMap, request_url: &Url) -> Result<Url, BillingError> {
    let raw = headers
        .get(LOCATION)
        .ok_or_else(|| BillingError::InvalidResponse("202 without a Location header".into()))?
        .to_str()
        .map_err(|_| BillingError::InvalidResponse("Location header is not ASCII".into()))?
        .trim();
    if raw.is_empty() || raw.len() > MAX_LOCATION_LEN {
        return Err(BillingError::InvalidResponse(format!(
            "Location header must be 1 to {MAX_LOCATION_LEN} bytes"
        )));
    }
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => request_url.join(raw).map_err(|e| {
            BillingError::InvalidResponse(format!("relative Location does not resolve ({e})"))
        })?,
        Err(e) => {
            return Err(BillingError::InvalidResponse(format!(
                "Location is not a URL ({e})"
            )))
        }
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Err(BillingError::InvalidResponse(format!(
            "Location uses scheme {:?}",
            url.scheme()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers_with_location(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn location_absolute_and_relative() {
        let posted = Url::parse(
            "https://graph.microsoft.com/v1.0/reports/partners/billing/usage/billed/export",
        )
        .unwrap();
        let abs = "https://graph.microsoft.com/v1.0/reports/partners/billing/operations/9ab9";
        assert_eq!(
            operation_location(&headers_with_location(abs), &posted)
                .unwrap()
                .as_str(),
            abs
        );
        let rel = "/v1.0/reports/partners/billing/operations/9ab9";
        assert_eq!(
            operation_location(&headers_with_location(rel), &posted)
                .unwrap()
                .as_str(),
            abs
        );
        assert!(operation_location(&HeaderMap::new(), &posted).is_err());
        assert!(operation_location(&headers_with_location("ftp://x/y"), &posted).is_err());
    }

    #[test]
    fn error_envelopes() {
        let (c, m) = error_envelope(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"BadRequest","message":"Invalid invoice id","innerError":{}}}"#,
        );
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("BadRequest", "Invalid invoice id")
        );
        let (c, m) = error_envelope(
            StatusCode::FORBIDDEN,
            br#"{"code":600,"description":"denied"}"#,
        );
        assert_eq!((c.as_str(), m.as_str()), ("600", "denied"));
        let long = "x".repeat(10_000);
        let (c, m) = error_envelope(StatusCode::NOT_FOUND, long.as_bytes());
        assert_eq!(c, "Not Found");
        assert_eq!(m.len(), MAX_ERROR_TEXT);
    }

    #[test]
    fn export_urls_keep_base_path_and_version() {
        let http = crate::auth::AuthorizedHttp::new(
            crate::auth::http_client(),
            std::sync::Arc::new(crate::auth::StaticTokenSource::new()),
            crate::auth::AllowList::default(),
        );
        let c = BillingClient::new(http.clone(), GraphConfig::default());
        assert_eq!(
            c.export_url(super::super::ExportKind::UnbilledReconciliation).as_str(),
            "https://graph.microsoft.com/v1.0/reports/partners/billing/reconciliation/unbilled/export"
        );
        let beta = BillingClient::new(
            http,
            GraphConfig {
                base_url: Url::parse("http://127.0.0.1:9/prefix/").unwrap(),
                version: GraphVersion::Beta,
                ..GraphConfig::default()
            },
        );
        assert_eq!(
            beta.export_url(super::super::ExportKind::BilledUsage)
                .as_str(),
            "http://127.0.0.1:9/prefix/beta/reports/partners/billing/usage/billed/export"
        );
        let sandbox_root = Url::parse("http://127.0.0.1:10000/devstoreaccount1/c").unwrap();
        assert!(beta.source_hosts().check(&sandbox_root).is_ok());
        assert!(c.source_hosts().check(&sandbox_root).is_err());
    }
}

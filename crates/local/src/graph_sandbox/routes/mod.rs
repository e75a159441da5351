//! Request routing and the Graph / Partner Center handlers. Every request is treated as
//! hostile: bodies are bounded, paths are matched segment by segment, blob paths are decoded
//! and checked before use, and neither tokens nor SAS query strings are ever logged.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;
use warp::filters::path::FullPath;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

mod blob_routes;
mod invoice_routes;

use super::operations::Poll;
use super::{blobs, bump, Inner};
use crate::tokens::{audience_claim, LOCAL_TENANT_ID};
use blob_routes::get_blob;
use invoice_routes::{get_invoice, list_invoices};
use partner_billing_export::auth::claims::{TokenClaims, PARTNER_BILLING_READ_ALL};
use partner_billing_export::auth::Audience;
use partner_billing_export::billing::types::{
    AttributeSet, BillingPeriod, CurrencyCode, ExportKind, ExportRequest, ExportScope, InvoiceId,
};

pub(super) type Reply = warp::reply::Response;

/// Export bodies are a few dozen bytes; anything near this is hostile.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// One catch-all filter: routing is done by hand so every unknown path and method gets a
/// Graph- or Storage-shaped error rather than warp's defaults.
pub(super) fn filter(
    inner: Arc<Inner>,
) -> impl Filter<Extract = (Reply,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
                let inner = inner.clone();
                async move {
                    let path = path.as_str().to_string();
                    // The query (SAS) and headers (tokens) stay out of the log on purpose.
                    tracing::debug!(%method, %path, "graph sandbox request");
                    let req = Request {
                        method,
                        path,
                        query,
                        headers,
                    };
                    handle(&inner, req, body).await
                }
            },
        )
        .recover(|_rej: warp::Rejection| async move {
            Ok::<_, Infallible>(graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The request could not be read.",
            ))
        })
        .unify()
}

pub(super) struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
}

async fn handle<S, B>(inner: &Inner, req: Request, body: S) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if let [version, "reports", ..] = segs.as_slice() {
        if inner.cfg.unsupported_versions.iter().any(|v| v == version) {
            return not_found(&req.path);
        }
    }
    if segs.first() == Some(&"blob") && !inner.cfg.blob_delay.is_zero() {
        tokio::time::sleep(inner.cfg.blob_delay).await;
    }
    match (&req.method, segs.as_slice()) {
        (&Method::POST, [version, "reports", "partners", "billing", dataset, state, "export"])
            if is_version(version) =>
        {
            let Some(kind) = ExportKind::from_api_path(dataset, state) else {
                return not_found(&req.path);
            };
            let partner = match graph_caller(inner, &req.headers) {
                Ok(p) => p,
                Err(refusal) => return *refusal,
            };
            match read_body(body).await {
                Ok(bytes) => start_export(inner, &req, version, kind, &bytes, partner),
                Err(r) => r,
            }
        }
        (&Method::GET, [version, "reports", "partners", "billing", "operations", id])
            if is_version(version) =>
        {
            if let Err(refusal) = graph_caller(inner, &req.headers) {
                return *refusal;
            }
            get_operation(inner, id)
        }
        (&Method::GET, [version, "reports", "partners", "billing", "manifests", id])
            if is_version(version) =>
        {
            if let Err(refusal) = graph_caller(inner, &req.headers) {
                return *refusal;
            }
            get_manifest(inner, id)
        }
        (&Method::GET | &Method::HEAD, ["blob", rest @ ..]) => {
            get_blob(inner, &req, rest, req.method == Method::HEAD)
        }
        (&Method::GET, ["partnercenter", "v1", "invoices"]) => list_invoices(inner, &req),
        (&Method::GET, ["partnercenter", "v1", "invoices", id]) => get_invoice(inner, &req, id),
        (_, ["blob", ..]) => blobs::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
        ),
        (_, [version, "reports", ..]) if is_version(version) => graph_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            "The HTTP method is not allowed on this resource.",
        ),
        _ => not_found(&req.path),
    }
}

fn is_version(v: &str) -> bool {
    v == "v1.0" || v == "beta"
}

/// Reads at most `MAX_BODY_BYTES`, whatever `Content-Length` claims (or chunked encoding hides).
async fn read_body<S, B>(mut body: S) -> Result<Bytes, Reply>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| {
            graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The request body could not be read.",
            )
        })?;
        if buf.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(graph_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The request body is too large.",
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

// ---------------------------------------------------------------------------------------------
// Replies

pub(super) fn json_reply(status: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header("request-id", Uuid::new_v4().to_string())
        .body(body.to_string().into())
        .expect("valid response")
}

/// The Graph error envelope.
pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let now = OffsetDateTime::now_utc();
    json_reply(
        status,
        &json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    now.year(), u8::from(now.month()), now.day(), now.hour(), now.minute(), now.second()),
                "request-id": Uuid::new_v4().to_string(),
                "client-request-id": Uuid::new_v4().to_string(),
            }
        }}),
    )
}

fn bad_request(message: &str) -> Reply {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub(super) fn not_found(path: &str) -> Reply {
    let shown: String = path.chars().take(200).collect();
    graph_error(
        StatusCode::NOT_FOUND,
        "UnknownError",
        &format!("Resource not found for the segment '{shown}'."),
    )
}

// ---------------------------------------------------------------------------------------------
// Auth

/// The token of an `Authorization: Bearer ...` header, if that is what it holds.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Which partner a Graph request is from (`None`: the single-tenant partner), or the answer to
/// give instead. As Graph does, the token's claims decide: `aud` must be Graph (401
/// otherwise), `tid` a tenant the sandbox knows (401), and `roles` (app) or `scp` (delegated)
/// must grant PartnerBilling.Read.All (403); a throttled partner gets 429.
fn graph_caller(inner: &Inner, headers: &HeaderMap) -> Result<Option<usize>, Box<Reply>> {
    let refuse = |status: StatusCode, code: &str, message: &str| {
        bump(&inner.counters.unauthorized, 1);
        let mut r = graph_error(status, code, message);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "WWW-Authenticate",
                warp::http::HeaderValue::from_static("Bearer realm=\"\", error=\"invalid_token\""),
            );
        }
        Err(Box::new(r))
    };
    let Some(token) = bearer(headers) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    };
    let claims = match TokenClaims::decode(token) {
        Some(c)
            if c.aud
                .as_deref()
                .is_some_and(|a| a.trim_end_matches('/') == audience_claim(Audience::Graph)) =>
        {
            c
        }
        _ => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
        }
    };
    let tenant = claims.tid.clone().unwrap_or_default();
    let caller = if tenant.eq_ignore_ascii_case(LOCAL_TENANT_ID) {
        None
    } else {
        match inner
            .cfg
            .partners
            .iter()
            .position(|p| p.tenant_id.to_string().eq_ignore_ascii_case(&tenant))
        {
            Some(i) => Some(i),
            None => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "Access token validation failure. The tenant is not a partner tenant.",
                )
            }
        }
    };
    let granted = if claims.scp.is_empty() {
        &claims.roles
    } else {
        &claims.scp
    };
    if !granted.iter().any(|p| p == PARTNER_BILLING_READ_ALL) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Either the signed-in user does not have sufficient privileges, or you need to use one of the following delegated or application permissions: PartnerBilling.Read.All.",
        );
    }
    if let Some(i) = caller {
        if inner.throttle(i) {
            let mut r = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests; retry after the interval in Retry-After.",
            );
            r.headers_mut()
                .insert("Retry-After", warp::http::HeaderValue::from_static("1"));
            return Err(Box::new(r));
        }
    }
    Ok(caller)
}

// ---------------------------------------------------------------------------------------------
// Exports and operations

fn start_export(
    inner: &Inner,
    req: &Request,
    version: &str,
    kind: ExportKind,
    body: &[u8],
    partner: Option<usize>,
) -> Reply {
    let is_json = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return graph_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The request must have Content-Type: application/json.",
        );
    }
    let mut export = match parse_export_body(kind, body) {
        Ok(e) => e,
        Err(msg) => return bad_request(&msg),
    };
    if let Some(i) = partner {
        // The partner's exports are its own: their key, tenant and data follow from it.
        match inner.cfg.partners[i].id.parse() {
            Ok(id) => export.partner = id,
            Err(_) => return bad_request("The sandbox partner id is not path-safe."),
        }
    }
    if let Some(r) = &inner.cfg.refuse_exports {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
        return graph_error(status, &r.code, &r.message);
    }
    if let ExportScope::Invoice { invoice_id: id } = &export.scope {
        if inner
            .cfg
            .refuse_invoices
            .iter()
            .any(|r| r.eq_ignore_ascii_case(id.as_str()))
        {
            return graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Invoice {id} cannot be exported."),
            );
        }
    }
    if let (true, ExportScope::Invoice { invoice_id: id }) =
        (inner.cfg.known_invoices_only, &export.scope)
    {
        if !inner
            .invoices_of(partner)
            .iter()
            .any(|i| i.id == id.as_str())
        {
            return graph_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("Invoice {id} was not found."),
            );
        }
    }
    let now = OffsetDateTime::now_utc();
    let id = {
        let mut st = inner.state();
        // The movable clock, when a test drives one, decides which day's snapshot is served.
        let today = inner.cfg.clock.as_ref().map_or(inner.today, |c| c.today());
        let id = st.start(&inner.cfg, today, export, version, now);
        if let Some(store) = &inner.cfg.blob_store {
            start_upload(&mut st, &id, store, inner.cfg.rows_per_partition);
        }
        id
    };
    bump(&inner.counters.exports_started, 1);
    let origin = if inner.cfg.foreign_location {
        "https://graph.evil.example"
    } else {
        inner.origin.as_str()
    };
    let location = format!("{origin}/{version}/reports/partners/billing/operations/{id}");
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("Location", location)
        .header("Retry-After", inner.cfg.retry_after_secs)
        .header("request-id", Uuid::new_v4().to_string())
        .body(Bytes::new().into())
        .expect("valid response")
}

/// Validates an export action body like Graph's OData action binding: known parameters only,
/// required ones present, enum values known. Errors name the parameter.
fn parse_export_body(kind: ExportKind, body: &[u8]) -> Result<ExportRequest, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("The request body must be a JSON object.".into());
    };
    let allowed: &[&str] = if kind.is_billed() {
        &["invoiceId", "attributeSet"]
    } else {
        &["billingPeriod", "currencyCode", "attributeSet"]
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(format!(
            "The parameter '{shown}' in the request payload is not a valid parameter for the operation 'export'."
        ));
    }
    let attribute_set = match obj.get("attributeSet") {
        None | Some(Value::Null) => AttributeSet::Full,
        Some(v) => string_param("attributeSet", v)?
            .parse::<AttributeSet>()
            .map_err(|e| e.to_string())?,
    };
    let req = if kind.is_billed() {
        let invoice: InvoiceId = required(&obj, "invoiceId")?
            .parse()
            .map_err(|e: partner_billing_export::billing::types::InvalidInput| e.to_string())?;
        ExportRequest::billed(kind, invoice, attribute_set)
    } else {
        let period: BillingPeriod = required(&obj, "billingPeriod")?
            .parse()
            .map_err(|e: partner_billing_export::billing::types::InvalidInput| e.to_string())?;
        let currency: CurrencyCode = required(&obj, "currencyCode")?
            .parse()
            .map_err(|e: partner_billing_export::billing::types::InvalidInput| e.to_string())?;
        ExportRequest::unbilled(kind, period, currency, attribute_set)
    };
    req.map_err(|e| e.to_string())
}

fn required<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(format!("The parameter '{name}' is required.")),
        Some(v) => string_param(name, v),
    }
}

fn string_param<'a>(name: &str, v: &'a Value) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("The parameter '{name}' must be a string."))
}

fn get_operation(inner: &Inner, id: &str) -> Reply {
    bump(&inner.counters.operation_gets, 1);
    let Ok(id) = Uuid::parse_str(id) else {
        return not_found(id);
    };
    let now = OffsetDateTime::now_utc();
    let cfg = &inner.cfg;
    let mut guard = inner.state();
    let st = &mut *guard;
    let Some(op) = st.operations.get_mut(&id) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Operation {id} was not found."),
        );
    };
    let Some(export) = st.exports.get_mut(&op.export_key) else {
        return graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "lost export",
        );
    };
    let mut poll = op.poll(cfg.polls_before_done, export.fails);
    // With an external store the operation runs until its data is written there, as
    // Microsoft's does.
    if poll == Poll::Succeeded
        && cfg.blob_store.is_some()
        && !export.uploaded.load(std::sync::atomic::Ordering::Acquire)
    {
        poll = Poll::Running("running");
    }
    if poll != Poll::Gone {
        op.last_action = now;
    }
    let (body, retry) = match poll {
        Poll::Gone => {
            return graph_error(
                StatusCode::GONE,
                "Gone",
                "The operation no longer exists. Start the export again.",
            )
        }
        Poll::Running(status) => (op.json("runningOperation", status), true),
        Poll::Failed => {
            let mut b = op.json("failedOperation", "failed");
            let message = if cfg.fail_code == "5000" {
                "No data available"
            } else {
                "The export failed"
            };
            b["error"] = json!({"message": message, "code": cfg.fail_code});
            (b, false)
        }
        Poll::Succeeded => {
            export.succeeded = true;
            let mut b = op.json("exportSuccessOperation", &cfg.success_status);
            if export.inline_manifest {
                let sas = inner.mint_sas(&st.signer, &export.dir, now);
                b["resourceLocation"] = export.manifest_json(&inner.blob_root(), &sas);
            } else {
                b["resourceLocation@odata.navigationLink"] = json!(format!(
                    "{}/{}/reports/partners/billing/manifests/{}",
                    inner.origin, op.version, export.manifest_id
                ));
            }
            (b, false)
        }
    };
    drop(guard);
    let mut r = json_reply(StatusCode::OK, &body);
    if retry {
        r.headers_mut().insert(
            "Retry-After",
            warp::http::HeaderValue::from(cfg.retry_after_secs),
        );
    }
    r
}

/// Generates the export's partitions and uploads them to the external store in the background
/// (once per export), with a write SAS; the export's `uploaded` flag is set when all are in.
fn start_upload(
    st: &mut super::operations::State,
    op_id: &Uuid,
    store: &super::ExternalBlobStore,
    rows: u32,
) {
    let Some(key) = st.operations.get(op_id).map(|o| o.export_key.clone()) else {
        return;
    };
    let Some(export) = st.exports.get_mut(&key) else {
        return;
    };
    if export.upload_started || export.fails {
        return;
    }
    export.upload_started = true;
    let parts: Vec<(String, Bytes)> = (0..export.blob_names.len())
        .map(|i| {
            (
                export.blob_names[i].clone(),
                export.partition(i, rows).gzip.clone(),
            )
        })
        .collect();
    let folder = format!(
        "{}{}",
        store.account_url.as_str().trim_end_matches('/'),
        export.dir
    );
    let container = export
        .dir
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let account_url = store.account_url.clone();
    let sas = store.account.sas(
        "rwdlac",
        OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600),
    );
    let done = export.uploaded.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let create = format!(
            "{}/{container}?restype=container&{sas}",
            account_url.as_str().trim_end_matches('/')
        );
        let _ = http
            .put(create)
            .header("x-ms-version", crate::azurite::SAS_VERSION)
            .send()
            .await;
        for (name, bytes) in parts {
            let res = http
                .put(format!("{folder}/{name}?{sas}"))
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-version", crate::azurite::SAS_VERSION)
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::error!(status = r.status().as_u16(), blob = %name, "sandbox could not upload a partition");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e.without_url(), blob = %name, "sandbox could not upload a partition");
                    return;
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
}

fn get_manifest(inner: &Inner, id: &str) -> Reply {
    bump(&inner.counters.manifest_gets, 1);
    let not_found = || {
        graph_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The manifest was not found.",
        )
    };
    let Ok(id) = Uuid::parse_str(id) else {
        return not_found();
    };
    let now = OffsetDateTime::now_utc();
    let st = inner.state();
    let Some(export) = st.manifests.get(&id).and_then(|k| st.exports.get(k)) else {
        return not_found();
    };
    let sas = inner.mint_sas(&st.signer, &export.dir, now);
    let body = export.manifest_json(&inner.blob_root(), &sas);
    drop(st);
    json_reply(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::blob_routes::blob_path;
    use super::*;

    #[test]
    fn blob_paths_refuse_traversal() {
        assert_eq!(
            blob_path(&["c", "a=b", "f.gz"]).as_deref(),
            Some("/c/a=b/f.gz")
        );
        assert_eq!(blob_path(&["c", "a%3Db"]).as_deref(), Some("/c/a=b"));
        for bad in [
            &["c", "..", "f"][..],
            &["c", "%2e%2e", "f"],
            &["c", "a%2Fb"],
            &["c", ""],
            &["c", "%zz"],
            &["c", "a%00"],
            &[],
        ] {
            assert_eq!(blob_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn export_bodies_are_validated_per_kind() {
        let ok = parse_export_body(ExportKind::BilledUsage, br#"{"invoiceId":"G1"}"#).unwrap();
        assert_eq!(ok.attribute_set, AttributeSet::Full);
        let err = |k, b: &str| parse_export_body(k, b.as_bytes()).unwrap_err();
        assert!(err(ExportKind::BilledUsage, "{}").contains("invoiceId"));
        assert!(err(ExportKind::BilledUsage, r#"{"invoiceId":"../x"}"#).contains("invoiceId"));
        assert!(err(
            ExportKind::BilledUsage,
            r#"{"invoiceId":"G1","attributeSet":"all"}"#
        )
        .contains("attributeSet"));
        assert!(
            err(ExportKind::UnbilledUsage, r#"{"currencyCode":"USD"}"#).contains("billingPeriod")
        );
        assert!(err(
            ExportKind::UnbilledReconciliation,
            r#"{"billingPeriod":"last"}"#
        )
        .contains("currencyCode"));
        assert!(err(
            ExportKind::UnbilledUsage,
            r#"{"billingPeriod":"last","currencyCode":"USD","invoiceId":"G1"}"#
        )
        .contains("invoiceId"));
        assert!(err(ExportKind::BilledUsage, "[1]").contains("object"));
        assert!(err(ExportKind::BilledUsage, "{").contains("JSON"));
    }
}

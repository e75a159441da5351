//! The Graph billing client and the Partner Center invoice lister against scripted loopback
//! mocks that record every request, so each test checks both what the client sends and what
//! it makes of the answers (202 + Location, retries, 410, error envelopes, paging).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use partner_billing_export::auth::{
    http_client, AllowList, Audience, AuthError, AuthorizedHttp, StaticTokenSource,
};
use partner_billing_export::billing::invoices::{billed_invoices_for_month, PartnerCenterClient};
use partner_billing_export::billing::types::{
    AttributeSet, BillingPeriod, ExportKind, ExportRequest,
};
use partner_billing_export::billing::{
    BillingClient, BillingError, GraphConfig, ManifestLocation, OperationState, PollOutcome,
};
use serde_json::{json, Value};
use test_support::fixtures::json as fixture;
use url::Url;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

const GRAPH_TOKEN: &str = "graph-token-for-tests";
const PC_TOKEN: &str = "partner-center-token-for-tests";

/// What the mock saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A scripted answer: status, extra headers, optional JSON body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

fn answer(status: u16) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: None,
    }
}

impl Answer {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

type Script = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

/// A loopback server answering from a script (given the request and its index) and
/// recording every request. Dropped with the test's runtime.
struct Mock {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    async fn start(script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let log = seen.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    let req = Seen {
                        method,
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        body,
                    };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(req.clone());
                        log.len() - 1
                    };
                    reply(script(&req, n))
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self { addr, seen }
    }

    /// `http://127.0.0.1:PORT`
    fn base(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// The same server under another host name, so the allow-list sees a different host.
    fn base_as_localhost(&self) -> Url {
        Url::parse(&format!("http://localhost:{}", self.addr.port())).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn reply(a: Answer) -> warp::reply::Response {
    let has_body = a.body.is_some();
    let mut res =
        warp::reply::Response::new(a.body.map(|b| b.to_string()).unwrap_or_default().into());
    *res.status_mut() = StatusCode::from_u16(a.status).unwrap();
    if has_body {
        res.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    for (k, v) in a.headers {
        res.headers_mut().insert(k, v.parse().unwrap());
    }
    res
}

/// An authorized HTTP client whose Graph and Partner Center allow-lists hold exactly these hosts.
fn authed(graph: &Url, partner_center: Option<&Url>) -> AuthorizedHttp {
    let mut allow = AllowList::default();
    allow.allow_url(Audience::Graph, graph);
    if let Some(pc) = partner_center {
        allow.allow_url(Audience::PartnerCenter, pc);
    }
    let tokens = StaticTokenSource::new()
        .with(Audience::Graph, GRAPH_TOKEN)
        .with(Audience::PartnerCenter, PC_TOKEN);
    AuthorizedHttp::new(http_client(), Arc::new(tokens), allow)
}

fn fast_config(base: Url) -> GraphConfig {
    GraphConfig {
        base_url: base,
        max_attempts: 4,
        backoff_base: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(5),
        ..GraphConfig::default()
    }
}

fn graph_client(mock: &Mock) -> BillingClient {
    BillingClient::new(authed(&mock.base(), None), fast_config(mock.base()))
}

fn operation_path(id: &str) -> String {
    format!("/v1.0/reports/partners/billing/operations/{id}")
}

fn billed(kind: ExportKind) -> ExportRequest {
    ExportRequest::billed(kind, "G016907411".parse().unwrap(), AttributeSet::Full).unwrap()
}

fn unbilled(kind: ExportKind) -> ExportRequest {
    ExportRequest::unbilled(
        kind,
        BillingPeriod::Current,
        "USD".parse().unwrap(),
        AttributeSet::Basic,
    )
    .unwrap()
}

/// The documented running operation, under the id the mocks serve it as.
fn running_operation() -> Value {
    let mut op = fixture("graph/operation-running.json");
    op["id"] = json!("op-1");
    op
}

fn assert_uuid_v4(s: &str) {
    let u = uuid::Uuid::parse_str(s).unwrap_or_else(|_| panic!("not a UUID: {s:?}"));
    assert_eq!(u.get_version_num(), 4, "{s}");
}

#[tokio::test]
async fn start_export_posts_each_kind_to_its_path_with_body_token_and_headers() {
    // An absolute Location on the mock's own (allow-listed) origin, as Graph sends it.
    let mock = Mock::start(|req, n| {
        let origin = format!("http://{}", req.header("host"));
        answer(202)
            .header(
                "Location",
                format!("{origin}{}", operation_path(&format!("op-{n}"))),
            )
            .header("Retry-After", "3")
    })
    .await;
    let origin = mock.base();
    let client = graph_client(&mock);
    let requests = [
        billed(ExportKind::BilledUsage),
        unbilled(ExportKind::UnbilledUsage),
        billed(ExportKind::BilledReconciliation),
        unbilled(ExportKind::UnbilledReconciliation),
    ];
    for (n, req) in requests.iter().enumerate() {
        let started = client.start_export(req).await.unwrap();
        assert_eq!(started.operation_url.host_str(), origin.host_str());
        assert_eq!(
            started.operation_url.path(),
            operation_path(&format!("op-{n}"))
        );
        assert_eq!(started.retry_after, Some(Duration::from_secs(3)));
    }
    let seen = mock.seen();
    assert_eq!(seen.len(), 4);
    for (req, got) in requests.iter().zip(&seen) {
        assert_eq!(got.method, Method::POST);
        assert_eq!(
            got.path,
            format!(
                "/v1.0/reports/partners/billing/{}/export",
                req.kind.api_path()
            )
        );
        assert_eq!(got.json(), req.graph_body());
        assert_eq!(got.header("authorization"), format!("Bearer {GRAPH_TOKEN}"));
        assert_eq!(got.header("content-type"), "application/json");
        assert_uuid_v4(got.header("client-request-id"));
    }
    assert_eq!(
        seen[1].json(),
        json!({"billingPeriod": "current", "currencyCode": "USD", "attributeSet": "basic"})
    );
}

#[tokio::test]
async fn beta_version_goes_to_the_beta_path() {
    let mock = Mock::start(|_, _| {
        answer(202).header("Location", "/beta/reports/partners/billing/operations/b1")
    })
    .await;
    let cfg = GraphConfig {
        version: "beta".parse().unwrap(),
        ..fast_config(mock.base())
    };
    let client = BillingClient::new(authed(&mock.base(), None), cfg);
    let started = client
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap();
    assert_eq!(
        mock.seen()[0].path,
        "/beta/reports/partners/billing/usage/billed/export"
    );
    assert_eq!(
        started.operation_url.path(),
        "/beta/reports/partners/billing/operations/b1"
    );
}

#[tokio::test]
async fn relative_location_is_resolved_against_graph() {
    let mock = Mock::start(|_, _| answer(202).header("Location", operation_path("rel-1"))).await;
    let started = graph_client(&mock)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap();
    assert_eq!(
        started.operation_url,
        mock.base().join(&operation_path("rel-1")).unwrap()
    );
    assert_eq!(started.retry_after, None);
}

#[tokio::test]
async fn foreign_location_is_refused_and_never_contacted() {
    let foreign = Mock::start(|_, _| answer(200).json(running_operation())).await;
    let foreign_url = foreign
        .base_as_localhost()
        .join(&operation_path("evil"))
        .unwrap();
    let location = foreign_url.to_string();
    let graph = Mock::start(move |_, _| answer(202).header("Location", location.clone())).await;
    let client = graph_client(&graph);

    let err = client
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BillingError::Auth(AuthError::HostNotAllowed { host, .. }) if host == "localhost"),
        "{err:?}"
    );
    // Polling that URL directly is refused as well, before any request.
    let err = client.get_operation(&foreign_url).await.unwrap_err();
    assert!(
        matches!(err, BillingError::Auth(AuthError::HostNotAllowed { .. })),
        "{err:?}"
    );
    assert_eq!(graph.seen().len(), 1);
    assert_eq!(
        foreign.seen().len(),
        0,
        "the foreign host must never be contacted"
    );
}

#[tokio::test]
async fn navigation_link_to_a_foreign_host_is_not_followed() {
    let foreign = Mock::start(|_, _| answer(200).json(json!({}))).await;
    let link = foreign
        .base_as_localhost()
        .join("/v1.0/reports/partners/billing/manifests/m1")
        .unwrap();
    let graph = Mock::start(|_, _| answer(500)).await;
    let err = graph_client(&graph)
        .resolve_manifest(ManifestLocation::Link(link))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BillingError::Auth(AuthError::HostNotAllowed { .. })),
        "{err:?}"
    );
    assert_eq!(foreign.seen().len(), 0);
    assert_eq!(graph.seen().len(), 0);
}

#[tokio::test]
async fn throttled_poll_waits_retry_after_then_succeeds() {
    let mock = Mock::start(|_, n| match n {
        0 => answer(429).header("Retry-After", "0"),
        1 => answer(429).header("Retry-After", "1"),
        _ => answer(200)
            .header("Retry-After", "45")
            .json(running_operation()),
    })
    .await;
    let op = mock.base().join(&operation_path("op-1")).unwrap();
    let t0 = Instant::now();
    let outcome = graph_client(&mock).get_operation(&op).await.unwrap();
    // With a 1 ms backoff base only an honoured `Retry-After: 1` explains a 1 s wait.
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    let PollOutcome::Operation(poll) = outcome else {
        panic!("expected an operation, got {outcome:?}");
    };
    assert_eq!(
        poll.state,
        OperationState::Running {
            status: "running".into()
        }
    );
    // The operation's own Retry-After (45 s) is clamped to `max_retry_after` (5 s).
    assert_eq!(poll.retry_after, Some(Duration::from_secs(5)));
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.method == Method::GET && s.path == operation_path("op-1")));
    assert!(seen
        .iter()
        .all(|s| s.header("authorization") == format!("Bearer {GRAPH_TOKEN}")));
}

/// A throttling `Retry-After` longer than an invocation may sleep ends the call at once with
/// the wait Graph asked for, so the caller schedules the next try instead of sleeping.
#[tokio::test]
async fn a_long_retry_after_is_handed_back_not_slept() {
    let mock = Mock::start(|_, _| answer(429).header("Retry-After", "1200")).await;
    let op = mock.base().join(&operation_path("op-1")).unwrap();
    let mut cfg = fast_config(mock.base());
    cfg.max_retry_after = Duration::from_secs(3600);
    let client = BillingClient::new(authed(&mock.base(), None), cfg);
    let err = client.get_operation(&op).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1200)));
    assert_eq!(
        mock.seen().len(),
        1,
        "one request, no retries inside the call"
    );
}

#[tokio::test]
async fn unavailable_twice_then_accepted() {
    let mock = Mock::start(|_, n| {
        if n < 2 {
            answer(503).json(fixture("graph/error-service-unavailable.json"))
        } else {
            answer(202).header("Location", operation_path("op-3"))
        }
    })
    .await;
    let req = billed(ExportKind::BilledReconciliation);
    let started = graph_client(&mock).start_export(&req).await.unwrap();
    assert_eq!(started.operation_url.path(), operation_path("op-3"));
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.json() == req.graph_body()),
        "body resent on every attempt"
    );
}

#[tokio::test]
async fn server_errors_forever_end_as_unavailable_after_max_attempts() {
    let mock =
        Mock::start(|_, _| answer(500).json(fixture("graph/error-internal-server-error.json")))
            .await;
    let err = graph_client(&mock)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    match &err {
        BillingError::Unavailable { attempts, last, .. } => {
            assert_eq!(*attempts, 4);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(mock.seen().len(), 4);
}

#[tokio::test]
async fn network_errors_are_retried_then_unavailable() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = BillingClient::new(authed(&base, None), fast_config(base.clone()));
    let err = client
        .get_operation(&base.join(&operation_path("x")).unwrap())
        .await
        .unwrap_err();
    match err {
        BillingError::Unavailable { attempts, last, .. } => {
            assert_eq!(attempts, 4);
            assert!(!last.is_empty(), "{last}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn gone_operation() {
    let mock = Mock::start(|_, _| answer(410)).await;
    let op = mock.base().join(&operation_path("old")).unwrap();
    assert_eq!(
        graph_client(&mock).get_operation(&op).await.unwrap(),
        PollOutcome::Gone
    );
    assert_eq!(mock.seen().len(), 1, "410 is an answer, not a retry");
}

#[tokio::test]
async fn bad_request_is_rejected_with_the_graph_error_envelope() {
    let mock = Mock::start(|_, _| answer(400).json(fixture("graph/error-bad-request.json"))).await;
    let err = graph_client(&mock)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    match &err {
        BillingError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!(
                (*status, code.as_str(), message.as_str()),
                (400, "BadRequest", "Invalid invoice id")
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(mock.seen().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn accepted_without_location_is_invalid() {
    let mock = Mock::start(|_, _| answer(202)).await;
    let err = graph_client(&mock)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn manifest_is_fetched_through_the_navigation_link() {
    let manifest = fixture("graph/manifest-two-blobs.json");
    let sas = manifest["sasToken"].as_str().unwrap().to_string();
    let root = manifest["rootDirectory"].as_str().unwrap().to_string();
    let mock = Mock::start(move |req, _| {
        if req.path.ends_with("/operations/op-1") {
            // The documented success, linking to the manifest on the mock's own origin.
            let origin = format!("http://{}", req.header("host"));
            let mut op = fixture("graph/operation-succeeded.json");
            op["id"] = json!("op-1");
            op["resourceLocation@odata.navigationLink"] = json!(format!(
                "{origin}/v1.0/reports/partners/billing/manifests/m1"
            ));
            answer(200).json(op)
        } else {
            answer(200).json(manifest.clone())
        }
    })
    .await;
    let client = graph_client(&mock);
    let op = mock.base().join(&operation_path("op-1")).unwrap();
    let PollOutcome::Operation(poll) = client.get_operation(&op).await.unwrap() else {
        panic!("expected an operation");
    };
    let OperationState::Succeeded { manifest: loc } = poll.state else {
        panic!("expected success, got {:?}", poll.state);
    };
    assert!(matches!(loc, ManifestLocation::Link(_)));
    let m = client.resolve_manifest(loc).await.unwrap();
    assert_eq!(
        (m.id.as_str(), m.etag.as_str(), m.blobs.len()),
        ("m1", "etag-1", 2)
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path, "/v1.0/reports/partners/billing/manifests/m1");
    assert_eq!(
        seen[1].header("authorization"),
        format!("Bearer {GRAPH_TOKEN}")
    );
    let url = m.blob_url(&m.blobs[1]).unwrap();
    assert_eq!(url.as_str(), format!("{root}/part-00001.json.gz?{sas}"));
}

/// One Partner Center invoice item: the fixture with its id, document type and billing period
/// (the month `period_end` falls in) set.
fn pc_invoice(id: &str, doc: &str, period_end: &str) -> Value {
    let mut item = fixture("partner-center/invoice.json");
    item["id"] = json!(id);
    item["documentType"] = json!(doc);
    item["billingPeriodStartDate"] = json!(format!("{}-01T00:00:00Z", &period_end[..7]));
    item["billingPeriodEndDate"] = json!(period_end);
    item
}

#[tokio::test]
async fn partner_center_invoices_are_paged_with_the_partner_center_token() {
    // 250 invoices: mostly older months, a few December 2024 ones spread across the pages.
    let mut all: Vec<Value> = (0..250)
        .map(|i| pc_invoice(&format!("G{i:09}"), "Invoice", "2023-01-31T00:00:00Z"))
        .collect();
    all[5] = pc_invoice("G100000005", "Invoice", "2024-12-31T00:00:00Z");
    all[120] = pc_invoice("G100000120", "Credit Note", "2024-12-31T00:00:00Z");
    all[130] = pc_invoice("not/an/id", "Invoice", "2024-12-31T00:00:00Z");
    all[210] = pc_invoice("D100000210", "Invoice", "2024-12-31T00:00:00Z");
    all[249] = pc_invoice("G000000001", "invoice", "2024-12-31T00:00:00Z");
    let all = Arc::new(all);
    let pages = all.clone();
    let pc = Mock::start(move |req, _| {
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(req.query.as_bytes())
                .into_owned()
                .collect();
        let size: usize = q["size"].parse().unwrap();
        let offset: usize = q["offset"].parse().unwrap();
        let items: Vec<Value> = pages.iter().skip(offset).take(size).cloned().collect();
        answer(200).json(json!({"totalCount": pages.len(), "items": items, "links": {}}))
    })
    .await;
    let base = pc.base().join("/partnercenter").unwrap();
    // Graph is elsewhere: a Graph token must not be what Partner Center gets.
    let graph = Url::parse("https://graph.microsoft.com").unwrap();
    let client = PartnerCenterClient::new(authed(&graph, Some(&base)), base);

    let invoices = client.list_invoices().await.unwrap();
    assert_eq!(invoices.len(), 249, "the unparseable id is skipped");

    let seen = pc.seen();
    assert_eq!(seen.len(), 3);
    let queries: Vec<&str> = seen.iter().map(|s| s.query.as_str()).collect();
    assert_eq!(
        queries,
        [
            "size=100&offset=0",
            "size=100&offset=100",
            "size=100&offset=200"
        ]
    );
    for s in &seen {
        assert_eq!(s.method, Method::GET);
        assert_eq!(s.path, "/partnercenter/v1/invoices");
        assert_eq!(s.header("authorization"), format!("Bearer {PC_TOKEN}"));
        assert_eq!(s.header("accept"), "application/json");
        assert_uuid_v4(s.header("ms-requestid"));
    }
    let correlation = seen[0].header("ms-correlationid");
    assert_uuid_v4(correlation);
    assert!(seen
        .iter()
        .all(|s| s.header("ms-correlationid") == correlation));
    assert_ne!(
        seen[0].header("ms-requestid"),
        seen[1].header("ms-requestid")
    );

    let december: Vec<String> = billed_invoices_for_month(
        &invoices,
        partner_billing_export::billing::BillingMonth::new(2024, time::Month::December),
    )
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(december, ["G000000001", "G100000005"]);
}

#[tokio::test]
async fn partner_center_stops_on_an_empty_page_without_total_count() {
    let pc = Mock::start(|req, _| {
        let items = if req.query.ends_with("offset=0") {
            vec![pc_invoice("G1", "Invoice", "2024-12-31T00:00:00Z")]
        } else {
            vec![]
        };
        answer(200).json(json!({"items": items}))
    })
    .await;
    let client = PartnerCenterClient::new(authed(&pc.base(), Some(&pc.base())), pc.base());
    let invoices = client.list_invoices().await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(pc.seen().len(), 2);
}

#[tokio::test]
async fn partner_center_refusals_are_rejected() {
    let pc =
        Mock::start(|_, _| answer(401).json(fixture("partner-center/error-unauthorized.json")))
            .await;
    let client = PartnerCenterClient::new(authed(&pc.base(), Some(&pc.base())), pc.base());
    match client.list_invoices().await.unwrap_err() {
        BillingError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code.as_str()), (401, "900"));
            assert!(message.contains("audience"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

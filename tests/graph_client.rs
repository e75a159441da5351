//! The Graph billing client against a recording mock of Graph on loopback: exact requests,
//! retries that honour Retry-After, 410, error envelopes, Location handling, Partner Center paging.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use partner_billing_export::auth::{
    http_client, AllowList, Audience, AuthorizedHttp, StaticTokenSource,
};
use partner_billing_export::billing::invoices::PartnerCenterClient;
use partner_billing_export::billing::{
    AttributeSet, BillingClient, BillingError, ExportKind, ExportRequest, GraphConfig,
    OperationState, PollOutcome,
};
use partner_billing_export::local::server::{spawn, ServerHandle};
use serde_json::{json, Value};
use warp::{Filter, Reply};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Clone, Default)]
struct Mock {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Mock {
    async fn start(answers: Vec<Answer>) -> (Self, ServerHandle) {
        let m = Mock {
            seen: Default::default(),
            script: Arc::new(Mutex::new(answers.into())),
        };
        let mm = m.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::bytes())
            .map(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      query: String,
                      auth,
                      ct,
                      body: bytes::Bytes| {
                    mm.seen.lock().unwrap().push(Seen {
                        method: method.to_string(),
                        path: path.as_str().to_string(),
                        query,
                        auth,
                        content_type: ct,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let (status, headers, body) = mm
                        .script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((500, vec![], "{}".into()));
                    let mut res = warp::reply::Response::new(body.into());
                    *res.status_mut() = warp::http::StatusCode::from_u16(status).unwrap();
                    for (k, v) in headers {
                        res.headers_mut().insert(k, v.parse().unwrap());
                    }
                    res
                },
            )
            .recover(|_| async {
                Ok::<_, std::convert::Infallible>(
                    warp::reply::with_status("bad", warp::http::StatusCode::BAD_REQUEST)
                        .into_response(),
                )
            });
        let handle = spawn(route, 0).await.unwrap();
        (m, handle)
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn client(graph: &ServerHandle) -> BillingClient {
    let base = graph.base_url();
    let mut allow = AllowList::default();
    allow.allow_url(Audience::Graph, &base);
    let tokens = Arc::new(
        StaticTokenSource::new()
            .with(Audience::Graph, "graph-tok")
            .with(Audience::PartnerCenter, "pc-tok"),
    );
    let http = AuthorizedHttp::new(http_client(), tokens, allow);
    BillingClient::new(
        http,
        GraphConfig {
            base_url: base,
            max_attempts: 3,
            backoff_base: Duration::from_millis(1),
            ..GraphConfig::default()
        },
    )
}

fn billed(kind: ExportKind) -> ExportRequest {
    ExportRequest::billed(kind, "G016907411".parse().unwrap(), AttributeSet::Full).unwrap()
}

fn unbilled(kind: ExportKind) -> ExportRequest {
    ExportRequest::unbilled(
        kind,
        "last".parse().unwrap(),
        "EUR".parse().unwrap(),
        AttributeSet::Basic,
    )
    .unwrap()
}

fn accepted(location: String) -> Answer {
    (
        202,
        vec![("location", location), ("retry-after", "7".into())],
        String::new(),
    )
}

#[tokio::test]
async fn every_kind_posts_the_documented_request() {
    let cases = [
        (
            billed(ExportKind::BilledUsage),
            "/v1.0/reports/partners/billing/usage/billed/export",
            json!({"invoiceId": "G016907411", "attributeSet": "full"}),
        ),
        (
            unbilled(ExportKind::UnbilledUsage),
            "/v1.0/reports/partners/billing/usage/unbilled/export",
            json!({"billingPeriod": "last", "currencyCode": "EUR", "attributeSet": "basic"}),
        ),
        (
            billed(ExportKind::BilledReconciliation),
            "/v1.0/reports/partners/billing/reconciliation/billed/export",
            json!({"invoiceId": "G016907411", "attributeSet": "full"}),
        ),
        (
            unbilled(ExportKind::UnbilledReconciliation),
            "/v1.0/reports/partners/billing/reconciliation/unbilled/export",
            json!({"billingPeriod": "last", "currencyCode": "EUR", "attributeSet": "basic"}),
        ),
    ];
    for (req, path, body) in cases {
        let (mock, h) = Mock::start(vec![]).await;
        mock.script.lock().unwrap().push_back(accepted(format!(
            "{}v1.0/reports/partners/billing/operations/op-1",
            h.base_url()
        )));
        let started = client(&h).start_export(&req).await.unwrap();
        assert!(started.operation_url.as_str().ends_with("/operations/op-1"));
        assert_eq!(started.retry_after, Some(Duration::from_secs(7)));
        let seen = mock.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, path);
        assert_eq!(seen[0].auth.as_deref(), Some("Bearer graph-tok"));
        assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), body);
    }
}

#[tokio::test]
async fn relative_location_is_resolved_and_foreign_location_refused() {
    let (mock, h) = Mock::start(vec![accepted(
        "/v1.0/reports/partners/billing/operations/rel".into(),
    )])
    .await;
    let started = client(&h)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap();
    assert_eq!(
        started.operation_url.as_str(),
        format!(
            "{}v1.0/reports/partners/billing/operations/rel",
            h.base_url()
        )
    );
    drop(mock);

    // `localhost` is another host than the allow-listed `127.0.0.1`.
    let (foreign, fh) = Mock::start(vec![]).await;
    let loc = format!(
        "http://localhost:{}/v1.0/reports/partners/billing/operations/evil",
        fh.addr.port()
    );
    let (_mock, h) = Mock::start(vec![accepted(loc.clone())]).await;
    let c = client(&h);
    let err = c
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::Auth(_)), "{err}");
    assert!(err.to_string().contains("allow-list"), "{err}");
    // Polling it directly is refused too, before any request is made.
    let err = c
        .get_operation(&url::Url::parse(&loc).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::Auth(_)), "{err}");
    assert!(
        foreign.seen().is_empty(),
        "the foreign host must never be contacted"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
    let running = json!({"@odata.type": "#microsoft.graph.partners.billing.runningOperation", "id": "op", "status": "running"}).to_string();
    let (mock, h) = Mock::start(vec![
        (
            429,
            vec![("retry-after", "0".into())],
            r#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#.into(),
        ),
        (503, vec![], String::new()),
        (
            200,
            vec![
                ("retry-after", "12".into()),
                ("content-type", "application/json".into()),
            ],
            running,
        ),
    ])
    .await;
    let url = h
        .base_url()
        .join("v1.0/reports/partners/billing/operations/op")
        .unwrap();
    let out = client(&h).get_operation(&url).await.unwrap();
    match out {
        PollOutcome::Operation(op) => {
            assert_eq!(
                op.state,
                OperationState::Running {
                    status: "running".into()
                }
            );
            assert_eq!(op.retry_after, Some(Duration::from_secs(12)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.seen().len(), 3);
}

#[tokio::test]
async fn persistent_failure_gone_and_rejection() {
    let (mock, h) = Mock::start(vec![
        (500, vec![], String::new()),
        (502, vec![], String::new()),
        (504, vec![], String::new()),
    ])
    .await;
    let url = h
        .base_url()
        .join("v1.0/reports/partners/billing/operations/op")
        .unwrap();
    let err = client(&h).get_operation(&url).await.unwrap_err();
    assert!(
        matches!(err, BillingError::Unavailable { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(mock.seen().len(), 3);

    let (_m, h) = Mock::start(vec![(410, vec![], String::new())]).await;
    let url = h
        .base_url()
        .join("v1.0/reports/partners/billing/operations/op")
        .unwrap();
    assert_eq!(
        client(&h).get_operation(&url).await.unwrap(),
        PollOutcome::Gone
    );

    let (_m, h) = Mock::start(vec![(
        400,
        vec![("content-type", "application/json".into())],
        r#"{"error":{"code":"BadRequest","message":"Invalid invoice id","innerError":{"request-id":"x"}}}"#.into(),
    )])
    .await;
    let err = client(&h)
        .start_export(&billed(ExportKind::BilledUsage))
        .await
        .unwrap_err();
    match err {
        BillingError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!(
                (status, code.as_str(), message.as_str()),
                (400, "BadRequest", "Invalid invoice id")
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn manifest_by_navigation_link() {
    let (_m, h) = Mock::start(vec![]).await;
    let manifest = json!({
        "id": "m1", "schemaVersion": "2", "dataFormat": "compressedJSON", "eTag": "e1", "partnerTenantId": "t",
        "rootDirectory": format!("{}blob/c/v1/BillingMonth=202610", h.base_url()),
        "sasToken": "sv=2021-08-06&se=2026-11-25T11%3A00%3A00Z&sig=abc", "partitionType": "default", "blobCount": 1,
        "blobs": [{"name": "part-00000-x.c000.json.gz", "partitionValue": "default"}]
    });
    _m.script.lock().unwrap().push_back((
        200,
        vec![("content-type", "application/json".into())],
        manifest.to_string(),
    ));
    let link = h
        .base_url()
        .join("v1.0/reports/partners/billing/manifests/m1")
        .unwrap();
    let m = client(&h).get_manifest(&link).await.unwrap();
    assert_eq!(m.etag, "e1");
    let u = m.blob_url(&m.blobs[0]).unwrap();
    assert!(u.as_str().ends_with("/BillingMonth=202610/part-00000-x.c000.json.gz?sv=2021-08-06&se=2026-11-25T11%3A00%3A00Z&sig=abc"), "{u}");
}

#[tokio::test]
async fn partner_center_pages_with_its_own_token() {
    let page = |ids: &[&str], total: u64| -> Answer {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "documentType": "Invoice", "billingPeriodEndDate": "2026-10-31T00:00:00Z", "currencyCode": "USD"}))
            .collect();
        (
            200,
            vec![("content-type", "application/json".into())],
            json!({"totalCount": total, "items": items}).to_string(),
        )
    };
    let first: Vec<String> = (0..100).map(|i| format!("G{i:09}")).collect();
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let (mock, h) = Mock::start(vec![page(&first, 102), page(&["G100000000", "D1"], 102)]).await;
    let base = h.base_url().join("partnercenter").unwrap();
    let mut allow = AllowList::default();
    allow.allow_url(Audience::PartnerCenter, &base);
    let tokens = Arc::new(
        StaticTokenSource::new()
            .with(Audience::Graph, "graph-tok")
            .with(Audience::PartnerCenter, "pc-tok"),
    );
    let pc = PartnerCenterClient::new(AuthorizedHttp::new(http_client(), tokens, allow), base);
    let invoices = pc.list_invoices().await.unwrap();
    assert_eq!(invoices.len(), 102);
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/partnercenter/v1/invoices");
    assert_eq!(seen[0].query, "size=100&offset=0");
    assert_eq!(seen[1].query, "size=100&offset=100");
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref() == Some("Bearer pc-tok")),
        "Partner Center needs its own audience"
    );
    let ids = partner_billing_export::billing::invoices::billed_invoices_for_month(
        &invoices,
        2026,
        time::Month::October,
    );
    assert_eq!(ids.len(), 101, "the legacy D invoice is not exportable");
}

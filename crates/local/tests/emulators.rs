//! The local stand-ins speak the documented wire formats, and the production adapters work
//! against them through their normal code path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use partner_billing_export::adapters::events::{CloudEvent, EventGridPublisher, EventPublisher};
use partner_billing_export::adapters::servicebus::{
    broker_properties, rfc1123, MessageQueue, OutgoingMessage, QueueError, ServiceBusRest,
};
use partner_billing_export::auth::{
    http_client, AllowList, Audience, AuthorizedHttp, StaticTokenSource,
};
use partner_billing_local::eventgrid::{EventGridConfig, EventGridEmulator};
use partner_billing_local::host::{FunctionsHost, HostOptions};
use partner_billing_local::layout::AppLayout;
use partner_billing_local::servicebus::{ServiceBusConfig, ServiceBusEmulator};
use partner_billing_local::tokens::{LOCAL_EVENTGRID_TOKEN, LOCAL_SERVICEBUS_TOKEN};
use serde_json::{json, Value};
use test_support::{fast_sandbox, TestBed};

/// The workspace root: the host stages its script root from the repository's layout.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The handler binary, built by cargo as `cargo local` builds it (target/<profile>/).
fn handler_binary() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test>
    let profile_dir = test_exe.parent().and_then(Path::parent).unwrap();
    partner_billing_local::handler_binary::build_with_cargo(Path::new(env!("CARGO")), profile_dir)
        .expect("cargo builds the handler")
}

fn sb() -> Arc<ServiceBusEmulator> {
    ServiceBusEmulator::new(ServiceBusConfig {
        queues: vec!["q".into()],
        max_delivery_count: 3,
        duplicate_detection_window: Duration::from_secs(600),
        token: LOCAL_SERVICEBUS_TOKEN.into(),
        sas_keys: Vec::new(),
    })
}

fn authed(audience: Audience, url: &url::Url, token: &str) -> AuthorizedHttp {
    let mut allow = AllowList::default();
    allow.allow_url(audience, url);
    AuthorizedHttp::new(
        http_client(),
        Arc::new(StaticTokenSource::new().with(audience, token)),
        allow,
    )
}

#[tokio::test]
async fn service_bus_rest_wire_format() {
    let sb = sb();
    let h = sb.serve(0).await.unwrap();
    let c = reqwest::Client::new();
    let url = format!("{}q/messages", h.base_url());
    let post = |auth: Option<&str>, props: &str| {
        let mut r = c
            .post(&url)
            .header("BrokerProperties", props.to_string())
            .body("{\"a\":1}");
        if let Some(a) = auth {
            r = r.header("Authorization", a.to_string());
        }
        r.send()
    };
    let bearer = format!("Bearer {LOCAL_SERVICEBUS_TOKEN}");
    assert_eq!(post(None, "{}").await.unwrap().status(), 401);
    assert_eq!(
        post(Some("Bearer wrong"), "{}").await.unwrap().status(),
        401
    );
    assert_eq!(post(Some(&bearer), "not json").await.unwrap().status(), 400);
    assert_eq!(
        post(
            Some(&bearer),
            r#"{"ScheduledEnqueueTimeUtc":"2026-11-25T10:00:00Z"}"#
        )
        .await
        .unwrap()
        .status(),
        400,
        "RFC 1123 only"
    );
    assert_eq!(
        post(Some(&bearer), r#"{"MessageId":"m1"}"#)
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        post(Some(&bearer), r#"{"MessageId":"m1"}"#)
            .await
            .unwrap()
            .status(),
        201,
        "duplicates are accepted and dropped"
    );
    let r = c
        .post(format!("{}nope/messages", h.base_url()))
        .header("Authorization", &bearer)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let big = c
        .post(&url)
        .header("Authorization", &bearer)
        .body(vec![b'x'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(sb.stats().sent, 1);
    assert_eq!(sb.stats().duplicates_dropped, 1);
    // Dead letters are inspectable over HTTP.
    let d = sb.receive("q").await.unwrap();
    for _ in 0..3 {
        sb.abandon(&d, "boom");
        if let Some(again) = tokio::time::timeout(Duration::from_millis(200), sb.receive("q"))
            .await
            .ok()
            .flatten()
        {
            assert_eq!(again.message_id, "m1");
            sb.abandon(&again, "boom");
        }
    }
    let dl: Value = c
        .get(format!("{}q/$deadletterqueue", h.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dl["value"][0]["messageId"], "m1");
}

#[tokio::test]
async fn service_bus_adapter_schedules_through_the_stand_in() {
    let sb = sb();
    let h = sb.serve(0).await.unwrap();
    let adapter = ServiceBusRest::new(
        authed(Audience::ServiceBus, &h.base_url(), LOCAL_SERVICEBUS_TOKEN),
        h.base_url(),
    );
    let at = time::OffsetDateTime::now_utc() + Duration::from_secs(2);
    let msg = OutgoingMessage::json(&json!({"v": 1}), "run-x-poll-3", Some(at)).unwrap();
    assert!(broker_properties(&msg).contains(&rfc1123(at)));
    adapter.send("q", &msg).await.unwrap();
    // Not before its time (RFC 1123 has whole seconds, so allow for truncation).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sb.receive("q"))
            .await
            .is_err(),
        "delivered early"
    );
    let d = tokio::time::timeout(Duration::from_secs(5), sb.receive("q"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message_id, "run-x-poll-3");
    assert_eq!(
        serde_json::from_slice::<Value>(&d.body).unwrap(),
        json!({"v": 1})
    );
    assert_eq!(d.content_type.as_deref(), Some("application/json"));
    // Errors name what to fix.
    let err = adapter.send("missing", &msg).await.unwrap_err();
    assert!(matches!(err, QueueError::NotFound { .. }), "{err}");
    let wrong = ServiceBusRest::new(
        authed(Audience::ServiceBus, &h.base_url(), "stolen"),
        h.base_url(),
    );
    let err = wrong.send("q", &msg).await.unwrap_err();
    assert!(
        err.to_string().contains("Azure Service Bus Data Sender"),
        "{err}"
    );
}

#[tokio::test]
async fn event_grid_stand_in_and_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let eg = EventGridEmulator::new(EventGridConfig {
        token: LOCAL_EVENTGRID_TOKEN.into(),
        events_file: Some(file.clone()),
    });
    let h = eg.serve(0).await.unwrap();
    let topic = EventGridEmulator::topic_url(&h);
    let c = reqwest::Client::new();
    let send = |ct: &str, auth: &str, body: Value| {
        c.post(topic.clone())
            .header("content-type", ct.to_string())
            .header("aeg-sas-key", auth.to_string())
            .json(&body)
            .send()
    };
    let batch = "application/cloudevents-batch+json; charset=utf-8";
    let good = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
    assert_eq!(
        send(batch, "wrong", json!([good])).await.unwrap().status(),
        401
    );
    assert_eq!(
        send("application/json", LOCAL_EVENTGRID_TOKEN, json!([good]))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        send(
            batch,
            LOCAL_EVENTGRID_TOKEN,
            json!([{"specversion": "1.0", "source": "/s", "type": "t"}])
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        send(
            batch,
            LOCAL_EVENTGRID_TOKEN,
            json!([{"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}])
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        send(batch, LOCAL_EVENTGRID_TOKEN, json!(good))
            .await
            .unwrap()
            .status(),
        400,
        "a batch must be an array"
    );
    assert!(
        eg.events().is_empty(),
        "nothing accepted from invalid requests"
    );

    let publisher = EventGridPublisher::new(
        authed(Audience::EventGrid, &topic, LOCAL_EVENTGRID_TOKEN),
        topic.clone(),
    );
    let events = vec![
        CloudEvent::new(
            "/pbe",
            "PartnerBillingExport.ExportStarted.v1",
            "r-started-0".into(),
            "exports/x".into(),
            json!({"runId": "r"}),
        ),
        CloudEvent::new(
            "/pbe",
            "PartnerBillingExport.ExportCompleted.v1",
            "r-completed".into(),
            "exports/x".into(),
            json!({"runId": "r"}),
        ),
    ];
    publisher.publish(&events).await.unwrap();
    let got = eg.events();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["type"], "PartnerBillingExport.ExportCompleted.v1");
    assert_eq!(got[0]["datacontenttype"], "application/json");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
}

async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// The handler's app settings against the bed's stand-ins: unbilled usage into `out`.
fn handler_env(bed: &TestBed, servicebus: &str, out: &Path) -> Vec<(String, String)> {
    let mut env = bed.handler_identity.clone();
    env.extend([
        (
            "GRAPH_BASE_URL".to_string(),
            bed.sandbox.graph_base_url().to_string(),
        ),
        (
            "PARTNER_CENTER_BASE_URL".to_string(),
            bed.sandbox.partner_center_base_url().to_string(),
        ),
        ("SERVICEBUS_ENDPOINT".to_string(), servicebus.to_string()),
        ("DESTINATION_KIND".to_string(), "filesystem".to_string()),
        (
            "DESTINATION_DIRECTORY".to_string(),
            out.display().to_string(),
        ),
        ("EXPORT_KINDS".to_string(), "unbilledUsage".to_string()),
        ("LOG_FORMAT".to_string(), "text".to_string()),
    ]);
    env
}

#[tokio::test]
async fn functions_host_routes_keys_and_run_now() {
    // Operations stay running for the whole test: the host's queue workers poll them, and the
    // duplicate-start check below needs the run still active.
    let slow = partner_billing_local::graph_sandbox::SandboxConfig {
        polls_before_done: 1000,
        retry_after_secs: 30,
        ..fast_sandbox()
    };
    let bed = TestBed::start(slow, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    // The host reads a script root laid out as the package is, never the repository.
    let script_root = partner_billing_local::script_root::stage_repository(
        &repository_root(),
        &dir.path().join("app"),
    )
    .unwrap();
    let layout = AppLayout::load(&script_root, &|n| {
        partner_billing_export::settings::find(n)
            .and_then(|s| s.default)
            .map(str::to_string)
    })
    .unwrap();
    let sb_http = bed.sb.serve(0).await.unwrap();
    let env = handler_env(&bed, sb_http.base_url().as_str(), dir.path());
    let host = FunctionsHost::start(HostOptions {
        layout,
        program: handler_binary(),
        env,
        log_file: dir.path().join("handler.log"),
        http_port: 0,
        function_key: "k".into(),
        service_bus: bed.sb.clone(),
    })
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let api = host.http_base();
    // authLevel function: no key, wrong key → 401; right key → the function answers.
    assert_eq!(status_of(c.get(api.join("exports").unwrap())).await, 401);
    assert_eq!(
        status_of(c.get(api.join("exports?code=x").unwrap())).await,
        401
    );
    let ok = c
        .get(api.join("exports?code=k").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "application/json");
    // Unknown route, wrong method, bad run id.
    assert_eq!(
        status_of(c.get(api.join("nothing?code=k").unwrap())).await,
        404
    );
    assert_eq!(
        status_of(c.delete(api.join("exports?code=k").unwrap())).await,
        405
    );
    let bad = c
        .get(api.join("exports/..%2F..%2Fetc?code=k").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Run now: the timer starts the configured export, which then appears in the list.
    let admin = host
        .http_base()
        .join("../admin/functions/StartUnbilledExports")
        .unwrap();
    assert_eq!(c.post(admin.clone()).send().await.unwrap().status(), 401);
    let r = c
        .post(admin)
        .header("x-functions-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    // One unbilled export per currency of the sandbox's invoices (EUR, GBP, USD).
    assert!(body["logs"].to_string().contains("3 started"), "{body}");
    let list: Value = c
        .get(api.join("exports?code=k").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 3);
    // POST with a body goes through payload mode to the function and back.
    let started = c
        .post(api.join("exports?code=k").unwrap())
        .json(&json!({"kind": "unbilledUsage", "billingPeriod": "current", "currencyCode": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let v: Value = started.json().await.unwrap();
    assert_eq!(
        v["duplicate"], true,
        "the timer already started this export: {v}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn keyed_alternatives_service_bus_connection_string_and_topic_key() {
    use partner_billing_export::adapters::shared_key::parse_connection_string;
    let conn = parse_connection_string("Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=s3cret").unwrap();
    let sb = ServiceBusEmulator::new(ServiceBusConfig {
        queues: vec!["q".into()],
        max_delivery_count: 3,
        duplicate_detection_window: Duration::from_secs(600),
        token: LOCAL_SERVICEBUS_TOKEN.into(),
        sas_keys: vec![conn.key.clone()],
    });
    let h = sb.serve(0).await.unwrap();
    // The endpoint is overridden to the stand-in; the signature covers the URL actually used.
    let no_tokens = AuthorizedHttp::new(
        http_client(),
        Arc::new(StaticTokenSource::new()),
        AllowList::default(),
    );
    let keyed =
        ServiceBusRest::new(no_tokens.clone(), h.base_url()).with_shared_key(conn.key.clone());
    let msg = OutgoingMessage::json(&json!({"v": 1}), "k1", None).unwrap();
    keyed.send("q", &msg).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), sb.receive("q"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message_id, "k1");
    let mut wrong_key = conn.key.clone();
    wrong_key.key = partner_billing_export::auth::Secret::new("guess");
    let forged = ServiceBusRest::new(no_tokens.clone(), h.base_url()).with_shared_key(wrong_key);
    let err = forged.send("q", &msg).await.unwrap_err();
    assert!(
        matches!(err, QueueError::Forbidden { status: 401, .. }),
        "{err}"
    );
    // A signature is never sent over plain http to another machine.
    let remote = ServiceBusRest::new(
        no_tokens.clone(),
        url::Url::parse("http://example.com").unwrap(),
    )
    .with_shared_key(conn.key);
    assert!(matches!(
        remote.send("q", &msg).await.unwrap_err(),
        QueueError::Auth(_)
    ));

    let eg = EventGridEmulator::new(EventGridConfig {
        token: "topic-key".into(),
        events_file: None,
    });
    let egh = eg.serve(0).await.unwrap();
    let topic = EventGridEmulator::topic_url(&egh);
    let ev = [CloudEvent::new(
        "/pbe",
        "t",
        "1".into(),
        "s".into(),
        json!({}),
    )];
    let keyed = EventGridPublisher::new(no_tokens.clone(), topic.clone())
        .with_access_key(partner_billing_export::auth::Secret::new("topic-key"));
    keyed.publish(&ev).await.unwrap();
    assert_eq!(eg.events().len(), 1);
    let wrong = EventGridPublisher::new(no_tokens, topic)
        .with_access_key(partner_billing_export::auth::Secret::new("nope"));
    assert!(wrong
        .publish(&ev)
        .await
        .unwrap_err()
        .to_string()
        .contains("EventGrid Data Sender"));
}

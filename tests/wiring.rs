//! One wiring test per deployment mode: `App::from_config` with the settings of that mode, run
//! against stand-ins that accept only the credential the mode must use.
//!
//! - system-assigned managed identity for everything (the default);
//! - a user-assigned identity (`AZURE_CLIENT_ID`): tokens without its client id are refused;
//! - Graph with an app registration's client secret (or certificate), Azure resources with the
//!   managed identity;
//! - the keyed alternatives: a Service Bus connection string and the Event Grid topic key.
//!
//! The managed-identity credential reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process
//! environment, so the modes run one after another in a single test.

use std::time::Duration;

use partner_billing_export::adapters::shared_key::SharedAccessKey;
use partner_billing_export::app::{token_sources, App};
use partner_billing_export::auth::{Audience, Secret, TokenSource};
use partner_billing_export::config::{Config, Settings};
use partner_billing_export::pipeline::{RunState, Trigger};
use partner_billing_local::identity::{IdentityConfig, IdentityEndpoint, TokenRequest};
use partner_billing_local::server::ServerHandle;
use test_support::testbed::StandInAuth;
use test_support::{fast_sandbox, unbilled_usd, TestBed};

const UAMI: &str = "11111111-2222-3333-4444-555555555555";

fn resource(a: Audience) -> String {
    a.scope().trim_end_matches("/.default").to_string()
}

async fn identity(cfg: IdentityConfig) -> (IdentityEndpoint, ServerHandle) {
    let ep = IdentityEndpoint::new(IdentityConfig {
        header_secret: "wiring-header".into(),
        ..cfg
    });
    let server = ep.serve(0).await.unwrap();
    for (k, v) in ep.settings(&server) {
        std::env::set_var(k, v);
    }
    (ep, server)
}

fn config(bed: &TestBed, mode: &[(&str, &str)]) -> Config {
    let mut settings = bed.settings.clone();
    for (k, v) in mode {
        settings.insert(k.to_string(), v.to_string());
    }
    Config::load(&Settings::new(move |k| settings.get(k).cloned())).expect("config")
}

/// Starts one export with the bed's app and pumps it to the end.
async fn export_completes(bed: &TestBed) {
    let run = bed.start_new(unbilled_usd(), Trigger::Http).await;
    bed.drain(Duration::from_secs(60)).await;
    let run = bed.run(&run.run_id).await;
    assert_eq!(run.state, RunState::Completed, "{run:#?}");
    assert_eq!(bed.events_of_type("ExportCompleted.v1").len(), 1);
}

fn asked_for(requests: &[TokenRequest], a: Audience) -> bool {
    requests.iter().any(|r| r.resource == resource(a))
}

/// Mode 3 of `every_deployment_mode_uses_its_credentials`: Graph signs in with a client secret
/// or certificate, Azure resources with the managed identity.
async fn graph_with_an_app_credential_and_azure_with_the_identity() {
    // The SDK's client-secret credential reads its sign-in host from the environment itself.
    std::env::set_var("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9/");
    let (ep, _server) = identity(IdentityConfig {
        audiences: vec![Audience::Storage, Audience::ServiceBus, Audience::EventGrid],
        ..IdentityConfig::default()
    })
    .await;
    let bed = TestBed::start(fast_sandbox(), &[]).await;
    let mode = [
        ("GRAPH_CREDENTIAL_KIND", "client-secret"),
        ("GRAPH_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
        ("GRAPH_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
        ("GRAPH_CLIENT_SECRET", "wiring-secret"),
        ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9/"),
    ];
    let cfg = config(&bed, &mode);
    App::from_config(cfg.clone()).expect("the app builds in this mode");
    let tokens = token_sources(&cfg.credentials).unwrap();
    for a in [Audience::Storage, Audience::ServiceBus, Audience::EventGrid] {
        tokens
            .token(a)
            .await
            .unwrap_or_else(|e| panic!("{a:?}: {e}"));
    }
    for a in [Audience::Graph, Audience::PartnerCenter] {
        let e = tokens.token(a).await.unwrap_err().to_string();
        assert!(
            e.contains("client secret"),
            "{a:?} uses the client secret: {e}"
        );
        assert!(!e.contains("wiring-secret"), "the secret never shows: {e}");
    }
    let seen = ep.requests();
    assert!(!asked_for(&seen, Audience::Graph), "{seen:?}");
    assert!(!asked_for(&seen, Audience::PartnerCenter), "{seen:?}");
    assert!(seen.iter().all(|r| r.granted), "{seen:?}");

    // 3b. The same with a client certificate (a signed assertion instead of a secret).
    let pem = test_support::fixtures::dir().join("identity/test-client-certificate.pem");
    let pem = pem.to_str().unwrap().to_string();
    let mode = [
        ("GRAPH_CREDENTIAL_KIND", "client-certificate"),
        ("GRAPH_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
        ("GRAPH_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
        ("GRAPH_CLIENT_CERTIFICATE_PATH", pem.as_str()),
        ("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9/"),
    ];
    // Like the secret, the certificate's location comes from the settings `config` reads.
    let cfg = config(&bed, &mode);
    App::from_config(cfg.clone()).expect("the app builds with a certificate");
    let tokens = token_sources(&cfg.credentials).unwrap();
    tokens.token(Audience::ServiceBus).await.unwrap();
    let e = tokens.token(Audience::Graph).await.unwrap_err().to_string();
    assert!(e.contains("client certificate"), "{e}");
    assert!(
        !e.contains("PRIVATE KEY") && !e.contains("MII"),
        "no key material: {e}"
    );
    assert!(!asked_for(&ep.requests(), Audience::Graph));
    std::env::remove_var("AZURE_AUTHORITY_HOST");
}

#[tokio::test]
async fn every_deployment_mode_uses_its_credentials() {
    // 1. System-assigned managed identity for everything.
    {
        let (ep, _server) = identity(IdentityConfig::default()).await;
        let bed = TestBed::start(fast_sandbox(), &[]).await;
        let app = App::from_config(config(&bed, &[])).unwrap();
        let bed = bed.with_app(app);
        export_completes(&bed).await;
        let seen = ep.requests();
        for a in [Audience::Graph, Audience::ServiceBus, Audience::EventGrid] {
            assert!(
                asked_for(&seen, a),
                "system identity asked for {a:?}: {seen:?}"
            );
        }
        assert!(
            seen.iter().all(|r| r.granted && r.client_id.is_none()),
            "{seen:?}"
        );
    }

    // 2. User-assigned identity: the endpoint refuses requests without its client id.
    {
        let (ep, _server) = identity(IdentityConfig {
            user_assigned_client_id: Some(UAMI.into()),
            ..IdentityConfig::default()
        })
        .await;
        let bed = TestBed::start(fast_sandbox(), &[]).await;
        let app = App::from_config(config(&bed, &[("AZURE_CLIENT_ID", UAMI)])).unwrap();
        let bed = bed.with_app(app);
        export_completes(&bed).await;
        let seen = ep.requests();
        assert!(!seen.is_empty());
        assert!(
            seen.iter()
                .all(|r| r.granted && r.client_id.as_deref() == Some(UAMI)),
            "every token request names the user-assigned identity: {seen:?}"
        );
    }

    // 3. Graph with a client secret, Azure resources with the managed identity, which has no
    //    Graph access: Graph tokens must come from Entra ID's token endpoint (here a closed
    //    loopback port, so the attempt fails fast and names the client secret), never from
    //    the identity endpoint.
    graph_with_an_app_credential_and_azure_with_the_identity().await;

    // 4. Keyed alternatives: Service Bus accepts only SAS tokens signed with its key, Event Grid
    //    only the topic key, and the identity has no role on either.
    {
        let (ep, _server) = identity(IdentityConfig {
            audiences: vec![Audience::Graph, Audience::PartnerCenter, Audience::Storage],
            ..IdentityConfig::default()
        })
        .await;
        let key = SharedAccessKey {
            name: "functions".into(),
            key: Secret::new("c2VjcmV0LXNoYXJlZC1hY2Nlc3Mta2V5"),
        };
        let bed = TestBed::start_with(
            StandInAuth {
                servicebus_token: "no-bearer-accepted".into(),
                servicebus_keys: vec![key.clone()],
                eventgrid_token: "topic-key".into(),
            },
            fast_sandbox(),
            &[],
        )
        .await;
        let connection = format!(
            "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName={};SharedAccessKey={}",
            key.name,
            key.key.expose()
        );
        let app = App::from_config(config(
            &bed,
            &[
                ("ServiceBusConnection", &connection),
                ("EVENTGRID_TOPIC_KEY", "topic-key"),
            ],
        ))
        .unwrap();
        let bed = bed.with_app(app);
        export_completes(&bed).await;
        let seen = ep.requests();
        assert!(asked_for(&seen, Audience::Graph), "{seen:?}");
        assert!(!asked_for(&seen, Audience::ServiceBus), "{seen:?}");
        assert!(!asked_for(&seen, Audience::EventGrid), "{seen:?}");
    }
}

#[test]
fn settings_name_the_credential_that_is_wrong() {
    let load = |pairs: &[(&str, &str)]| {
        let mut m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert(
            "DESTINATION_ACCOUNT_URL".into(),
            "https://a.blob.core.windows.net".into(),
        );
        Config::load(&Settings::new(move |k| m.get(k).cloned()))
    };
    let e = load(&[("GRAPH_CREDENTIAL_KIND", "client-secret")]).unwrap_err();
    assert_eq!(e.name, "GRAPH_TENANT_ID");
    let e = load(&[("AZURE_CREDENTIAL_KIND", "client-secret")]).unwrap_err();
    assert_eq!(e.name, "AZURE_CREDENTIAL_KIND");
    assert!(e.to_string().contains("GRAPH_CREDENTIAL_KIND"), "{e}");
    let e = load(&[("GRAPH_CREDENTIAL_KIND", "client-certificate")]).unwrap_err();
    assert_eq!(e.name, "GRAPH_TENANT_ID");
}

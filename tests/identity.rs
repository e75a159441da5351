//! Managed identity (App Service / Functions flavour) against a local stand-in of the identity
//! endpoint. `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are process-wide, so every case runs in
//! one test, in sequence, in this test binary of its own.

use std::sync::{Arc, Mutex};

use partner_billing_export::adapters::identity::token_source;
use partner_billing_export::adapters::identity::CredentialKind;
use partner_billing_export::auth::{Audience, AuthError};
use warp::Filter;

#[derive(Debug, Clone)]
struct Seen {
    query: String,
    identity_header: Option<String>,
}

#[derive(Clone, Copy)]
enum Mode {
    Token { ttl_secs: i64 },
    Status(u16),
}

struct Endpoint {
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<Mutex<Mode>>,
    port: u16,
}

async fn endpoint() -> Endpoint {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(Mode::Token { ttl_secs: 3600 }));
    let (s, m) = (seen.clone(), mode.clone());
    let route = warp::path!("msi" / "token")
        .and(warp::get())
        .and(warp::query::raw())
        .and(warp::header::optional::<String>("x-identity-header"))
        .map(move |query: String, identity_header: Option<String>| {
            s.lock().unwrap().push(Seen {
                query: query.clone(),
                identity_header: identity_header.clone(),
            });
            let params: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
            let ok = params.get("api-version").map(String::as_str) == Some("2019-08-01")
                && identity_header.as_deref() == Some("secret-header");
            let mode = *m.lock().unwrap();
            let (status, body) = match mode {
                _ if !ok => (400, serde_json::json!({"error": "bad request"})),
                Mode::Status(s) => (s, serde_json::json!({"error": "nope"})),
                Mode::Token { ttl_secs } => {
                    let n = s.lock().unwrap().len();
                    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + ttl_secs;
                    (
                        200,
                        serde_json::json!({
                            "access_token": format!("mi-token-{n}"),
                            "expires_on": exp.to_string(),
                            "resource": params.get("resource"),
                            "token_type": "Bearer",
                        }),
                    )
                }
            };
            warp::reply::with_status(
                warp::reply::json(&body),
                warp::http::StatusCode::from_u16(status).unwrap(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Endpoint { seen, mode, port }
}

fn param(q: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn managed_identity_against_a_local_identity_endpoint() {
    let ep = endpoint().await;
    // Edition 2021: set_var is safe to call; no other test in this binary reads the environment.
    std::env::set_var(
        "IDENTITY_ENDPOINT",
        format!("http://127.0.0.1:{}/msi/token", ep.port),
    );
    std::env::set_var("IDENTITY_HEADER", "secret-header");
    let count = || ep.seen.lock().unwrap().len();
    let system = CredentialKind::ManagedIdentity { client_id: None };

    // 1. System-assigned: fetched once, then served from the cache.
    let src = token_source(&system).unwrap();
    let t1 = src.token(Audience::Storage).await.unwrap();
    assert!(t1.secret.expose().starts_with("mi-token-"));
    let t2 = src.token(Audience::Storage).await.unwrap();
    assert_eq!(t1.secret, t2.secret);
    assert_eq!(count(), 1, "second call made no request");
    {
        let seen = ep.seen.lock().unwrap();
        let q = &seen[0].query;
        assert_eq!(param(q, "api-version").as_deref(), Some("2019-08-01"));
        assert_eq!(
            param(q, "resource").as_deref(),
            Some("https://storage.azure.com")
        );
        assert_eq!(param(q, "client_id"), None);
        assert_eq!(seen[0].identity_header.as_deref(), Some("secret-header"));
    }
    // Another audience is another token.
    src.token(Audience::Graph).await.unwrap();
    assert_eq!(count(), 2);
    assert!(
        !format!("{src:?}").contains("mi-token"),
        "tokens never in Debug"
    );

    // 2. A token that expires within the refresh margin is fetched again on the next call.
    *ep.mode.lock().unwrap() = Mode::Token { ttl_secs: 60 };
    let src = token_source(&system).unwrap();
    let a = src.token(Audience::ServiceBus).await.unwrap();
    let b = src.token(Audience::ServiceBus).await.unwrap();
    assert_ne!(a.secret, b.secret);
    assert_eq!(count(), 4, "near-expiry token refetched");

    // 3. User-assigned adds client_id.
    *ep.mode.lock().unwrap() = Mode::Token { ttl_secs: 3600 };
    let user = CredentialKind::ManagedIdentity {
        client_id: Some("11111111-2222-3333-4444-555555555555".into()),
    };
    token_source(&user)
        .unwrap()
        .token(Audience::EventGrid)
        .await
        .unwrap();
    let last = ep.seen.lock().unwrap().last().unwrap().query.clone();
    assert_eq!(
        param(&last, "client_id").as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        param(&last, "resource").as_deref(),
        Some("https://eventgrid.azure.net")
    );

    // 4. Refusals name the credential, the audience and a reason.
    for status in [400, 500] {
        *ep.mode.lock().unwrap() = Mode::Status(status);
        let e = token_source(&system)
            .unwrap()
            .token(Audience::Storage)
            .await
            .unwrap_err();
        match &e {
            AuthError::Credential {
                credential,
                audience,
                reason,
            } => {
                assert!(credential.contains("managed identity"), "{e}");
                assert_eq!(*audience, "Azure Storage");
                let want = if status == 400 { "refused" } else { "failed" };
                assert!(reason.contains(want), "{e}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // 5. No endpoint at all (identity not assigned, or wrong port).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::env::set_var(
        "IDENTITY_ENDPOINT",
        format!("http://127.0.0.1:{port}/msi/token"),
    );
    let e = token_source(&system)
        .unwrap()
        .token(Audience::Storage)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not reachable"), "{e}");
}

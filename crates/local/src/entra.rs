//! Entra ID (Microsoft identity platform v2.0) token endpoint stand-in, for the grants the
//! product uses: client credentials with a secret or a federated assertion (a managed
//! identity's token for `api://AzureADTokenExchange`), the device authorization grant, and
//! refresh tokens. Tokens are unsigned JWTs carrying the claims Entra puts in them (`aud`,
//! `tid`, `roles` for apps, `scp` for users), so the handler's claim checks and the Graph
//! sandbox read them as they read Entra's.
//!
//! Protocol as Microsoft documents it: "OAuth 2.0 client credentials flow" (`POST
//! /{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials`, `client_secret` or
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` +
//! `client_assertion`), "Workload identity federation" (assertion `aud`
//! `api://AzureADTokenExchange`, matched on issuer and subject), "OAuth 2.0 device authorization
//! grant" (`POST /{tenant}/oauth2/v2.0/devicecode`; polling answers `authorization_pending`),
//! "Refresh tokens". Errors carry `error`, `error_description` (starting with the AADSTS code)
//! and `error_codes`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use partner_billing_export::auth::claims::unsigned_jwt;
use partner_billing_export::auth::Audience;
use serde_json::json;
use warp::Filter;

use crate::server::{json_response, spawn, ServerHandle};
use crate::tokens::{audience_claim, entra_token, Grant};

/// The application id Entra uses as the `aud` of token-exchange assertions.
pub const TOKEN_EXCHANGE_APP_ID: &str = "fb60f99c-7a34-4190-8149-302f77469936";
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A federated identity credential of an app: which issuer and subject may sign it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    pub issuer: String,
    pub subject: String,
}

/// An app registration of a tenant, with what an admin consented for it.
#[derive(Debug, Clone, Default)]
pub struct EntraApp {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub federated: Vec<FederatedIdentity>,
    /// "Allow public client flows": device sign-in.
    pub public_client: bool,
    /// Application permissions with admin consent: the `roles` of its Graph tokens.
    pub app_roles: Vec<String>,
    /// Delegated permissions with consent: the `scp` of its users' Graph tokens.
    pub delegated_scopes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EntraConfig {
    pub apps: Vec<EntraApp>,
    /// Polls answered `authorization_pending` before a device sign-in completes (the user
    /// "signs in" by then).
    pub pending_polls: u32,
}

/// One request as the stand-in saw it (tests assert on these; no secrets kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraRequest {
    /// `token` or `devicecode`.
    pub endpoint: &'static str,
    pub tenant: String,
    pub grant_type: String,
    pub client_id: String,
    /// The scope asked for.
    pub scope: String,
    pub granted: bool,
}

#[derive(Debug)]
struct DeviceSignIn {
    tenant: String,
    client_id: String,
    polls: u32,
}

#[derive(Debug, Default)]
struct State {
    device_codes: HashMap<String, DeviceSignIn>,
    refresh_tokens: HashMap<String, (String, String)>,
    requests: Vec<EntraRequest>,
    issued: u64,
}

#[derive(Clone)]
pub struct EntraStandIn {
    cfg: Arc<EntraConfig>,
    state: Arc<Mutex<State>>,
}

type Reply = warp::reply::Response;

/// Entra's error document.
fn error(status: u16, error: &str, code: u64, text: &str) -> Reply {
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 00000000-0000-0000-0000-000000000000"),
            "error_codes": [code],
        }),
    )
}

impl EntraStandIn {
    pub fn new(cfg: EntraConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            state: Arc::default(),
        }
    }

    /// `AZURE_AUTHORITY_HOST` for a served stand-in.
    pub fn authority(server: &ServerHandle) -> url::Url {
        server.base_url()
    }

    pub fn requests(&self) -> Vec<EntraRequest> {
        self.state.lock().expect("entra state").requests.clone()
    }

    pub async fn serve(&self, port: u16) -> std::io::Result<ServerHandle> {
        let me = self.clone();
        let route = warp::post()
            .and(warp::path!(String / "oauth2" / "v2.0" / String))
            .and(warp::body::content_length_limit(64 * 1024))
            .and(warp::body::bytes())
            .map(move |tenant: String, endpoint: String, body: Bytes| {
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                match endpoint.as_str() {
                    "token" => me.token(&tenant, &form),
                    "devicecode" => me.device_code(&tenant, &form),
                    _ => json_response(404, &json!({"error": "not_found"})),
                }
            })
            .or(warp::any().map(|| json_response(404, &json!({"error": "not_found"}))))
            .unify();
        spawn(route, port).await
    }

    fn app(&self, tenant: &str, client_id: &str) -> Option<&EntraApp> {
        self.cfg.apps.iter().find(|a| {
            a.client_id.eq_ignore_ascii_case(client_id) && a.tenant_id.eq_ignore_ascii_case(tenant)
        })
    }

    fn record(
        &self,
        endpoint: &'static str,
        tenant: &str,
        form: &HashMap<String, String>,
        granted: bool,
    ) {
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        self.state
            .lock()
            .expect("entra state")
            .requests
            .push(EntraRequest {
                endpoint,
                tenant: tenant.to_string(),
                grant_type: get("grant_type"),
                client_id: get("client_id"),
                scope: get("scope"),
                granted,
            });
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut st = self.state.lock().expect("entra state");
        st.issued += 1;
        format!("{prefix}-{}-{}", st.issued, uuid::Uuid::new_v4().simple())
    }

    fn token(&self, tenant: &str, form: &HashMap<String, String>) -> Reply {
        let reply = self.token_answer(tenant, form);
        self.record("token", tenant, form, reply.status().is_success());
        reply
    }

    fn token_answer(&self, tenant: &str, form: &HashMap<String, String>) -> Reply {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let client_id = get("client_id");
        let Some(app) = self.app(tenant, client_id) else {
            return error(
                400,
                "unauthorized_client",
                700016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
            );
        };
        match get("grant_type") {
            "client_credentials" => self.client_credentials(app, form),
            DEVICE_CODE_GRANT => self.device_code_grant(app, get("device_code")),
            "refresh_token" => self.refresh(app, get("refresh_token"), get("scope")),
            other => error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            ),
        }
    }

    fn client_credentials(&self, app: &EntraApp, form: &HashMap<String, String>) -> Reply {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let Some(resource) = get("scope").strip_suffix("/.default") else {
            return error(400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.");
        };
        let authenticated = if let Some(secret) = form.get("client_secret") {
            if app.client_secret.as_deref() != Some(secret.as_str()) {
                return error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                );
            }
            true
        } else if get("client_assertion_type") == JWT_BEARER {
            let claims: Option<serde_json::Value> = decode_payload(get("client_assertion"));
            let field = |k: &str| {
                claims
                    .as_ref()
                    .and_then(|c| c.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let aud = field("aud");
            if aud != TOKEN_EXCHANGE_AUDIENCE && aud != TOKEN_EXCHANGE_APP_ID {
                return error(
                    400,
                    "invalid_client",
                    700212,
                    "No matching federated identity record found for presented assertion audience.",
                );
            }
            let (iss, sub) = (field("iss"), field("sub"));
            if !app
                .federated
                .iter()
                .any(|f| f.issuer == iss && f.subject.eq_ignore_ascii_case(&sub))
            {
                return error(400, "invalid_client", 70021, &format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'."));
            }
            true
        } else {
            false
        };
        if !authenticated {
            return error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
        }
        let roles: Vec<&str> = if resource == audience_claim(Audience::Graph) {
            app.app_roles.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        let token = entra_token(resource, &app.tenant_id, &app.client_id, Grant::App(&roles));
        json_response(
            200,
            &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
        )
    }

    fn device_code(&self, tenant: &str, form: &HashMap<String, String>) -> Reply {
        let client_id = form
            .get("client_id")
            .map(String::as_str)
            .unwrap_or_default();
        if self.app(tenant, client_id).is_none() {
            self.record("devicecode", tenant, form, false);
            return error(400, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."));
        }
        let device_code = self.next_id("dc");
        let user_code = format!(
            "LOCAL{:04}",
            self.state.lock().expect("entra state").issued % 10_000
        );
        self.state.lock().expect("entra state").device_codes.insert(
            device_code.clone(),
            DeviceSignIn {
                tenant: tenant.to_string(),
                client_id: client_id.to_string(),
                polls: 0,
            },
        );
        self.record("devicecode", tenant, form, true);
        let uri = "https://microsoft.com/devicelogin";
        json_response(
            200,
            &json!({
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": 1,
                "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
            }),
        )
    }

    fn device_code_grant(&self, app: &EntraApp, device_code: &str) -> Reply {
        if !app.public_client {
            return error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
        }
        {
            let mut st = self.state.lock().expect("entra state");
            let Some(sign_in) = st.device_codes.get_mut(device_code) else {
                return error(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'device_code' is not valid.",
                );
            };
            if sign_in.client_id != app.client_id
                || !sign_in.tenant.eq_ignore_ascii_case(&app.tenant_id)
            {
                return error(
                    400,
                    "invalid_grant",
                    70000,
                    "The device code was issued to another client.",
                );
            }
            if sign_in.polls < self.cfg.pending_polls {
                sign_in.polls += 1;
                return error(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                );
            }
            st.device_codes.remove(device_code);
        }
        self.user_token(app, audience_claim(Audience::Graph))
    }

    fn refresh(&self, app: &EntraApp, refresh_token: &str, scope: &str) -> Reply {
        let known = self
            .state
            .lock()
            .expect("entra state")
            .refresh_tokens
            .get(refresh_token)
            .is_some_and(|(t, c)| t.eq_ignore_ascii_case(&app.tenant_id) && c == &app.client_id);
        if !known {
            return error(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. The refresh token is malformed or not valid.",
            );
        }
        // The resource of the first scope asked for (`https://host/scope` or `.../.default`).
        let first = scope
            .split_whitespace()
            .find(|s| *s != "offline_access" && *s != "openid" && *s != "profile")
            .unwrap_or_default();
        let resource = first.rsplit_once('/').map(|(r, _)| r).unwrap_or(first);
        self.user_token(app, resource)
    }

    /// A signed-in user's token for `resource`, with a fresh refresh token.
    fn user_token(&self, app: &EntraApp, resource: &str) -> Reply {
        let scp = if resource == audience_claim(Audience::Graph) {
            app.delegated_scopes.join(" ")
        } else {
            "user_impersonation".to_string()
        };
        let token = entra_token(resource, &app.tenant_id, &app.client_id, Grant::User(&scp));
        let refresh = self.next_id("rt");
        self.state
            .lock()
            .expect("entra state")
            .refresh_tokens
            .insert(
                refresh.clone(),
                (app.tenant_id.clone(), app.client_id.clone()),
            );
        json_response(
            200,
            &json!({
                "token_type": "Bearer",
                "scope": scp,
                "expires_in": 3599,
                "access_token": token,
                "refresh_token": refresh,
            }),
        )
    }
}

/// The payload of a JWT as JSON, whatever its claims.
fn decode_payload(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A managed identity's token for `api://AzureADTokenExchange`, as the identity endpoint
/// issues it: what an app's federated credential (issuer, subject) is matched against.
pub fn token_exchange_assertion(tenant: &str, principal_id: &str) -> String {
    unsigned_jwt(&json!({
        "aud": TOKEN_EXCHANGE_APP_ID,
        "iss": issuer(tenant),
        "sub": principal_id,
        "oid": principal_id,
        "tid": tenant,
        "ver": "2.0",
    }))
}

/// The issuer of a tenant's v2.0 tokens: the issuer of a managed identity's federated
/// credential.
pub fn issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

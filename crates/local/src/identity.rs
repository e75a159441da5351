//! Managed-identity endpoint stand-in (the App Service / Functions protocol): the handler in
//! local mode authenticates exactly as in Azure, with `AZURE_CREDENTIAL_KIND` and `GRAPH_CREDENTIAL_KIND` set to `managed-identity`,
//! `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, and receives the stand-ins' local tokens.
//!
//! Protocol (learn.microsoft.com/azure/app-service/overview-managed-identity, "REST endpoint
//! reference"): `GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01[&client_id=...]`
//! with the header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`; the answer is
//! `{access_token, expires_on (epoch seconds), resource, token_type}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use partner_billing_export::auth::Audience;
use serde_json::json;
use warp::Filter;

use crate::server::{json_response, spawn, ServerHandle};
use crate::tokens::{app_token, local_token, LOCAL_APP_ID};
use partner_billing_export::auth::claims::PARTNER_BILLING_READ_ALL;

pub const API_VERSION: &str = "2019-08-01";

/// Which identity the endpoint serves: system-assigned (no `client_id` allowed) or one
/// user-assigned identity (its client id required).
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub header_secret: String,
    pub user_assigned_client_id: Option<String>,
    /// Audiences this identity has roles for; a token for any other is refused (400), as Entra
    /// would refuse an identity with no access. Empty: all.
    pub audiences: Vec<Audience>,
    /// Further user-assigned identities, one per sandbox partner tenant: (client id, partner
    /// id). Their Graph and Partner Center tokens are that partner's
    /// ([`crate::tokens::partner_graph_token`]), so the sandbox can tell the partners apart.
    pub partner_clients: Vec<PartnerClient>,
    /// The tenant the identity lives in (`tid` of its token-exchange tokens).
    pub tenant_id: String,
}

/// A user-assigned identity that signs in as a sandbox partner tenant.
#[derive(Debug, Clone)]
pub struct PartnerClient {
    pub client_id: String,
    pub partner: String,
    /// The partner's tenant: the `tid` of the Graph and Partner Center tokens it gets.
    pub tenant_id: String,
}

/// The principal (object) id of an identity of this endpoint: the `sub` of its
/// `api://AzureADTokenExchange` tokens, which an app's federated credential names. Derived from
/// the client id (`None`: the system-assigned identity), so tests can compute it.
pub fn principal_id(client_id: Option<&str>) -> String {
    crate::graph_sandbox::data::Rng::derived(
        0,
        &format!("principal#{}", client_id.unwrap_or("system")),
    )
    .uuid()
    .to_string()
}

/// One token request as the endpoint saw it (tests assert on these).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub resource: String,
    pub client_id: Option<String>,
    pub granted: bool,
}

#[derive(Clone)]
pub struct IdentityEndpoint {
    cfg: Arc<IdentityConfig>,
    seen: Arc<Mutex<Vec<TokenRequest>>>,
}

impl IdentityEndpoint {
    pub fn new(cfg: IdentityConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            seen: Arc::default(),
        }
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.seen.lock().expect("identity log").clone()
    }

    /// The `IDENTITY_ENDPOINT` value for a served endpoint.
    pub fn endpoint_url(server: &ServerHandle) -> url::Url {
        server.base_url().join("msi/token").expect("identity URL")
    }

    /// App settings a handler needs to use this endpoint as its managed identity.
    pub fn settings(&self, server: &ServerHandle) -> Vec<(String, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT".into(),
                Self::endpoint_url(server).to_string(),
            ),
            ("IDENTITY_HEADER".into(), self.cfg.header_secret.clone()),
        ]
    }

    pub async fn serve(&self, port: u16) -> std::io::Result<ServerHandle> {
        let me = self.clone();
        let route = warp::path!("msi" / "token")
            .and(warp::get())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(move |q: HashMap<String, String>, header: Option<String>| me.answer(&q, header))
            .or(warp::any().map(|| json_response(404, &json!({"error": "not found"}))))
            .unify();
        spawn(route, port).await
    }

    fn answer(&self, q: &HashMap<String, String>, header: Option<String>) -> warp::reply::Response {
        if header.as_deref() != Some(self.cfg.header_secret.as_str()) {
            return json_response(401, &json!({"error": "missing or wrong X-IDENTITY-HEADER"}));
        }
        if q.get("api-version").map(String::as_str) != Some(API_VERSION) {
            return json_response(400, &json!({"error": "unsupported api-version"}));
        }
        let resource = q.get("resource").cloned().unwrap_or_default();
        let client_id = q.get("client_id").cloned();
        let audience = Audience::ALL
            .into_iter()
            .find(|a| a.scope().trim_end_matches("/.default") == resource.trim_end_matches('/'));
        let partner = client_id.as_ref().and_then(|c| {
            self.cfg
                .partner_clients
                .iter()
                .find(|p| p.client_id.eq_ignore_ascii_case(c))
                .cloned()
        });
        let identity_ok = client_id == self.cfg.user_assigned_client_id || partner.is_some();
        // api://AzureADTokenExchange: the client assertion of an app that trusts this identity
        // as a federated identity credential; every identity may ask for it.
        let exchange = resource.trim_end_matches('/') == crate::entra::TOKEN_EXCHANGE_AUDIENCE;
        let granted = identity_ok
            && (exchange
                || audience.is_some_and(|a| {
                    self.cfg.audiences.is_empty() || self.cfg.audiences.contains(&a)
                }));
        let token = match (&partner, audience) {
            _ if !granted => None,
            _ if exchange => Some(crate::entra::token_exchange_assertion(
                &self.cfg.tenant_id,
                &principal_id(client_id.as_deref()),
            )),
            (Some(p), Some(a @ Audience::Graph)) => Some(app_token(
                a,
                &p.tenant_id,
                LOCAL_APP_ID,
                &[PARTNER_BILLING_READ_ALL],
            )),
            (Some(p), Some(a @ Audience::PartnerCenter)) => {
                Some(app_token(a, &p.tenant_id, LOCAL_APP_ID, &[]))
            }
            (_, a) => a.map(|a| local_token(a).to_string()),
        };
        self.seen.lock().expect("identity log").push(TokenRequest {
            resource: resource.clone(),
            client_id,
            granted,
        });
        match token {
            Some(access_token) => json_response(
                200,
                &json!({
                    "access_token": access_token,
                    "expires_on": (time::OffsetDateTime::now_utc().unix_timestamp() + 3600).to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            ),
            _ if !identity_ok => json_response(
                400,
                &json!({"error": "invalid_request", "error_description": "no such identity on this app"}),
            ),
            _ => json_response(
                400,
                &json!({"error": "invalid_resource", "error_description": "this identity has no access to the resource"}),
            ),
        }
    }
}

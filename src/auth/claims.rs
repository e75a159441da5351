//! What an access token says about itself, checked before a partner's data is touched.
//!
//! Entra ID access tokens for Microsoft Graph and Partner Center are JWTs whose payload names
//! the tenant that issued them (`tid`), the resource they are for (`aud`), and what the caller
//! may do: application permissions in `roles`, delegated scopes in `scp` (space-separated)
//! (Microsoft identity platform, "Access token claims reference"). We only *read* the payload:
//! the signature is the resource's business, and a token that lies about itself is refused by
//! Graph anyway. What the claims buy us is a clear error before the first export instead of a
//! 403 per call, or worse, another tenant's data filed under this partner: a managed identity,
//! a workload identity and the Azure CLI all sign in to their *own* tenant, whatever tenant id
//! the configuration names.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::{AccessToken, Audience, AuthError, Secret, TokenSource};

/// The Graph permission every partner billing export needs (application or delegated).
pub const PARTNER_BILLING_READ_ALL: &str = "PartnerBilling.Read.All";

/// Well-known application ids that Entra also uses as `aud` in v1 tokens.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const PARTNER_CENTER_APP_ID: &str = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd";

/// A JWT payload is a few KiB; anything far larger is not a token we should parse.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The claims we read from an access token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenClaims {
    #[serde(default)]
    pub aud: Option<String>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Delegated scopes, split from the space-separated `scp` claim.
    #[serde(default, deserialize_with = "space_separated")]
    pub scp: Vec<String>,
    /// The client application (`appid` in v1 tokens, `azp` in v2).
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
}

fn space_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

impl TokenClaims {
    /// The payload of a JWT (`header.payload.signature`), or `None` when the token is not one
    /// we can read (opaque or encrypted tokens exist; they are not refused, only not checked).
    pub fn decode(token: &str) -> Option<Self> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut parts = token.split('.');
        let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The client application the token was issued to.
    pub fn client_app(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }
}

/// Why a token cannot be used for a partner, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessProblem {
    /// The credential signed in to another tenant than the partner's.
    WrongTenant { expected: String, actual: String },
    /// A Graph token without `PartnerBilling.Read.All` (in `roles` or `scp`).
    MissingPermission {
        app: Option<String>,
        delegated: bool,
        granted: Vec<String>,
    },
    /// A token for another resource than the one it is sent to.
    WrongAudience {
        audience: Audience,
        actual: Option<String>,
    },
}

impl fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessProblem::WrongTenant { expected, actual } => write!(
                f,
                "wrong tenant: the credential signed in to tenant {actual}, but this partner is \
                 tenant {expected}. A managed identity, workload identity or Azure CLI sign-in \
                 always uses its own tenant: use an app registration of the partner tenant \
                 (federated-managed-identity, client-secret or client-certificate with its \
                 tenant id), or correct the configured tenant id"
            ),
            AccessProblem::MissingPermission {
                app,
                delegated,
                granted,
            } => {
                let app = app.as_deref().unwrap_or("(unknown app)");
                let has = if granted.is_empty() {
                    "none".to_string()
                } else {
                    granted.join(", ")
                };
                if *delegated {
                    write!(
                        f,
                        "missing permission: the signed-in user's token for app {app} has no \
                         delegated {PARTNER_BILLING_READ_ALL} (scopes: {has}). Add the Microsoft \
                         Graph delegated permission {PARTNER_BILLING_READ_ALL} to the app and grant \
                         admin consent (`az ad app permission admin-consent --id {app}`); the user \
                         needs a Partner Center billing admin role"
                    )
                } else {
                    write!(
                        f,
                        "missing permission: the token of app {app} has no application permission \
                         {PARTNER_BILLING_READ_ALL} (roles: {has}). Add the Microsoft Graph \
                         application permission {PARTNER_BILLING_READ_ALL} and grant admin consent \
                         (`az ad app permission admin-consent --id {app}`, or an app role assignment \
                         for a managed identity); a new grant can take a few minutes to reach new tokens"
                    )
                }
            }
            AccessProblem::WrongAudience { audience, actual } => write!(
                f,
                "wrong audience: a token for {} was requested but it is for {}; request the \
                 scope {}",
                audience.name(),
                actual.as_deref().unwrap_or("no audience"),
                audience.scope()
            ),
        }
    }
}

fn audience_matches(audience: Audience, aud: &str) -> bool {
    let aud = aud.trim_end_matches('/');
    let resource = audience.scope().trim_end_matches("/.default");
    aud.eq_ignore_ascii_case(resource)
        || match audience {
            Audience::Graph => {
                aud.eq_ignore_ascii_case(GRAPH_APP_ID)
                    || aud.eq_ignore_ascii_case("https://graph.microsoft.com")
            }
            Audience::PartnerCenter => aud.eq_ignore_ascii_case(PARTNER_CENTER_APP_ID),
            _ => false,
        }
}

/// Checks a Graph or Partner Center token's claims for a partner whose tenant is
/// `expected_tenant` (when known). Other audiences are not checked.
pub fn check(
    audience: Audience,
    claims: &TokenClaims,
    expected_tenant: Option<&str>,
) -> Result<(), AccessProblem> {
    if !matches!(audience, Audience::Graph | Audience::PartnerCenter) {
        return Ok(());
    }
    if !claims
        .aud
        .as_deref()
        .is_some_and(|a| audience_matches(audience, a))
    {
        return Err(AccessProblem::WrongAudience {
            audience,
            actual: claims.aud.clone(),
        });
    }
    if let Some(expected) = expected_tenant {
        let actual = claims.tid.clone().unwrap_or_default();
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(AccessProblem::WrongTenant {
                expected: expected.trim().to_ascii_lowercase(),
                actual: if actual.is_empty() {
                    "(none)".into()
                } else {
                    actual
                },
            });
        }
    }
    if audience == Audience::Graph {
        let delegated = !claims.scp.is_empty();
        let granted = if delegated {
            &claims.scp
        } else {
            &claims.roles
        };
        if !granted
            .iter()
            .any(|p| p.eq_ignore_ascii_case(PARTNER_BILLING_READ_ALL))
        {
            return Err(AccessProblem::MissingPermission {
                app: claims.client_app().map(str::to_string),
                delegated,
                granted: granted.clone(),
            });
        }
    }
    Ok(())
}

/// A token source whose Graph and Partner Center tokens are checked against the partner they
/// serve before anyone may use them. A token that fails is never handed out: the caller gets
/// [`AuthError::Access`] naming the problem and the fix, and nothing reaches Graph with it.
pub struct VerifiedTokens {
    inner: Arc<dyn TokenSource>,
    partner: String,
    expected_tenant: Option<String>,
    warned_unreadable: AtomicBool,
    /// The last token of each audience that passed: a cached token is checked once, not on
    /// every request it authorizes.
    passed: Mutex<HashMap<Audience, Secret>>,
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("partner", &self.partner)
            .field("expected_tenant", &self.expected_tenant)
            .finish_non_exhaustive()
    }
}

impl VerifiedTokens {
    /// `partner` names the partner in errors; `expected_tenant` is its configured tenant id.
    pub fn new(
        inner: Arc<dyn TokenSource>,
        partner: impl Into<String>,
        expected_tenant: Option<String>,
    ) -> Self {
        Self {
            inner,
            partner: partner.into(),
            expected_tenant,
            warned_unreadable: AtomicBool::new(false),
            passed: Mutex::default(),
        }
    }
}

#[async_trait]
impl TokenSource for VerifiedTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        let token = self.inner.token(audience).await?;
        if !matches!(audience, Audience::Graph | Audience::PartnerCenter)
            || self.passed.lock().expect("verdicts").get(&audience) == Some(&token.secret)
        {
            return Ok(token);
        }
        match TokenClaims::decode(token.secret.expose()) {
            Some(claims) => {
                check(audience, &claims, self.expected_tenant.as_deref()).map_err(|problem| {
                    AuthError::Access {
                        partner: self.partner.clone(),
                        audience: audience.name(),
                        problem,
                    }
                })?;
            }
            None => {
                if !self.warned_unreadable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(partner = %self.partner, audience = audience.name(), "access token is not a readable JWT; its tenant and permissions cannot be checked before use");
                }
            }
        }
        self.passed
            .lock()
            .expect("verdicts")
            .insert(audience, token.secret.clone());
        Ok(token)
    }
}

/// An unsigned JWT carrying `claims` (header `alg: none`): what the local stand-ins issue, and
/// what tests use to describe a token. Never accepted by Microsoft's services.
pub fn unsigned_jwt(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    format!("{header}.{payload}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticTokenSource;
    use serde_json::json;

    const TENANT: &str = "11111111-1111-1111-1111-111111111111";

    fn claims(v: serde_json::Value) -> TokenClaims {
        TokenClaims::decode(&unsigned_jwt(&v)).expect("decodes")
    }

    #[test]
    fn decodes_roles_and_space_separated_scopes() {
        let c = claims(json!({"aud": "https://graph.microsoft.com", "tid": TENANT,
            "scp": "User.Read PartnerBilling.Read.All", "azp": "app"}));
        assert_eq!(c.scp, ["User.Read", "PartnerBilling.Read.All"]);
        assert_eq!(c.client_app(), Some("app"));
        assert!(TokenClaims::decode("opaque-token").is_none());
        assert!(TokenClaims::decode("a.!!!.c").is_none());
    }

    #[test]
    fn graph_tokens_need_the_tenant_and_the_permission() {
        let ok = claims(
            json!({"aud": GRAPH_APP_ID, "tid": TENANT, "roles": ["PartnerBilling.Read.All"]}),
        );
        assert_eq!(check(Audience::Graph, &ok, Some(TENANT)), Ok(()));
        assert_eq!(check(Audience::Graph, &ok, None), Ok(()));

        let other = "22222222-2222-2222-2222-222222222222";
        let e = check(Audience::Graph, &ok, Some(other)).unwrap_err();
        assert!(matches!(e, AccessProblem::WrongTenant { .. }));
        assert!(
            e.to_string()
                .contains(&format!("signed in to tenant {TENANT}")),
            "{e}"
        );

        let no_role = claims(json!({"aud": "https://graph.microsoft.com", "tid": TENANT,
            "roles": ["User.Read.All"], "appid": "app-1"}));
        let e = check(Audience::Graph, &no_role, Some(TENANT)).unwrap_err();
        assert!(
            e.to_string().contains(
                "no application permission PartnerBilling.Read.All (roles: User.Read.All)"
            ),
            "{e}"
        );
        assert!(e.to_string().contains("admin-consent --id app-1"), "{e}");

        let delegated = claims(
            json!({"aud": "https://graph.microsoft.com", "tid": TENANT, "scp": "User.Read"}),
        );
        let e = check(Audience::Graph, &delegated, Some(TENANT)).unwrap_err();
        assert!(
            e.to_string()
                .contains("no delegated PartnerBilling.Read.All"),
            "{e}"
        );
    }

    #[test]
    fn partner_center_tokens_need_their_audience() {
        let pc = claims(json!({"aud": "https://api.partnercenter.microsoft.com", "tid": TENANT}));
        assert_eq!(check(Audience::PartnerCenter, &pc, Some(TENANT)), Ok(()));
        let graph = claims(json!({"aud": "https://graph.microsoft.com", "tid": TENANT}));
        let e = check(Audience::PartnerCenter, &graph, Some(TENANT)).unwrap_err();
        assert!(matches!(e, AccessProblem::WrongAudience { .. }), "{e}");
    }

    #[tokio::test]
    async fn verified_tokens_refuse_and_never_show_the_token() {
        let bad = unsigned_jwt(
            &json!({"aud": "https://graph.microsoft.com", "tid": TENANT, "roles": []}),
        );
        let src = Arc::new(
            StaticTokenSource::new()
                .with(Audience::Graph, bad.clone())
                .with(Audience::Storage, "opaque"),
        );
        let v = VerifiedTokens::new(src, "contoso", Some(TENANT.into()));
        let e = v.token(Audience::Graph).await.unwrap_err().to_string();
        assert!(e.contains("partner contoso"), "{e}");
        assert!(e.contains("missing permission"), "{e}");
        assert!(!e.contains(&bad), "{e}");
        assert_eq!(
            v.token(Audience::Storage).await.unwrap().secret.expose(),
            "opaque"
        );
    }
}

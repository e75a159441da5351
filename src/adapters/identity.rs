//! Entra ID tokens for the production credentials (azure_identity 1.x), behind our own cache.
//!
//! Why a cache of our own when azure_identity caches too: the pipeline asks for a token on
//! every request; ours gives one place that decides when to refresh (5 minutes before expiry),
//! makes concurrent callers of one audience share a single refresh (a per-audience
//! `tokio::sync::Mutex`), and turns failures into [`AuthError::Credential`] with a hint a
//! partner can act on. Tokens never reach a log or an error: [`Secret`] hides them in `Debug`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

use super::certificate::CertificateAssertion;
use super::entra::{ClientAuth, EntraTokenClient, TOKEN_EXCHANGE_SCOPE};
use crate::auth::{AccessToken, Audience, AuthError, Secret, TokenSource};
use crate::settings;

/// An Entra ID credential (`AZURE_CREDENTIAL_KIND`, `GRAPH_CREDENTIAL_KIND`).
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialKind {
    ManagedIdentity {
        client_id: Option<String>,
    },
    ClientSecret {
        tenant_id: String,
        client_id: String,
    },
    /// An app registration signing in with a certificate (`GRAPH_CLIENT_CERTIFICATE` or
    /// `GRAPH_CLIENT_CERTIFICATE_PATH`): a signed client assertion, no OpenSSL.
    ClientCertificate {
        tenant_id: String,
        client_id: String,
    },
    /// The partner's app registration, signing in with the Function App's managed identity
    /// as its federated credential: a managed-identity token for `api://AzureADTokenExchange`
    /// is the app's client assertion. No secret to store or rotate, and the app can be
    /// registered in Partner Center (Entra: "Configure an application to trust a managed
    /// identity").
    FederatedManagedIdentity {
        tenant_id: String,
        /// The app registration's client id.
        client_id: String,
        /// A user-assigned identity's client id; `None`: the system-assigned identity.
        identity_client_id: Option<String>,
    },
    WorkloadIdentity,
    AzureCli,
}

impl CredentialKind {
    /// Whether this credential can list invoices in Partner Center: app-only Partner Center
    /// access needs an app registered there, which a managed identity cannot be.
    pub fn reaches_partner_center(&self) -> bool {
        !matches!(self, CredentialKind::ManagedIdentity { .. })
    }

    /// The tenant this credential signs in to, when it is fixed by its settings.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            CredentialKind::ClientSecret { tenant_id, .. }
            | CredentialKind::ClientCertificate { tenant_id, .. }
            | CredentialKind::FederatedManagedIdentity { tenant_id, .. } => Some(tenant_id),
            _ => None,
        }
    }
}

/// Tokens are refreshed this long before they expire, so a token never dies mid-request.
pub const REFRESH_MARGIN: Duration = Duration::minutes(5);

/// The production token source for a credential that needs no secret material (managed
/// identity, workload identity, Azure CLI; the SDK credentials read their own variables such
/// as `IDENTITY_ENDPOINT`). A client secret or certificate comes through [`token_source_with`].
pub fn token_source(kind: &CredentialKind) -> Result<Arc<dyn TokenSource>, AuthError> {
    token_source_with(kind, |_| None)
}

/// The token source for `kind`, with its secret material and sign-in host (`GRAPH_CLIENT_SECRET`,
/// `GRAPH_CLIENT_CERTIFICATE`, `GRAPH_CLIENT_CERTIFICATE_PATH`, `AZURE_AUTHORITY_HOST`) as values
/// looked up by name through `get`: `config` reads them, this adapter never reads the
/// environment.
pub fn token_source_with(
    kind: &CredentialKind,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenSource>, AuthError> {
    let (label, credential): (CredentialLabel, Arc<dyn TokenCredential>) = match kind {
        CredentialKind::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(),
            };
            let label = CredentialLabel::ManagedIdentity {
                user_assigned: client_id.is_some(),
            };
            let cred = ManagedIdentityCredential::new(Some(options))
                .map_err(|e| label.construction_error(&e))?;
            (label, cred)
        }
        CredentialKind::ClientSecret {
            tenant_id,
            client_id,
        } => {
            let label = CredentialLabel::ClientSecret;
            let secret = client_secret(&get)?;
            let cred = ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                azure_core::credentials::Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(),
                }),
            )
            .map_err(|e| label.construction_error(&e))?;
            (label, cred)
        }
        CredentialKind::ClientCertificate {
            tenant_id,
            client_id,
        } => {
            let label = CredentialLabel::ClientCertificate;
            let pem = client_certificate_pem(&get)?;
            let endpoint = format!(
                "{}/{tenant_id}/oauth2/v2.0/token",
                authority_host(&get).trim_end_matches('/')
            );
            let assertion = CertificateAssertion::from_pem(pem.expose(), client_id, &endpoint)
                .map_err(|reason| AuthError::Credential {
                    credential: label.to_string(),
                    audience: "any",
                    reason,
                })?;
            tracing::info!(thumbprint = %assertion.thumbprint_hex(), "client certificate loaded");
            let cred: Arc<dyn TokenCredential> = ClientAssertionCredential::new(
                tenant_id.clone(),
                client_id.clone(),
                assertion,
                Some(ClientAssertionCredentialOptions {
                    client_options: client_options(),
                }),
            )
            .map_err(|e| label.construction_error(&e))?;
            (label, cred)
        }
        CredentialKind::FederatedManagedIdentity {
            tenant_id,
            client_id,
            identity_client_id,
        } => {
            let label = CredentialLabel::FederatedManagedIdentity;
            let identity = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: identity_client_id.clone().map(UserAssignedId::ClientId),
                client_options: client_options(),
            }))
            .map_err(|e| label.construction_error(&e))?;
            let authority =
                url::Url::parse(&authority_host(&get)).map_err(|e| AuthError::Credential {
                    credential: label.to_string(),
                    audience: "any",
                    reason: format!("AZURE_AUTHORITY_HOST is not a URL: {e}"),
                })?;
            let entra = EntraTokenClient::new(crate::auth::http_client(), &authority, tenant_id)
                .map_err(|e| AuthError::Credential {
                    credential: label.to_string(),
                    audience: "any",
                    reason: e.to_string(),
                })?;
            let cred: Arc<dyn TokenCredential> = Arc::new(FederatedCredential {
                identity,
                entra,
                client_id: client_id.clone(),
            });
            (label, cred)
        }
        CredentialKind::WorkloadIdentity => {
            let label = CredentialLabel::WorkloadIdentity;
            let cred =
                WorkloadIdentityCredential::new(None).map_err(|e| label.construction_error(&e))?;
            (label, cred)
        }
        CredentialKind::AzureCli => {
            let label = CredentialLabel::AzureCli;
            let cred = AzureCliCredential::new(None).map_err(|e| label.construction_error(&e))?;
            (label, cred)
        }
    };
    Ok(Arc::new(CachingTokenSource::new(label, credential)))
}

/// The one scope of a token request: every audience of ours is a single `.default` scope.
fn single_scope<'a>(scopes: &[&'a str]) -> azure_core::Result<&'a str> {
    match scopes {
        [scope] => Ok(scope),
        _ => Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            "exactly one scope is supported",
        )),
    }
}

/// The app registration's tokens, with a managed identity's token as its client assertion.
#[derive(Debug)]
struct FederatedCredential {
    identity: Arc<ManagedIdentityCredential>,
    entra: EntraTokenClient,
    client_id: String,
}

#[async_trait]
impl TokenCredential for FederatedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        use azure_core::error::ErrorKind;
        let scope = single_scope(scopes)?;
        // The managed identity's own token is short-lived and cached by the SDK; it is never
        // sent anywhere but the tenant's token endpoint.
        let assertion = self
            .identity
            .get_token(&[TOKEN_EXCHANGE_SCOPE], None)
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    ErrorKind::Credential,
                    format!(
                        "the managed identity could not get its token for api://AzureADTokenExchange: {}",
                        short(&e)
                    ),
                )
            })?;
        let got = self
            .entra
            .client_credentials(
                &self.client_id,
                scope,
                &ClientAuth::Assertion(Secret::new(assertion.token.secret())),
            )
            .await
            .map_err(|e| azure_core::Error::with_message(ErrorKind::Credential, e.to_string()))?;
        Ok(azure_core::credentials::AccessToken::new(
            got.access_token.expose().to_string(),
            got.expires_at,
        ))
    }
}

/// The client secret from app settings. In Azure a Key Vault reference resolves to the value
/// before the process starts; if the raw reference text arrives, the app's identity could not
/// read the vault, and sending that text to Entra ID would only produce a confusing error.
fn client_secret(get: &impl Fn(&str) -> Option<String>) -> Result<Secret, AuthError> {
    let fail = |reason: &str| AuthError::Credential {
        credential: CredentialLabel::ClientSecret.to_string(),
        audience: "any",
        reason: reason.to_string(),
    };
    let raw = get(settings::GRAPH_CLIENT_SECRET)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail("app setting GRAPH_CLIENT_SECRET is not set"))?;
    if raw.starts_with("@Microsoft.KeyVault(") {
        return Err(fail(
            "GRAPH_CLIENT_SECRET is an unresolved Key Vault reference: grant the Function App's identity \
             'Key Vault Secrets User' on the vault and check the reference's status in the portal",
        ));
    }
    Ok(Secret::new(raw))
}

/// The certificate and key as one PEM document: the `GRAPH_CLIENT_CERTIFICATE` setting (best a
/// Key Vault reference to a PEM certificate) or the file `GRAPH_CLIENT_CERTIFICATE_PATH` names.
fn client_certificate_pem(get: &impl Fn(&str) -> Option<String>) -> Result<Secret, AuthError> {
    let fail = |reason: String| AuthError::Credential {
        credential: CredentialLabel::ClientCertificate.to_string(),
        audience: "any",
        reason,
    };
    let set = |name: &str| {
        get(name)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(pem) = set(settings::GRAPH_CLIENT_CERTIFICATE) {
        if pem.starts_with("@Microsoft.KeyVault(") {
            return Err(fail(
                "GRAPH_CLIENT_CERTIFICATE is an unresolved Key Vault reference: grant the Function App's identity 'Key Vault Secrets User' on the vault".into(),
            ));
        }
        return Ok(Secret::new(pem));
    }
    let path = set(settings::GRAPH_CLIENT_CERTIFICATE_PATH).ok_or_else(|| {
        fail("set GRAPH_CLIENT_CERTIFICATE (PEM, e.g. a Key Vault reference) or GRAPH_CLIENT_CERTIFICATE_PATH".into())
    })?;
    std::fs::read_to_string(&path)
        .map(Secret::new)
        .map_err(|e| {
            fail(format!(
                "reading GRAPH_CLIENT_CERTIFICATE_PATH {path:?}: {e}"
            ))
        })
}

/// The SDK's variable naming Entra ID's sign-in host (sovereign clouds, the local stand-in).
pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";

/// Entra ID's sign-in host (`AZURE_AUTHORITY_HOST` for sovereign clouds, as the SDK reads it).
fn authority_host(get: &impl Fn(&str) -> Option<String>) -> String {
    get(AUTHORITY_HOST)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "https://login.microsoftonline.com".into())
}

/// Bounded retries for the identity endpoints: the SDK default (8 retries, up to a minute)
/// would make a missing identity look like a hang. The queue redelivers the message anyway.
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(20),
            max_delay: azure_core::time::Duration::seconds(5),
        }),
        ..Default::default()
    }
}

/// Which credential, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CredentialLabel {
    ManagedIdentity { user_assigned: bool },
    ClientSecret,
    ClientCertificate,
    FederatedManagedIdentity,
    WorkloadIdentity,
    AzureCli,
    Custom,
}

impl fmt::Display for CredentialLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialLabel::ManagedIdentity {
                user_assigned: false,
            } => "managed identity (system-assigned)",
            CredentialLabel::ManagedIdentity {
                user_assigned: true,
            } => "managed identity (user-assigned, AZURE_CLIENT_ID)",
            CredentialLabel::ClientSecret => "client secret (GRAPH_TENANT_ID, GRAPH_CLIENT_ID)",
            CredentialLabel::ClientCertificate => {
                "client certificate (GRAPH_TENANT_ID, GRAPH_CLIENT_ID)"
            }
            CredentialLabel::FederatedManagedIdentity => {
                "app registration with the managed identity as federated credential (GRAPH_TENANT_ID, GRAPH_CLIENT_ID)"
            }
            CredentialLabel::WorkloadIdentity => "workload identity",
            CredentialLabel::AzureCli => "Azure CLI",
            CredentialLabel::Custom => "token credential",
        })
    }
}

impl CredentialLabel {
    fn construction_error(self, e: &azure_core::Error) -> AuthError {
        AuthError::Credential {
            credential: self.to_string(),
            audience: "any",
            reason: format!("cannot be set up: {}", short(e)),
        }
    }

    /// A reason a partner can act on, with the SDK's message for detail.
    fn reason(self, e: &azure_core::Error) -> String {
        let hint = match (self, answer_of(e)) {
            (CredentialLabel::ManagedIdentity { .. }, Answer::None) => {
                "managed identity endpoint not reachable: is an identity assigned to the Function App?"
            }
            (CredentialLabel::ManagedIdentity { user_assigned: true }, Answer::Refused) => {
                "the identity endpoint refused: is the user-assigned identity in AZURE_CLIENT_ID assigned to the Function App?"
            }
            (CredentialLabel::ManagedIdentity { .. }, Answer::Refused) => {
                "the identity endpoint refused: is a system-assigned identity enabled on the Function App?"
            }
            (CredentialLabel::ManagedIdentity { .. }, Answer::Failed) => {
                "the identity endpoint failed (a retry may succeed)"
            }
            (CredentialLabel::ClientSecret, _) => {
                "check GRAPH_TENANT_ID, GRAPH_CLIENT_ID and that GRAPH_CLIENT_SECRET is current"
            }
            (CredentialLabel::ClientCertificate, _) => {
                "check GRAPH_TENANT_ID, GRAPH_CLIENT_ID and that the certificate is registered on the app and current"
            }
            (CredentialLabel::FederatedManagedIdentity, _) => {
                "check GRAPH_TENANT_ID, GRAPH_CLIENT_ID (the app registration) and the app's federated credential for this identity"
            }
            (CredentialLabel::WorkloadIdentity, _) => {
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE and the federated credential"
            }
            (CredentialLabel::AzureCli, _) => "is `az login` done and is `az` on PATH?",
            _ => "the credential failed",
        };
        format!("{hint} ({})", short(e))
    }
}

/// How the identity endpoint answered, as far as the SDK's error tells.
enum Answer {
    /// Never answered (connection refused, DNS, timeout).
    None,
    /// 4xx: the request or the identity is wrong.
    Refused,
    /// 5xx or anything else.
    Failed,
}

/// azure_identity 1.0 wraps the endpoint's answer in a credential error without the HTTP
/// status, so the status is looked for along the source chain and, failing that, in the
/// message ("retry policy expired" is what an endpoint that never answered leaves behind).
fn answer_of(e: &azure_core::Error) -> Answer {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ae) = err.downcast_ref::<azure_core::Error>() {
            if let Some(s) = ae.http_status() {
                return if (400..500).contains(&u16::from(s)) {
                    Answer::Refused
                } else {
                    Answer::Failed
                };
            }
            if matches!(
                ae.kind(),
                azure_core::error::ErrorKind::Io | azure_core::error::ErrorKind::Connection
            ) {
                return Answer::None;
            }
        }
        cur = err.source();
    }
    let msg = e.to_string();
    if msg.contains("retry policy expired") || msg.contains("error sending request") {
        Answer::None
    } else if msg.contains("has not been assigned") || msg.contains("identity not found") {
        Answer::Refused
    } else {
        Answer::Failed
    }
}

/// The SDK's message, bounded. Identity errors carry status and service message, never a token.
fn short(e: &azure_core::Error) -> String {
    let s = e.to_string().replace(['\n', '\r'], " ");
    // Long enough for Entra's first line and our fix, bounded all the same.
    if s.chars().count() > 800 {
        format!("{}…", s.chars().take(800).collect::<String>())
    } else {
        s
    }
}

/// One cached token per audience over any `TokenCredential`.
pub struct CachingTokenSource {
    label: CredentialLabel,
    credential: Arc<dyn TokenCredential>,
    slots: HashMap<Audience, Mutex<Option<AccessToken>>>,
}

impl fmt::Debug for CachingTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingTokenSource")
            .field("credential", &self.label.to_string())
            .finish_non_exhaustive()
    }
}

impl CachingTokenSource {
    fn new(label: CredentialLabel, credential: Arc<dyn TokenCredential>) -> Self {
        Self {
            label,
            credential,
            slots: Audience::ALL
                .iter()
                .map(|a| (*a, Mutex::new(None)))
                .collect(),
        }
    }

    /// Caches tokens of any azure_core credential (e.g. one the caller built with options).
    pub fn from_credential(credential: Arc<dyn TokenCredential>) -> Self {
        Self::new(CredentialLabel::Custom, credential)
    }
}

fn fresh(t: &AccessToken, now: OffsetDateTime) -> bool {
    t.expires_at - REFRESH_MARGIN > now
}

#[async_trait]
impl TokenSource for CachingTokenSource {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        let slot = self
            .slots
            .get(&audience)
            .expect("a slot exists for every audience");
        // Holding the lock across the fetch is the point: callers that arrive during a refresh
        // wait for it and then find the new token, so one refresh serves them all.
        let mut cached = slot.lock().await;
        if let Some(t) = cached
            .as_ref()
            .filter(|t| fresh(t, OffsetDateTime::now_utc()))
        {
            return Ok(t.clone());
        }
        let got = self
            .credential
            .get_token(&[audience.scope()], None)
            .await
            .map_err(|e| AuthError::Credential {
                credential: self.label.to_string(),
                audience: audience.name(),
                reason: self.label.reason(&e),
            })?;
        let token = AccessToken {
            secret: Secret::new(got.token.secret()),
            expires_at: got.expires_on,
        };
        *cached = Some(token.clone());
        Ok(token)
    }
}

/// Our [`TokenSource`] seen as an azure_core [`TokenCredential`], so SDK clients that take a
/// credential share our cache instead of fetching tokens of their own.
#[derive(Debug, Clone)]
pub struct TokenSourceCredential {
    source: Arc<dyn TokenSource>,
}

impl TokenSourceCredential {
    pub fn new(source: Arc<dyn TokenSource>) -> Arc<Self> {
        Arc::new(Self { source })
    }
}

/// The audience whose scope is `scope` (with or without the `/.default` suffix).
pub fn audience_for_scope(scope: &str) -> Option<Audience> {
    let trimmed = scope.trim_end_matches("/.default").trim_end_matches('/');
    Audience::ALL.into_iter().find(|a| {
        let s = a.scope();
        s == scope || s.trim_end_matches("/.default") == trimmed
    })
}

#[async_trait]
impl TokenCredential for TokenSourceCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        use azure_core::error::ErrorKind;
        let scope = single_scope(scopes)?;
        let audience = audience_for_scope(scope).ok_or_else(|| {
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("no audience is configured for scope {scope}"),
            )
        })?;
        let t = self
            .source
            .token(audience)
            .await
            .map_err(|e| azure_core::Error::new(ErrorKind::Credential, e))?;
        Ok(azure_core::credentials::AccessToken::new(
            t.secret.expose().to_string(),
            t.expires_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts fetches; each token lives `ttl`.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        ttl: Duration,
    }

    #[async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent callers overlap.
            tokio::task::yield_now().await;
            Ok(azure_core::credentials::AccessToken::new(
                format!("tok-{n}-{}", scopes[0]),
                OffsetDateTime::now_utc() + self.ttl,
            ))
        }
    }

    #[tokio::test]
    async fn caches_per_audience_and_shares_one_refresh() {
        let cred = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            ttl: Duration::hours(1),
        });
        let src = Arc::new(CachingTokenSource::from_credential(cred.clone()));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let s = src.clone();
            tasks.push(tokio::spawn(
                async move { s.token(Audience::Storage).await },
            ));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            cred.calls.load(Ordering::SeqCst),
            1,
            "one fetch for 16 callers"
        );
        let g = src.token(Audience::Graph).await.unwrap();
        assert!(g.secret.expose().contains("graph.microsoft.com"));
        assert_eq!(
            cred.calls.load(Ordering::SeqCst),
            2,
            "audiences are separate"
        );
        assert!(!format!("{src:?} {g:?}").contains("tok-"), "never in Debug");
    }

    #[tokio::test]
    async fn refreshes_within_the_margin() {
        let cred = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            ttl: Duration::seconds(60),
        });
        let src = CachingTokenSource::from_credential(cred.clone());
        src.token(Audience::Storage).await.unwrap();
        src.token(Audience::Storage).await.unwrap();
        assert_eq!(cred.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bridge_maps_scopes_to_audiences() {
        let src: Arc<dyn TokenSource> = Arc::new(
            crate::auth::StaticTokenSource::new()
                .with(Audience::Graph, "g")
                .with(Audience::Storage, "s"),
        );
        let bridge = TokenSourceCredential::new(src);
        let t = bridge
            .get_token(&["https://storage.azure.com/.default"], None)
            .await
            .unwrap();
        assert_eq!(t.token.secret(), "s");
        assert!(bridge
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .is_err());
        assert_eq!(
            audience_for_scope("https://servicebus.azure.net"),
            Some(Audience::ServiceBus)
        );
    }

    #[test]
    fn client_secret_rules() {
        let kind = CredentialKind::ClientSecret {
            tenant_id: "00000000-0000-0000-0000-000000000001".into(),
            client_id: "00000000-0000-0000-0000-000000000002".into(),
        };
        let e = token_source_with(&kind, |_| None).unwrap_err().to_string();
        assert!(e.contains("GRAPH_CLIENT_SECRET is not set"), "{e}");
        let e = token_source_with(&kind, |_| {
            Some("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)".into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("unresolved Key Vault reference"), "{e}");
        assert!(token_source_with(&kind, |_| Some("s3cret".into())).is_ok());
    }
}

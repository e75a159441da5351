//! Device sign-in with the partner's own app registration, for `export` on a laptop.
//!
//! Why not the Azure CLI: its Graph token comes from Microsoft's own first-party client, whose
//! Graph permissions are fixed, so a tenant cannot grant it `PartnerBilling.Read.All`
//! (Azure/azure-cli issues 12986, 30149, 26471) and every export would answer 403. A public
//! client app of the partner tenant, with that delegated permission and admin consent, can be
//! signed in to from any terminal with the OAuth 2.0 device authorization grant (RFC 8628;
//! Microsoft identity platform, "OAuth 2.0 device authorization grant").
//!
//! One sign-in serves both services: the device code asks for Graph's
//! `PartnerBilling.Read.All` and `offline_access`; its refresh token is a multi-resource
//! refresh token, exchanged for a Partner Center token (`user_impersonation`) without asking
//! the user again ("Refresh tokens in the Microsoft identity platform"). Tokens are kept in a
//! file only the user can read ([`cache`]), so the next run signs in silently; an expired
//! access token is renewed with the refresh token, and the rotated refresh token is kept.

pub mod cache;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use self::cache::{AudienceKey, CacheKey, SignInTokens, TokenCache};
use super::entra::{DeviceCode, DevicePoll, EntraError, EntraTokenClient, TokenResponse};
use super::identity::REFRESH_MARGIN;
use crate::auth::{AccessToken, Audience, AuthError, Secret, TokenSource};

/// What the device code asks for: Graph's billing permission, and a refresh token.
pub const GRAPH_SCOPES: &str = "https://graph.microsoft.com/PartnerBilling.Read.All offline_access";
/// What the refresh token is exchanged for to list invoices in Partner Center.
pub const PARTNER_CENTER_SCOPES: &str =
    "https://api.partnercenter.microsoft.com/user_impersonation offline_access";
/// How [`DeviceCodeTokens`] names itself in errors (`cli::diagnose` recognises it).
pub const LABEL: &str = "device sign-in";

/// The token endpoints a device sign-in talks to: Entra (or its loopback stand-in) through
/// [`PublicClient`]; a script in unit tests.
#[async_trait]
pub trait DeviceAuthority: Send + Sync + fmt::Debug {
    async fn start(&self, scopes: &str) -> Result<DeviceCode, EntraError>;
    async fn poll(&self, device_code: &Secret) -> Result<DevicePoll, EntraError>;
    async fn refresh(
        &self,
        refresh_token: &Secret,
        scopes: &str,
    ) -> Result<TokenResponse, EntraError>;
}

/// A public client app (no secret) of one tenant.
#[derive(Debug, Clone)]
pub struct PublicClient {
    entra: EntraTokenClient,
    client_id: String,
}

impl PublicClient {
    pub fn new(entra: EntraTokenClient, client_id: impl Into<String>) -> Self {
        Self {
            entra,
            client_id: client_id.into(),
        }
    }
}

#[async_trait]
impl DeviceAuthority for PublicClient {
    async fn start(&self, scopes: &str) -> Result<DeviceCode, EntraError> {
        self.entra.start_device_code(&self.client_id, scopes).await
    }
    async fn poll(&self, device_code: &Secret) -> Result<DevicePoll, EntraError> {
        self.entra
            .poll_device_code(&self.client_id, device_code)
            .await
    }
    async fn refresh(
        &self,
        refresh_token: &Secret,
        scopes: &str,
    ) -> Result<TokenResponse, EntraError> {
        self.entra
            .refresh(&self.client_id, refresh_token, scopes)
            .await
    }
}

/// Shows Entra's sign-in message (URL and user code) to the user.
pub type Prompt = Arc<dyn Fn(&str) + Send + Sync>;

/// Graph and Partner Center tokens of a signed-in user of one public client app.
pub struct DeviceCodeTokens {
    authority: Arc<dyn DeviceAuthority>,
    /// `None`: no place to keep tokens (no home folder); every run signs in.
    cache: Option<TokenCache>,
    key: CacheKey,
    /// `device sign-in (app X, tenant T)`.
    label: String,
    prompt: Prompt,
    /// Loaded from the cache on first use; the lock makes concurrent callers share one
    /// sign-in or refresh.
    state: Mutex<Option<SignInTokens>>,
}

impl fmt::Debug for DeviceCodeTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeTokens")
            .field("credential", &self.label)
            .field(
                "cache",
                &self.cache.as_ref().map(|c| c.path().to_path_buf()),
            )
            .finish_non_exhaustive()
    }
}

/// Why a sign-in did not produce a token.
#[derive(Debug, thiserror::Error)]
enum SignInError {
    #[error(transparent)]
    Entra(#[from] EntraError),
    #[error("the sign-in code expired after {0} minutes before the sign-in was completed in the browser: run the command again and enter the new code")]
    Expired(u64),
    #[error("Entra ID issued no refresh token, so no Partner Center token can be had without signing in again; the device sign-in asks for offline_access, which the app must not block")]
    NoRefreshToken,
}

impl DeviceCodeTokens {
    /// `key` names the sign-in (authority, tenant, app) in the cache; `prompt` shows Entra's
    /// message when the user must sign in.
    pub fn new(
        authority: Arc<dyn DeviceAuthority>,
        cache: Option<TokenCache>,
        key: CacheKey,
        label_detail: &str,
        prompt: Prompt,
    ) -> Self {
        Self {
            authority,
            cache,
            key,
            label: format!("{LABEL} ({label_detail})"),
            prompt,
            state: Mutex::new(None),
        }
    }

    /// Drops the saved sign-in (in memory and in the cache): its tokens were refused (missing
    /// permission, wrong tenant), so the next run signs in afresh and gets what was granted
    /// since.
    pub async fn forget(&self) {
        *self.state.lock().await = Some(SignInTokens::default());
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.remove(&self.key) {
                tracing::warn!(error = %e, "token cache entry not removed");
            }
        }
    }

    /// Where the tokens are kept, if anywhere.
    pub fn cache_path(&self) -> Option<&std::path::Path> {
        self.cache.as_ref().map(TokenCache::path)
    }

    fn fail(&self, audience: Audience, reason: impl fmt::Display) -> AuthError {
        AuthError::Credential {
            credential: self.label.clone(),
            audience: audience.name(),
            reason: reason.to_string(),
        }
    }

    fn load(&self) -> SignInTokens {
        let Some(cache) = &self.cache else {
            return SignInTokens::default();
        };
        cache.load(&self.key).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "token cache not used; signing in");
            SignInTokens::default()
        })
    }

    fn save(&self, tokens: &SignInTokens) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.store(&self.key, tokens) {
                // This run has its tokens; only the next one will have to sign in again.
                tracing::warn!(error = %e, "token cache not written; the next run will ask to sign in again");
            }
        }
    }

    /// Keeps a new token (and the rotated refresh token, if Entra sent one) in memory and in
    /// the cache.
    fn keep(
        &self,
        tokens: &mut SignInTokens,
        which: AudienceKey,
        got: TokenResponse,
    ) -> AccessToken {
        let token = AccessToken {
            secret: got.access_token,
            expires_at: got.expires_at,
        };
        tokens.access.insert(which, token.clone());
        if got.refresh_token.is_some() {
            tokens.refresh_token = got.refresh_token;
        }
        self.save(tokens);
        token
    }

    /// The device authorization grant: shows the code, then polls at Entra's interval (5 s
    /// more after each `slow_down`) until the user signed in or the code expired.
    async fn sign_in(&self) -> Result<TokenResponse, SignInError> {
        let code = self.authority.start(GRAPH_SCOPES).await?;
        (self.prompt)(&code.message);
        let deadline = Instant::now() + Duration::from_secs(code.expires_in);
        let mut interval = Duration::from_secs(code.interval.max(1));
        loop {
            if Instant::now() + interval > deadline {
                return Err(SignInError::Expired(code.expires_in.div_ceil(60)));
            }
            tokio::time::sleep(interval).await;
            match self.authority.poll(&code.device_code).await {
                Ok(DevicePoll::Pending) => {}
                Ok(DevicePoll::SlowDown) => interval += Duration::from_secs(5),
                Ok(DevicePoll::Done(t)) => return Ok(t),
                Err(EntraError::Refused { error, .. }) if error == "expired_token" => {
                    return Err(SignInError::Expired(code.expires_in.div_ceil(60)))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn token_locked(
        &self,
        tokens: &mut SignInTokens,
        audience: Audience,
        which: AudienceKey,
    ) -> Result<AccessToken, SignInError> {
        let scopes = match which {
            AudienceKey::Graph => GRAPH_SCOPES,
            AudienceKey::PartnerCenter => PARTNER_CENTER_SCOPES,
        };
        if let Some(rt) = tokens.refresh_token.clone() {
            match self.authority.refresh(&rt, scopes).await {
                Ok(got) => return Ok(self.keep(tokens, which, got)),
                Err(e) if needs_new_sign_in(&e) => {
                    tracing::info!(
                        audience = audience.name(),
                        "the saved sign-in is no longer accepted; signing in again"
                    );
                    *tokens = SignInTokens::default();
                    if let Some(cache) = &self.cache {
                        let _ = cache.remove(&self.key);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let got = self.sign_in().await?;
        let graph = self.keep(tokens, AudienceKey::Graph, got);
        if which == AudienceKey::Graph {
            return Ok(graph);
        }
        let rt = tokens
            .refresh_token
            .clone()
            .ok_or(SignInError::NoRefreshToken)?;
        let got = self.authority.refresh(&rt, scopes).await?;
        Ok(self.keep(tokens, which, got))
    }
}

/// Refusals that mean the refresh token is dead (expired, revoked, password changed, consent
/// withdrawn): only a new sign-in helps.
fn needs_new_sign_in(e: &EntraError) -> bool {
    matches!(e, EntraError::Refused { error, .. } if error == "invalid_grant" || error == "interaction_required")
}

fn fresh(t: &AccessToken, now: OffsetDateTime) -> bool {
    t.expires_at - REFRESH_MARGIN > now
}

#[async_trait]
impl TokenSource for DeviceCodeTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        let Some(which) = AudienceKey::of(audience) else {
            return Err(self.fail(
                audience,
                "a device sign-in gives Microsoft Graph and Partner Center tokens only",
            ));
        };
        let mut state = self.state.lock().await;
        let tokens = match &mut *state {
            Some(t) => t,
            none => none.insert(self.load()),
        };
        if let Some(t) = tokens
            .access
            .get(&which)
            .filter(|t| fresh(t, OffsetDateTime::now_utc()))
        {
            return Ok(t.clone());
        }
        self.token_locked(tokens, audience, which)
            .await
            .map_err(|e| self.fail(audience, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    /// Entra as a script: what each call answers, and what was asked.
    #[derive(Debug, Default)]
    struct Script {
        polls: StdMutex<VecDeque<Result<DevicePoll, EntraError>>>,
        refreshes: StdMutex<VecDeque<Result<TokenResponse, EntraError>>>,
        calls: StdMutex<Vec<String>>,
        expires_in: u64,
    }

    fn answer(access: &str, refresh: Option<&str>, ttl: i64) -> TokenResponse {
        TokenResponse {
            access_token: Secret::new(access),
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(ttl),
            refresh_token: refresh.map(Secret::new),
        }
    }

    fn refused(error: &str) -> EntraError {
        EntraError::Refused {
            status: 400,
            error: error.into(),
            description: "AADSTS70000: no".into(),
            codes: Some(70000),
        }
    }

    impl Script {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl DeviceAuthority for Script {
        async fn start(&self, scopes: &str) -> Result<DeviceCode, EntraError> {
            self.calls.lock().unwrap().push(format!("start {scopes}"));
            Ok(DeviceCode {
                device_code: Secret::new("dc"),
                user_code: "ABCD".into(),
                verification_uri: "https://microsoft.com/devicelogin".into(),
                expires_in: self.expires_in.max(1),
                interval: 5,
                message: "open https://microsoft.com/devicelogin and enter ABCD".into(),
            })
        }
        async fn poll(&self, _: &Secret) -> Result<DevicePoll, EntraError> {
            let at = tokio::time::Instant::now();
            self.calls.lock().unwrap().push(format!("poll {at:?}"));
            self.polls
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(DevicePoll::Pending))
        }
        async fn refresh(&self, rt: &Secret, scopes: &str) -> Result<TokenResponse, EntraError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("refresh {} {scopes}", rt.expose()));
            self.refreshes
                .lock()
                .unwrap()
                .pop_front()
                .expect("a scripted refresh answer")
        }
    }

    fn key() -> CacheKey {
        CacheKey::new(&url::Url::parse("http://127.0.0.1:9").unwrap(), "t", "app")
    }

    fn source(
        script: Arc<Script>,
        cache: Option<TokenCache>,
    ) -> (DeviceCodeTokens, Arc<StdMutex<Vec<String>>>) {
        let shown = Arc::new(StdMutex::new(Vec::new()));
        let s = shown.clone();
        let src = DeviceCodeTokens::new(
            script,
            cache,
            key(),
            "app app, tenant t",
            Arc::new(move |m: &str| s.lock().unwrap().push(m.to_string())),
        );
        (src, shown)
    }

    #[tokio::test(start_paused = true)]
    async fn signs_in_once_then_exchanges_the_refresh_token_for_partner_center() {
        let script = Arc::new(Script {
            expires_in: 900,
            ..Default::default()
        });
        script.polls.lock().unwrap().extend([
            Ok(DevicePoll::Pending),
            Ok(DevicePoll::SlowDown),
            Ok(DevicePoll::Done(answer("graph-1", Some("rt-1"), 3600))),
        ]);
        script
            .refreshes
            .lock()
            .unwrap()
            .push_back(Ok(answer("pc-1", Some("rt-2"), 3600)));
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("tokens.json"));
        let (src, shown) = source(script.clone(), Some(cache.clone()));
        let started = tokio::time::Instant::now();
        let g = src.token(Audience::Graph).await.unwrap();
        assert_eq!(g.secret.expose(), "graph-1");
        // 5 s, 5 s, then 10 s after slow_down.
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(
            shown.lock().unwrap().as_slice(),
            ["open https://microsoft.com/devicelogin and enter ABCD"]
        );
        let pc = src.token(Audience::PartnerCenter).await.unwrap();
        assert_eq!(pc.secret.expose(), "pc-1");
        let calls = script.calls();
        assert_eq!(calls[0], format!("start {GRAPH_SCOPES}"));
        assert_eq!(
            calls.last().unwrap(),
            &format!("refresh rt-1 {PARTNER_CENTER_SCOPES}")
        );
        // Both tokens are served from memory now, and the rotated refresh token was kept.
        src.token(Audience::Graph).await.unwrap();
        assert_eq!(script.calls().len(), calls.len());
        let saved = cache.load(&key()).unwrap();
        assert_eq!(saved.refresh_token.unwrap().expose(), "rt-2");
        assert_eq!(saved.access.len(), 2);
        assert!(src.token(Audience::Storage).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_run_uses_the_cache_and_refreshes_expired_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("tokens.json"));
        let mut saved = SignInTokens {
            refresh_token: Some(Secret::new("rt-old")),
            ..Default::default()
        };
        saved.access.insert(
            AudienceKey::Graph,
            AccessToken {
                secret: Secret::new("graph-cached"),
                expires_at: OffsetDateTime::now_utc() + time::Duration::hours(1),
            },
        );
        saved.access.insert(
            AudienceKey::PartnerCenter,
            AccessToken {
                secret: Secret::new("pc-expired"),
                // Inside the refresh margin: renewed before use.
                expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(2),
            },
        );
        cache.store(&key(), &saved).unwrap();
        let script = Arc::new(Script::default());
        script
            .refreshes
            .lock()
            .unwrap()
            .push_back(Ok(answer("pc-new", Some("rt-rotated"), 3600)));
        let (src, shown) = source(script.clone(), Some(cache.clone()));
        assert_eq!(
            src.token(Audience::Graph).await.unwrap().secret.expose(),
            "graph-cached"
        );
        assert_eq!(
            src.token(Audience::PartnerCenter)
                .await
                .unwrap()
                .secret
                .expose(),
            "pc-new"
        );
        assert_eq!(
            script.calls(),
            [format!("refresh rt-old {PARTNER_CENTER_SCOPES}")],
            "no device code: the cache and the refresh token were enough"
        );
        assert!(shown.lock().unwrap().is_empty());
        let after = cache.load(&key()).unwrap();
        assert_eq!(after.refresh_token.unwrap().expose(), "rt-rotated");
        assert_eq!(
            after.access[&AudienceKey::Graph].secret.expose(),
            "graph-cached"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_refresh_token_leads_to_a_new_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::at(dir.path().join("tokens.json"));
        cache
            .store(
                &key(),
                &SignInTokens {
                    refresh_token: Some(Secret::new("rt-revoked")),
                    ..Default::default()
                },
            )
            .unwrap();
        let script = Arc::new(Script {
            expires_in: 900,
            ..Default::default()
        });
        script
            .refreshes
            .lock()
            .unwrap()
            .push_back(Err(refused("invalid_grant")));
        script
            .polls
            .lock()
            .unwrap()
            .push_back(Ok(DevicePoll::Done(answer("graph-2", Some("rt-3"), 3600))));
        let (src, shown) = source(script.clone(), Some(cache.clone()));
        assert_eq!(
            src.token(Audience::Graph).await.unwrap().secret.expose(),
            "graph-2"
        );
        assert_eq!(shown.lock().unwrap().len(), 1);
        assert_eq!(
            cache.load(&key()).unwrap().refresh_token.unwrap().expose(),
            "rt-3"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_sign_in_stops_at_the_code_expiry() {
        let script = Arc::new(Script {
            expires_in: 60,
            ..Default::default()
        });
        let (src, _) = source(script.clone(), None);
        let started = tokio::time::Instant::now();
        let e = src.token(Audience::Graph).await.unwrap_err().to_string();
        assert!(
            e.contains("the sign-in code expired after 1 minutes"),
            "{e}"
        );
        assert!(e.starts_with("device sign-in (app app, tenant t)"), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(60));
        let polls = script
            .calls()
            .iter()
            .filter(|c| c.starts_with("poll"))
            .count();
        assert_eq!(polls, 12, "every 5 s for a minute");

        // A declined sign-in ends at once with Entra's reason.
        let script = Arc::new(Script {
            expires_in: 900,
            ..Default::default()
        });
        script
            .polls
            .lock()
            .unwrap()
            .push_back(Err(refused("authorization_declined")));
        let (src, _) = source(script, None);
        let e = src.token(Audience::Graph).await.unwrap_err().to_string();
        assert!(e.contains("authorization_declined"), "{e}");
    }
}

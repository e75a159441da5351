//! Credentials and where tokens may go. A token is fetched per audience and attached only to
//! requests whose host is on that audience's allow-list; plain `http` is allowed only to
//! loopback hosts (local mode), so a token never crosses a network in clear text.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use url::Url;

pub mod claims;

/// The services we call, each with its own token audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Graph,
    PartnerCenter,
    Storage,
    ServiceBus,
    EventGrid,
}

impl Audience {
    pub const ALL: [Audience; 5] = [
        Audience::Graph,
        Audience::PartnerCenter,
        Audience::Storage,
        Audience::ServiceBus,
        Audience::EventGrid,
    ];

    /// The `.default` scope to request from Entra ID.
    pub fn scope(self) -> &'static str {
        match self {
            Audience::Graph => "https://graph.microsoft.com/.default",
            Audience::PartnerCenter => "https://api.partnercenter.microsoft.com/.default",
            Audience::Storage => "https://storage.azure.com/.default",
            Audience::ServiceBus => "https://servicebus.azure.net/.default",
            Audience::EventGrid => "https://eventgrid.azure.net/.default",
        }
    }

    /// Hosts a token of this audience may be sent to in Azure.
    pub fn default_allowed_hosts(self) -> &'static [&'static str] {
        match self {
            Audience::Graph => &["graph.microsoft.com"],
            Audience::PartnerCenter => &["api.partnercenter.microsoft.com"],
            Audience::Storage => &["*.blob.core.windows.net"],
            Audience::ServiceBus => &["*.servicebus.windows.net"],
            Audience::EventGrid => &["*.eventgrid.azure.net"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Audience::Graph => "Microsoft Graph",
            Audience::PartnerCenter => "Partner Center",
            Audience::Storage => "Azure Storage",
            Audience::ServiceBus => "Service Bus",
            Audience::EventGrid => "Event Grid",
        }
    }
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: Secret,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "refusing to send a {audience} token to {host}: host is not on the allow-list ({allowed})"
    )]
    HostNotAllowed {
        audience: &'static str,
        host: String,
        allowed: String,
    },
    #[error("refusing to send a {audience} token over plain http to non-loopback host {host}")]
    InsecureScheme {
        audience: &'static str,
        host: String,
    },
    #[error("URL has no host: {0}")]
    NoHost(String),
    #[error("{credential} could not get a {audience} token: {reason}")]
    Credential {
        credential: String,
        audience: &'static str,
        reason: String,
    },
    /// A token was issued, but not one this partner may use (wrong tenant, missing permission,
    /// wrong audience): retrying does not help, the configuration or the grants must change.
    #[error("partner {partner}: the {audience} token cannot be used: {problem}")]
    Access {
        partner: String,
        audience: &'static str,
        problem: claims::AccessProblem,
    },
}

/// Where tokens come from (managed identity, client secret, local sandbox, ...).
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError>;
}

/// One credential for Microsoft Graph and Partner Center, another for Azure resources
/// (Storage, Service Bus, Event Grid): each request asks the one its audience belongs to.
#[derive(Debug, Clone)]
pub struct PerServiceTokens {
    pub graph: Arc<dyn TokenSource>,
    pub azure: Arc<dyn TokenSource>,
}

#[async_trait]
impl TokenSource for PerServiceTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        match audience {
            Audience::Graph | Audience::PartnerCenter => self.graph.token(audience).await,
            Audience::Storage | Audience::ServiceBus | Audience::EventGrid => {
                self.azure.token(audience).await
            }
        }
    }
}

/// Fixed tokens per audience (tests, and tools handed a token). The stand-ins check them, so a
/// token sent to the wrong service is still caught.
#[derive(Debug, Clone, Default)]
pub struct StaticTokenSource {
    tokens: HashMap<Audience, Secret>,
}

impl StaticTokenSource {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, audience: Audience, token: impl Into<String>) -> Self {
        self.tokens.insert(audience, Secret::new(token));
        self
    }
}

#[async_trait]
impl TokenSource for StaticTokenSource {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        self.tokens
            .get(&audience)
            .map(|s| AccessToken {
                secret: s.clone(),
                expires_at: OffsetDateTime::now_utc() + time::Duration::hours(1),
            })
            .ok_or_else(|| AuthError::Credential {
                credential: "static token source".into(),
                audience: audience.name(),
                reason: "no token configured for this audience".into(),
            })
    }
}

/// A host pattern: `graph.microsoft.com`, `*.servicebus.windows.net`, or `127.0.0.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    pub fn new(p: &str) -> Self {
        Self(p.trim().to_ascii_lowercase())
    }
    /// A pattern from configuration: a host name (`a.blob.core.windows.net`), a wildcard over
    /// the labels left of a suffix with at least two labels (`*.blob.core.usgovcloudapi.net`),
    /// or an IP literal (`127.0.0.1`, `[::1]`). No scheme, port, path or bare `*`.
    pub fn parse(p: &str) -> Result<Self, String> {
        let p = p.trim().to_ascii_lowercase();
        let (wild, rest) = match p.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let ipv6 = !wild && rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']');
        let dns_like = !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !rest.split('.').any(str::is_empty);
        let ok = ipv6 || (dns_like && (!wild || rest.contains('.')));
        if !ok {
            return Err(format!(
                "{p:?} is not a host pattern (expected a host such as contoso.blob.core.windows.net, \
                 a wildcard such as *.blob.core.windows.net, or an IP address; no scheme, port or path)"
            ));
        }
        Ok(Self(p))
    }

    /// The pattern as written (lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.0,
        }
    }
}

/// Allowed hosts per audience.
#[derive(Debug, Clone)]
pub struct AllowList {
    by_audience: HashMap<Audience, Vec<HostPattern>>,
}

impl Default for AllowList {
    fn default() -> Self {
        let mut by_audience = HashMap::new();
        for a in [
            Audience::Graph,
            Audience::PartnerCenter,
            Audience::Storage,
            Audience::ServiceBus,
            Audience::EventGrid,
        ] {
            by_audience.insert(
                a,
                a.default_allowed_hosts()
                    .iter()
                    .map(|h| HostPattern::new(h))
                    .collect(),
            );
        }
        Self { by_audience }
    }
}

impl AllowList {
    /// Adds a host (e.g. the host of a configured endpoint override) for one audience.
    pub fn allow(&mut self, audience: Audience, host: &str) {
        let p = HostPattern::new(host);
        let list = self.by_audience.entry(audience).or_default();
        if !list.contains(&p) {
            list.push(p);
        }
    }

    /// Adds the host of `url` for `audience`.
    pub fn allow_url(&mut self, audience: Audience, url: &Url) {
        if let Some(h) = url.host_str() {
            self.allow(audience, h);
        }
    }

    /// Whether a token of `audience` may be attached to a request for `url`.
    pub fn check(&self, audience: Audience, url: &Url) -> Result<(), AuthError> {
        let host = url
            .host_str()
            .ok_or_else(|| AuthError::NoHost(redact_url(url)))?;
        let list = self
            .by_audience
            .get(&audience)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !list.iter().any(|p| p.matches(host)) {
            return Err(AuthError::HostNotAllowed {
                audience: audience.name(),
                host: host.to_string(),
                allowed: list
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        match url.scheme() {
            "https" => Ok(()),
            "http" if is_loopback(url) => Ok(()),
            _ => Err(AuthError::InsecureScheme {
                audience: audience.name(),
                host: host.to_string(),
            }),
        }
    }
}

/// Whether `url` points at this machine (plain http is tolerated only there).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A URL safe to log: no query string (SAS tokens live there) and no user info.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let had_query = u.query().is_some();
    u.set_query(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let mut s = u.to_string();
    if had_query {
        s.push_str("?<redacted>");
    }
    s
}

/// An HTTP client that attaches bearer tokens only where the allow-list says it may.
#[derive(Debug, Clone)]
pub struct AuthorizedHttp {
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    allow: Arc<AllowList>,
}

impl AuthorizedHttp {
    pub fn new(http: reqwest::Client, tokens: Arc<dyn TokenSource>, allow: AllowList) -> Self {
        Self {
            http,
            tokens,
            allow: Arc::new(allow),
        }
    }

    /// A request to `url` carrying a bearer token for `audience`, or an error if `url`'s host
    /// is not allowed for that audience. The check happens before any token is fetched.
    pub async fn request(
        &self,
        audience: Audience,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        self.allow.check(audience, &url)?;
        let token = self.tokens.token(audience).await?;
        Ok(self
            .http
            .request(method, url)
            .bearer_auth(token.secret.expose()))
    }

    /// A token for `audience`, fetched (and checked, with [`claims::VerifiedTokens`]) as a
    /// request would, without sending anything: a pre-flight before the first export.
    pub async fn preflight(&self, audience: Audience) -> Result<(), AuthError> {
        self.tokens.token(audience).await.map(|_| ())
    }

    /// The client without credentials, for SAS URLs that carry their own authorization.
    pub fn anonymous(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }
}

/// The client for moving partition bytes: no total timeout (a large partition may stream for
/// minutes), but a connection that stalls for a minute is dropped; no redirects either.
pub fn transfer_client() -> reqwest::Client {
    client_builder()
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client with static settings")
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!(
            "partner-billing-export/",
            env!("CARGO_PKG_VERSION")
        ))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
}

/// The shared reqwest client: bounded timeouts, no automatic redirects (a redirect could
/// carry a token to another host), identifying user agent.
pub fn http_client() -> reqwest::Client {
    client_builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("reqwest client with static settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_checks_host_and_scheme() {
        let mut a = AllowList::default();
        let graph = Url::parse("https://graph.microsoft.com/v1.0/x").unwrap();
        assert!(a.check(Audience::Graph, &graph).is_ok());
        let evil = Url::parse("https://graph.microsoft.com.evil.example/v1.0/x").unwrap();
        assert!(matches!(
            a.check(Audience::Graph, &evil),
            Err(AuthError::HostNotAllowed { .. })
        ));
        // A Graph token is not a Storage token.
        assert!(a.check(Audience::Storage, &graph).is_err());
        let sb = Url::parse("https://contoso.servicebus.windows.net/q/messages").unwrap();
        assert!(a.check(Audience::ServiceBus, &sb).is_ok());
        let bare = Url::parse("https://servicebus.windows.net/q").unwrap();
        assert!(a.check(Audience::ServiceBus, &bare).is_err());
        let local = Url::parse("http://127.0.0.1:1234/v1.0/x").unwrap();
        assert!(a.check(Audience::Graph, &local).is_err());
        a.allow_url(Audience::Graph, &local);
        assert!(a.check(Audience::Graph, &local).is_ok());
        a.allow(Audience::Graph, "example.com");
        let clear = Url::parse("http://example.com/x").unwrap();
        assert!(matches!(
            a.check(Audience::Graph, &clear),
            Err(AuthError::InsecureScheme { .. })
        ));
    }

    #[test]
    fn host_patterns_from_settings() {
        for ok in [
            "*.blob.core.windows.net",
            "*.blob.core.usgovcloudapi.net",
            " *.Blob.Core.ChinaCloudApi.cn ",
            "contoso.blob.core.windows.net",
            "127.0.0.1",
            "[::1]",
            "localhost",
        ] {
            let p = HostPattern::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(p.as_str(), ok.trim().to_ascii_lowercase());
        }
        for bad in [
            "",
            "*",
            "*.",
            "*.net",
            "https://a.blob.core.windows.net",
            "a.blob.core.windows.net:443",
            "a.blob.core.windows.net/c",
            "a..b",
            "a.*.b",
            "[]",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
        let p = HostPattern::parse("*.blob.core.usgovcloudapi.net").unwrap();
        assert!(p.matches("acct.blob.core.usgovcloudapi.net"));
        assert!(!p.matches("acct.blob.core.windows.net"));
        assert!(!p.matches("blob.core.usgovcloudapi.net"));
    }

    #[test]
    fn redacted_urls_hide_sas() {
        let u = Url::parse("https://a.blob.core.windows.net/c/d/e.json.gz?sv=1&sig=abc").unwrap();
        let r = redact_url(&u);
        assert!(!r.contains("sig"));
        assert!(r.ends_with("e.json.gz?<redacted>"));
        assert_eq!(format!("{:?}", Secret::new("tok")), "Secret(<redacted>)");
    }
}

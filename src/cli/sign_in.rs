//! Which credential `export` signs in to Microsoft Graph and Partner Center with, on a laptop.
//!
//! The rule, first match wins:
//! 1. `--client-id`, `--credential device-code` or `GRAPH_CREDENTIAL_KIND=device-code`: a device
//!    sign-in as a user of the partner tenant, through the partner's own public client app.
//!    The app is `--client-id`, else `GRAPH_CLIENT_ID`; the tenant `--tenant`, else the
//!    partner's `tenantId` in `PARTNERS`, else `GRAPH_TENANT_ID`.
//! 2. `--credential azure-cli` (or `GRAPH_CREDENTIAL_KIND=azure-cli`): the Azure CLI. Its tokens
//!    cannot carry `PartnerBilling.Read.All` (Microsoft's own app, fixed permissions), so this
//!    is for Graph stand-ins and diagnosis, not for Microsoft Graph's billing exports.
//! 3. A partner of `PARTNERS`: its own credential, as in the Function app.
//! 4. `GRAPH_CREDENTIAL_KIND` (client-secret, client-certificate, ...): as in the Function app.
//! 5. Nothing: `export` stops with exit code 2 and says how to register an app and sign in.
//!
//! Azure resources (a blob destination without SAS) keep `AZURE_CREDENTIAL_KIND`, the Azure CLI
//! by default: its Storage tokens are fine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;

use super::args::{ClientId, CredentialChoice, ExportArgs, Tenant};
use crate::adapters::device_code::cache::{CacheKey, TokenCache};
use crate::adapters::device_code::{DeviceCodeTokens, Prompt, PublicClient};
use crate::adapters::entra::{EntraTokenClient, DEFAULT_AUTHORITY};
use crate::adapters::identity::{token_source, CredentialKind};
use crate::app::{graph_token_source, partner_token_source};
use crate::auth::{http_client, AccessToken, Audience, AuthError, TokenSource};
use crate::config::{Config, PartnerConfig};
use crate::settings as s;

/// `GRAPH_CREDENTIAL_KIND` value of the device sign-in (the CLI's own; the Function app has no
/// user to sign in).
pub const DEVICE_CODE: &str = "device-code";
/// Entra's sign-in host, as the Azure SDKs read it; tests point it at a loopback stand-in.
pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Overrides the token cache file (as `--token-cache` does).
pub const TOKEN_CACHE: &str = "PARTNER_BILLING_TOKEN_CACHE";

/// The credential for Graph and Partner Center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphSignIn {
    DeviceCode {
        client_id: ClientId,
        tenant: Tenant,
    },
    AzureCli,
    /// The listed partner's own credential.
    Partner,
    /// `GRAPH_CREDENTIAL_KIND` and the settings it reads.
    Settings,
    /// No credential configured.
    Unset,
}

fn is_device_code(kind: &str) -> bool {
    kind.trim().eq_ignore_ascii_case(DEVICE_CODE)
}

/// Whether `GRAPH_CREDENTIAL_KIND` names the device sign-in (which `Config` does not know).
pub fn names_device_code(settings: &HashMap<String, String>) -> bool {
    settings
        .get(s::GRAPH_CREDENTIAL_KIND)
        .is_some_and(|k| is_device_code(k))
}

/// Applies the rule of this module's documentation.
pub fn choose(
    args: &ExportArgs,
    settings: &HashMap<String, String>,
    partner: &PartnerConfig,
) -> anyhow::Result<GraphSignIn> {
    let kind = settings
        .get(s::GRAPH_CREDENTIAL_KIND)
        .map(|k| k.trim().to_ascii_lowercase());
    let device = args.sign_in.client_id.is_some()
        || args.sign_in.credential == Some(CredentialChoice::DeviceCode)
        || (args.sign_in.credential.is_none() && kind.as_deref() == Some(DEVICE_CODE));
    if device {
        let client_id = match &args.sign_in.client_id {
            Some(id) => id.clone(),
            None => settings
                .get(s::GRAPH_CLIENT_ID)
                .ok_or_else(|| {
                    anyhow!(
                        "the device sign-in needs the app registration: pass --client-id <application id> \
                         (or set {})",
                        s::GRAPH_CLIENT_ID
                    )
                })?
                .parse()
                .map_err(|e| anyhow!("app setting {}: {e}", s::GRAPH_CLIENT_ID))?,
        };
        let tenant = match (&args.sign_in.tenant, partner.tenant_id) {
            (Some(t), _) => t.clone(),
            (None, Some(known)) => known.to_string().parse().expect("a tenant id is a tenant"),
            _ => settings
                .get(s::GRAPH_TENANT_ID)
                .ok_or_else(|| {
                    anyhow!(
                        "the device sign-in needs the partner tenant: pass --tenant <tenant id or \
                         domain> (the tenant the app is registered in), or set {}",
                        s::GRAPH_TENANT_ID
                    )
                })?
                .parse()
                .map_err(|e| anyhow!("app setting {}: {e}", s::GRAPH_TENANT_ID))?,
        };
        return Ok(GraphSignIn::DeviceCode { client_id, tenant });
    }
    Ok(
        if args.sign_in.credential == Some(CredentialChoice::AzureCli)
            || kind.as_deref() == Some("azure-cli")
        {
            GraphSignIn::AzureCli
        } else if !partner.id.is_default() {
            GraphSignIn::Partner
        } else if kind.is_some() {
            GraphSignIn::Settings
        } else {
            GraphSignIn::Unset
        },
    )
}

/// What `export` says when no credential is configured: how to get one.
pub fn not_configured() -> String {
    "not signed in: no credential for Microsoft Graph is configured.\n\
     \n\
     `export` signs in as you, with a device code, through your partner tenant's own app \
     registration. Once per tenant, an admin registers a public client app with the delegated \
     Microsoft Graph permission PartnerBilling.Read.All and grants admin consent (docs/export.md, \
     \"Signing in\", has the `az` commands). Then:\n\
     \n\
     \x20 partner-billing-export export --client-id <application id> --tenant <partner tenant id> ...\n\
     \n\
     (or set GRAPH_CREDENTIAL_KIND=device-code with GRAPH_CLIENT_ID and GRAPH_TENANT_ID). An app \
     with a client secret or certificate works too: GRAPH_CREDENTIAL_KIND=client-secret or \
     client-certificate with GRAPH_TENANT_ID, GRAPH_CLIENT_ID and the secret or certificate. \
     The Azure CLI (`az login`) cannot be used for the billing exports: its tokens never carry \
     PartnerBilling.Read.All."
        .to_string()
}

/// How the plan names the credential.
pub fn describe(sign_in: &GraphSignIn, config: &Config, partner: &PartnerConfig) -> String {
    match sign_in {
        GraphSignIn::DeviceCode { client_id, tenant } => {
            format!("device sign-in (app {client_id}, tenant {tenant})")
        }
        GraphSignIn::AzureCli => "Azure CLI".into(),
        GraphSignIn::Partner => format!("partner {}'s {:?}", partner.id, partner.credential.kind),
        GraphSignIn::Settings => format!("{:?}", config.credentials.graph),
        GraphSignIn::Unset => "no credential".into(),
    }
}

/// The Graph / Partner Center token source, and the device sign-in when it is one (so a
/// refused token can be forgotten).
pub struct GraphTokens {
    pub tokens: Arc<dyn TokenSource>,
    pub device: Option<Arc<DeviceCodeTokens>>,
}

/// Builds the credential `sign_in` names. `env` is the process environment (tests: a map).
pub fn graph_tokens(
    sign_in: &GraphSignIn,
    args: &ExportArgs,
    config: &Config,
    partner: &PartnerConfig,
    azure: &Arc<dyn TokenSource>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<GraphTokens> {
    let plain = |tokens: Arc<dyn TokenSource>| GraphTokens {
        tokens,
        device: None,
    };
    Ok(match sign_in {
        GraphSignIn::DeviceCode { client_id, tenant } => {
            let d = Arc::new(device_code_tokens(client_id, tenant, args, env)?);
            GraphTokens {
                tokens: d.clone(),
                device: Some(d),
            }
        }
        GraphSignIn::AzureCli if config.credentials.azure == CredentialKind::AzureCli => {
            plain(azure.clone())
        }
        GraphSignIn::AzureCli => {
            plain(token_source(&CredentialKind::AzureCli).context("the Azure CLI credential")?)
        }
        GraphSignIn::Partner => plain(
            partner_token_source(partner)
                .with_context(|| format!("partner {}'s credential in PARTNERS", partner.id))?,
        ),
        GraphSignIn::Settings if config.credentials.graph == config.credentials.azure => {
            plain(azure.clone())
        }
        GraphSignIn::Settings => plain(
            graph_token_source(&config.credentials)
                .context("credential for Microsoft Graph and Partner Center")?,
        ),
        GraphSignIn::Unset => plain(Arc::new(NotConfigured)),
    })
}

/// The token file: `--token-cache`, `PARTNER_BILLING_TOKEN_CACHE`, or the user's cache folder.
pub fn token_cache(args: &ExportArgs, env: &dyn Fn(&str) -> Option<String>) -> Option<TokenCache> {
    let set = env(TOKEN_CACHE)
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from);
    match args.sign_in.token_cache.clone().or(set) {
        Some(p) => Some(TokenCache::at(p)),
        None => TokenCache::default_location(env),
    }
}

fn device_code_tokens(
    client_id: &ClientId,
    tenant: &Tenant,
    args: &ExportArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<DeviceCodeTokens> {
    let raw = env(AUTHORITY_HOST)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
    let authority = url::Url::parse(raw.trim())
        .map_err(|e| anyhow!("{AUTHORITY_HOST} {raw:?} is not a URL: {e}"))?;
    let entra = EntraTokenClient::new(http_client(), &authority, tenant.as_str())
        .map_err(|e| anyhow!("{AUTHORITY_HOST}: {e}"))?;
    let cache = token_cache(args, env);
    if cache.is_none() {
        tracing::warn!("neither XDG_CACHE_HOME nor HOME is set, so the sign-in is not kept for the next run: pass --token-cache FILE");
    }
    let shown_tenant = tenant.clone();
    // stderr, so `--json` output on stdout stays machine-readable; Entra's message holds the
    // URL and the user code, never a token.
    let prompt: Prompt = Arc::new(move |message: &str| {
        eprintln!("partner-billing-export export: sign in to tenant {shown_tenant}: {message}")
    });
    Ok(DeviceCodeTokens::new(
        Arc::new(PublicClient::new(entra, client_id.as_str())),
        cache,
        CacheKey::new(&authority, tenant.as_str(), client_id.as_str()),
        &format!("app {client_id}, tenant {tenant}"),
        prompt,
    ))
}

/// No credential: every Graph / Partner Center token request says how to sign in (a static
/// test token may still serve the other audience).
#[derive(Debug)]
struct NotConfigured;

#[async_trait]
impl TokenSource for NotConfigured {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        Err(AuthError::Credential {
            credential: "no credential".into(),
            audience: audience.name(),
            reason: "pass --client-id <application id> --tenant <partner tenant id> to sign in with a device code".into(),
        })
    }
}

/// Stops when no credential is configured and no static test token stands in for Graph.
pub fn require_configured(sign_in: &GraphSignIn, graph_is_static: bool) -> anyhow::Result<()> {
    if *sign_in == GraphSignIn::Unset && !graph_is_static {
        bail!(not_configured());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::PartnerId;
    use crate::config::{PartnerCredential, TenantId};

    use crate::cli::args::parse_for_test as args;

    const APP: &str = "11111111-1111-1111-1111-111111111111";
    const TENANT: &str = "22222222-2222-2222-2222-222222222222";
    const LISTED: &str = "33333333-3333-3333-3333-333333333333";

    fn partner(listed: bool) -> PartnerConfig {
        let config = Config::load(&crate::config::Settings::new(|n| {
            (n == s::DESTINATION_ACCOUNT_URL).then(|| "https://a.blob.core.windows.net".into())
        }))
        .unwrap();
        let mut p = config.partners[0].clone();
        if listed {
            p.id = "contoso".parse::<PartnerId>().unwrap();
            p.tenant_id = Some(TenantId::parse(LISTED).unwrap());
            p.credential = PartnerCredential {
                kind: CredentialKind::AzureCli,
                secret: None,
                secrets: Default::default(),
            };
        }
        p
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn device(client: &str, tenant: &str) -> GraphSignIn {
        GraphSignIn::DeviceCode {
            client_id: client.parse().unwrap(),
            tenant: tenant.parse().unwrap(),
        }
    }

    #[test]
    fn the_rule() {
        let none = env(&[]);
        let implicit = partner(false);
        let listed = partner(true);
        // 1. --client-id, with the tenant from --tenant, the partner list or GRAPH_TENANT_ID.
        let a = args(&["--client-id", APP, "--tenant", "contoso.onmicrosoft.com"]);
        assert_eq!(
            choose(&a, &none, &implicit).unwrap(),
            device(APP, "contoso.onmicrosoft.com")
        );
        let a = args(&["--client-id", APP]);
        assert_eq!(choose(&a, &none, &listed).unwrap(), device(APP, LISTED));
        let e = choose(&a, &none, &implicit).unwrap_err().to_string();
        assert!(e.contains("pass --tenant"), "{e}");
        let t = env(&[(s::GRAPH_TENANT_ID, TENANT)]);
        assert_eq!(choose(&a, &t, &implicit).unwrap(), device(APP, TENANT));
        // ... or from the environment with GRAPH_CREDENTIAL_KIND=device-code.
        let dc = env(&[
            (s::GRAPH_CREDENTIAL_KIND, "Device-Code"),
            (s::GRAPH_CLIENT_ID, APP),
            (s::GRAPH_TENANT_ID, TENANT),
        ]);
        assert_eq!(
            choose(&args(&[]), &dc, &implicit).unwrap(),
            device(APP, TENANT)
        );
        let e = choose(
            &args(&["--credential", "device-code"]),
            &env(&[(s::GRAPH_TENANT_ID, TENANT)]),
            &implicit,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pass --client-id"), "{e}");
        // GRAPH_CLIENT_ID alone is another kind's app (client-secret): it selects nothing.
        let cs = env(&[(s::GRAPH_CLIENT_ID, APP), (s::GRAPH_TENANT_ID, TENANT)]);
        assert_eq!(
            choose(&args(&[]), &cs, &implicit).unwrap(),
            GraphSignIn::Unset
        );
        // 2. The Azure CLI only when asked for, also over the environment's device code.
        assert_eq!(
            choose(&args(&["--credential", "azure-cli"]), &dc, &implicit).unwrap(),
            GraphSignIn::AzureCli
        );
        // 3. A listed partner's own credential; 4. GRAPH_CREDENTIAL_KIND.
        assert_eq!(
            choose(&args(&[]), &none, &listed).unwrap(),
            GraphSignIn::Partner
        );
        let secret = env(&[(s::GRAPH_CREDENTIAL_KIND, "client-secret")]);
        assert_eq!(
            choose(&args(&[]), &secret, &implicit).unwrap(),
            GraphSignIn::Settings
        );
        // 5. Nothing: the message says how to sign in.
        let u = choose(&args(&[]), &none, &implicit).unwrap();
        assert_eq!(u, GraphSignIn::Unset);
        let e = require_configured(&u, false).unwrap_err().to_string();
        for want in [
            "not signed in",
            "public client app with the delegated Microsoft Graph permission PartnerBilling.Read.All",
            "admin consent",
            "--client-id <application id> --tenant <partner tenant id>",
        ] {
            assert!(e.contains(want), "{want:?} in {e}");
        }
        assert!(
            require_configured(&u, true).is_ok(),
            "a loopback test token"
        );
        // --client-id and --credential azure-cli contradict each other.
        assert!(crate::cli::args::try_parse_for_test(&[
            "--client-id",
            APP,
            "--credential",
            "azure-cli"
        ])
        .is_err());
    }

    #[test]
    fn token_cache_location() {
        let home = |n: &str| (n == "HOME").then(|| "/home/me".to_string());
        let c = token_cache(&args(&[]), &home).unwrap();
        assert_eq!(
            c.path(),
            std::path::Path::new("/home/me/.cache/partner-billing-export/tokens.json")
        );
        let over = |n: &str| match n {
            TOKEN_CACHE => Some("/tmp/t.json".to_string()),
            _ => home(n),
        };
        assert_eq!(
            token_cache(&args(&[]), &over).unwrap().path(),
            std::path::Path::new("/tmp/t.json")
        );
        assert_eq!(
            token_cache(&args(&["--token-cache", "/x/y.json"]), &over)
                .unwrap()
                .path(),
            std::path::Path::new("/x/y.json")
        );
    }

    #[test]
    fn authority_must_be_https_or_loopback() {
        let a = args(&[]);
        let client: ClientId = APP.parse().unwrap();
        let tenant: Tenant = TENANT.parse().unwrap();
        let plain = |n: &str| (n == AUTHORITY_HOST).then(|| "http://login.example.com".to_string());
        let e = device_code_tokens(&client, &tenant, &a, &plain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be https"), "{e}");
        let local = |n: &str| (n == AUTHORITY_HOST).then(|| "http://127.0.0.1:9".to_string());
        assert!(device_code_tokens(&client, &tenant, &a, &local).is_ok());
    }
}

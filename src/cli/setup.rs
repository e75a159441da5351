//! From command line and environment to a configured app: the Function app's settings with
//! laptop defaults (a local output folder; the Azure CLI for Azure resources), the Graph
//! sign-in `sign_in` chooses, static test tokens for loopback endpoints only, and the checks
//! that fail fast with a fix (not signed in, missing permission, destination not writable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use async_trait::async_trait;

use super::args::ExportArgs;
use super::diagnose;
use super::sign_in;
use crate::adapters::device_code::DeviceCodeTokens;
use crate::adapters::event_file::JsonLinesEventFile;
use crate::adapters::events::{EventPublisher, LogOnlyPublisher};
use crate::adapters::identity::token_source;
use crate::auth::claims::VerifiedTokens;
use crate::auth::{
    is_loopback, redact_url, AccessToken, Audience, AuthError, PerServiceTokens, TokenSource,
};
use crate::config::{Config, ConfigError, DestinationConfig, PartnerConfig, Settings};
use crate::settings as s;

/// A bearer token for Graph, accepted only when `GRAPH_BASE_URL` is a loopback test endpoint.
pub const GRAPH_ACCESS_TOKEN: &str = "GRAPH_ACCESS_TOKEN";
/// A bearer token for Partner Center, accepted only when `PARTNER_CENTER_BASE_URL` is loopback.
pub const PARTNER_CENTER_ACCESS_TOKEN: &str = "PARTNER_CENTER_ACCESS_TOKEN";
/// The default output folder.
pub const DEFAULT_OUT: &str = "billing-exports";
/// The CloudEvents this command records, beside the data.
pub const EVENTS_FILE: &str = "events.jsonl";

/// The Function app's settings as `export` reads them: the environment, with `--out`,
/// `--tenant`, `--credential` and the laptop defaults (the Azure CLI for Azure resources, a
/// filesystem destination) filled in. Graph's credential has no default: see `sign_in`.
pub fn settings_map(
    args: &ExportArgs,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut names: Vec<&str> = s::SETTINGS.iter().map(|x| x.name).collect();
    names.extend([GRAPH_ACCESS_TOKEN, PARTNER_CENTER_ACCESS_TOKEN]);
    for name in names {
        if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
            m.insert(name.to_string(), v);
        }
    }
    m.entry(s::AZURE_CREDENTIAL_KIND.to_string())
        .or_insert_with(|| "azure-cli".to_string());
    if let Some(t) = &args.sign_in.tenant {
        m.insert(s::GRAPH_TENANT_ID.into(), t.to_string());
    }
    if let Some(c) = args.sign_in.credential {
        m.insert(s::GRAPH_CREDENTIAL_KIND.into(), c.as_str().into());
    }
    let blob = m
        .get(s::DESTINATION_KIND)
        .is_some_and(|k| k.trim().eq_ignore_ascii_case("blob"));
    if args.out.is_some() || !blob {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
        let out = if out.is_absolute() {
            out
        } else {
            cwd.join(out)
        };
        m.insert(s::DESTINATION_KIND.into(), "filesystem".into());
        m.insert(s::DESTINATION_DIRECTORY.into(), out.display().to_string());
    }
    m
}

/// The configuration from `settings`. Names that are not settings of their own (the app
/// settings a partner list names: `secretSetting`, `certificateSetting`, ...) are read from
/// `env`, as the Function app reads them from its app settings. `GRAPH_CREDENTIAL_KIND`
/// device-code is the CLI's own: `Config` sees no Graph credential then.
pub fn config(
    settings: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let own = |n: &str| {
        s::SETTINGS.iter().any(|x| x.name == n)
            || n == GRAPH_ACCESS_TOKEN
            || n == PARTNER_CENTER_ACCESS_TOKEN
    };
    let device = sign_in::names_device_code(settings);
    Config::load(&Settings::new(|n: &str| {
        if device && n == s::GRAPH_CREDENTIAL_KIND {
            return None;
        }
        match settings.get(n) {
            Some(v) => Some(v.clone()),
            None if !own(n) => env(n),
            None => None,
        }
    }))
}

/// The partner `--partner` names; without it, the only one configured.
pub fn select_partner(
    config: &Config,
    wanted: Option<&crate::billing::PartnerId>,
) -> anyhow::Result<PartnerConfig> {
    let names = || {
        config
            .partners
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (wanted, config.partners.as_slice()) {
        (Some(id), _) => config.partner(id).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "--partner {id}: not in the configuration (PARTNERS / PARTNERS_FILE lists {})",
                names()
            )
        }),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(anyhow::anyhow!(
            "--partner is required: the configuration lists {}",
            names()
        )),
    }
}

/// Everything `export` needs before it plans.
#[derive(Debug)]
pub struct Setup {
    pub config: Config,
    /// The partner this run exports for.
    pub partner: PartnerConfig,
    pub tokens: Arc<dyn TokenSource>,
    pub events: Arc<dyn EventPublisher>,
    /// The events file, for a filesystem destination.
    pub events_file: Option<PathBuf>,
    /// Which credential signs in to Graph, for the plan.
    pub graph_credential: String,
    /// The device sign-in, when it is the Graph credential.
    pub device: Option<Arc<DeviceCodeTokens>>,
}

pub fn load(
    args: &ExportArgs,
    settings: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Setup> {
    let config = config(settings, env)?;
    let partner = select_partner(&config, args.partner.as_ref())?;
    let statics = static_tokens(&config, settings)?;
    let chosen = sign_in::choose(args, settings, &partner)?;
    sign_in::require_configured(&chosen, statics.contains_key(&Audience::Graph))?;
    let graph_credential = if statics.contains_key(&Audience::Graph) {
        format!("{GRAPH_ACCESS_TOKEN} (loopback test endpoint)")
    } else {
        sign_in::describe(&chosen, &config, &partner)
    };
    let azure =
        token_source(&config.credentials.azure).context("credential for Azure resources")?;
    let graph = sign_in::graph_tokens(&chosen, args, &config, &partner, &azure, env)?;
    let rest: Arc<dyn TokenSource> = Arc::new(PerServiceTokens {
        graph: graph.tokens,
        azure,
    });
    let tokens: Arc<dyn TokenSource> = if statics.is_empty() {
        rest
    } else {
        Arc::new(WithStaticTokens { statics, rest })
    };
    let (events, events_file): (Arc<dyn EventPublisher>, _) = match &config.destination {
        DestinationConfig::Filesystem { directory } => {
            let path = directory.join(EVENTS_FILE);
            (Arc::new(JsonLinesEventFile::new(&path)), Some(path))
        }
        DestinationConfig::Blob { .. } => (Arc::new(LogOnlyPublisher), None),
    };
    Ok(Setup {
        config,
        partner,
        tokens,
        events,
        events_file,
        graph_credential,
        device: graph.device,
    })
}

/// `GRAPH_ACCESS_TOKEN` / `PARTNER_CENTER_ACCESS_TOKEN`, refused unless their service's base
/// URL is on loopback: a fixed token is for a local stand-in, never for Microsoft's services.
fn static_tokens(
    config: &Config,
    settings: &HashMap<String, String>,
) -> anyhow::Result<HashMap<Audience, crate::auth::Secret>> {
    let mut out = HashMap::new();
    for (var, audience, base, base_name) in [
        (
            GRAPH_ACCESS_TOKEN,
            Audience::Graph,
            &config.graph.base_url,
            s::GRAPH_BASE_URL,
        ),
        (
            PARTNER_CENTER_ACCESS_TOKEN,
            Audience::PartnerCenter,
            &config.partner_center_base_url,
            s::PARTNER_CENTER_BASE_URL,
        ),
    ] {
        let Some(token) = settings.get(var) else {
            continue;
        };
        if !is_loopback(base) {
            bail!(
                "{var} is accepted only for a test endpoint on loopback, but {base_name} is {}: \
                 unset {var} and sign in with --client-id <application id> --tenant <partner tenant id> \
                 (or set GRAPH_CREDENTIAL_KIND)",
                redact_url(base)
            );
        }
        out.insert(audience, crate::auth::Secret::new(token.trim()));
    }
    Ok(out)
}

/// Fixed tokens for some audiences, the configured credentials for the rest.
#[derive(Debug)]
struct WithStaticTokens {
    statics: HashMap<Audience, crate::auth::Secret>,
    rest: Arc<dyn TokenSource>,
}

#[async_trait]
impl TokenSource for WithStaticTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        match self.statics.get(&audience) {
            Some(secret) => Ok(AccessToken {
                secret: secret.clone(),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            }),
            None => self.rest.token(audience).await,
        }
    }
}

/// Gets a token for each audience the run will need, checked as the pipeline checks it (tenant,
/// permission), so that "not signed in" or "missing permission" is said once, before anything
/// starts. A device sign-in whose token is refused is forgotten: once the grant is fixed, the
/// next run signs in afresh instead of reusing the refused token.
pub async fn check_sign_in(setup: &Setup, audiences: &[Audience]) -> anyhow::Result<()> {
    let verified = VerifiedTokens::new(
        setup.tokens.clone(),
        setup.partner.id.as_str(),
        setup.partner.tenant_id.map(|t| t.to_string()),
    );
    for a in audiences {
        let Err(e) = verified.token(*a).await else {
            continue;
        };
        let hint = diagnose::auth(&e)
            .map(|p| format!("\nhint: {p}"))
            .unwrap_or_default();
        if !matches!(e, AuthError::Access { .. }) {
            bail!("cannot get a {} token: {e}{hint}", a.name());
        }
        let forgot = match &setup.device {
            Some(d) => {
                d.forget().await;
                "\nThe saved sign-in was discarded: the next run asks you to sign in again."
            }
            None => "",
        };
        bail!("signed in, but {e}{hint}{forgot}");
    }
    Ok(())
}

/// Creates the output folder and proves it can be written, before anything starts.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let fix = "choose another --out, or fix the folder's permissions";
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}; {fix}", dir.display()))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .with_context(|| format!("cannot write to the output folder {}; {fix}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::args::parse_for_test as args;

    #[test]
    fn laptop_defaults() {
        let m = settings_map(&args(&[]), |_| None, Path::new("/home/me"));
        assert!(
            !m.contains_key(s::GRAPH_CREDENTIAL_KIND),
            "Graph's credential is chosen, not defaulted"
        );
        assert_eq!(m[s::AZURE_CREDENTIAL_KIND], "azure-cli");
        assert_eq!(m[s::DESTINATION_KIND], "filesystem");
        assert_eq!(m[s::DESTINATION_DIRECTORY], "/home/me/billing-exports");
        let env = |n: &str| {
            (n == s::DESTINATION_KIND)
                .then(|| "blob".to_string())
                .or_else(|| (n == s::GRAPH_CREDENTIAL_KIND).then(|| "client-secret".into()))
        };
        let m = settings_map(&args(&[]), env, Path::new("/x"));
        assert_eq!(m[s::DESTINATION_KIND], "blob");
        assert_eq!(m[s::GRAPH_CREDENTIAL_KIND], "client-secret");
        let m = settings_map(&args(&["--out", "/data"]), env, Path::new("/x"));
        assert_eq!(m[s::DESTINATION_DIRECTORY], "/data");
    }

    #[test]
    fn command_line_sign_in_settings() {
        let tenant = "22222222-2222-2222-2222-222222222222";
        let m = settings_map(
            &args(&["--tenant", tenant, "--credential", "azure-cli"]),
            |_| None,
            Path::new("/x"),
        );
        assert_eq!(m[s::GRAPH_TENANT_ID], tenant);
        assert_eq!(m[s::GRAPH_CREDENTIAL_KIND], "azure-cli");
        // device-code is the CLI's own kind: the configuration loads without knowing it, and
        // the implicit partner's tokens are checked against the tenant.
        let mut m = settings_map(&args(&[]), |_| None, Path::new("/x"));
        m.insert(s::GRAPH_CREDENTIAL_KIND.into(), "device-code".into());
        m.insert(s::GRAPH_TENANT_ID.into(), tenant.into());
        let c = config(&m, &|_| None).unwrap();
        assert_eq!(c.partners[0].tenant_id.unwrap().to_string(), tenant);
    }

    #[test]
    fn partner_list_secrets_are_read_from_the_environment() {
        let partners = r#"{"partners": [{"id": "contoso",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "credential": {"kind": "client-secret",
              "clientId": "22222222-2222-2222-2222-222222222222",
              "secretSetting": "CONTOSO_SECRET"}}]}"#;
        let env = |n: &str| match n {
            "PARTNERS" => Some(partners.to_string()),
            "CONTOSO_SECRET" => Some("s3cret-value".to_string()),
            _ => None,
        };
        let m = settings_map(&args(&[]), env, Path::new("/x"));
        assert!(
            !m.contains_key("CONTOSO_SECRET"),
            "only settings are copied"
        );
        let c = config(&m, &env).unwrap();
        let p = select_partner(&c, None).unwrap();
        assert_eq!(p.id.as_str(), "contoso");
        let e = config(&m, &|n: &str| {
            (n == "PARTNERS").then(|| partners.to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("app setting CONTOSO_SECRET is not set"), "{e}");
        // Settings of our own are never read past the map (e.g. a stripped device-code kind).
        let mut dc = m.clone();
        dc.insert(s::GRAPH_CREDENTIAL_KIND.into(), "device-code".into());
        let sneaky = |n: &str| match n {
            s::GRAPH_CREDENTIAL_KIND => Some("bogus".to_string()),
            other => env(other),
        };
        assert!(config(&dc, &sneaky).is_ok());
    }

    #[test]
    fn static_tokens_only_for_loopback() {
        let mut m = settings_map(&args(&[]), |_| None, Path::new("/tmp"));
        m.insert(GRAPH_ACCESS_TOKEN.into(), "t0ken-value".into());
        let e = load(&args(&[]), &m, &|_| None).unwrap_err().to_string();
        assert!(e.contains("GRAPH_ACCESS_TOKEN is accepted only for a test endpoint on loopback"));
        assert!(e.contains("https://graph.microsoft.com"), "{e}");
        assert!(!e.contains("t0ken-value"), "{e}");
        m.insert(s::GRAPH_BASE_URL.into(), "http://127.0.0.1:9".into());
        let ok = load(&args(&[]), &m, &|_| None).unwrap();
        assert!(ok.graph_credential.contains("loopback"));
    }

    #[test]
    fn no_credential_says_how_to_sign_in() {
        let m = settings_map(&args(&[]), |_| None, Path::new("/tmp"));
        let e = load(&args(&[]), &m, &|_| None).unwrap_err().to_string();
        assert!(e.starts_with("not signed in"), "{e}");
        assert!(e.contains("--client-id"), "{e}");
    }
}

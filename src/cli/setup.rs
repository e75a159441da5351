//! From command line and environment to a configured app: the Function app's settings with
//! laptop defaults (Azure CLI sign-in, a local output folder), static test tokens for loopback
//! endpoints only, and the checks that fail fast with a fix (not signed in, destination not
//! writable).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use async_trait::async_trait;

use super::args::ExportArgs;
use super::diagnose;
use crate::adapters::event_file::JsonLinesEventFile;
use crate::adapters::events::{EventPublisher, LogOnlyPublisher};
use crate::app::token_sources;
use crate::auth::{is_loopback, redact_url, AccessToken, Audience, AuthError, TokenSource};
use crate::config::{Config, DestinationConfig, Settings};
use crate::settings as s;

/// A bearer token for Graph, accepted only when `GRAPH_BASE_URL` is a loopback test endpoint.
pub const GRAPH_ACCESS_TOKEN: &str = "GRAPH_ACCESS_TOKEN";
/// A bearer token for Partner Center, accepted only when `PARTNER_CENTER_BASE_URL` is loopback.
pub const PARTNER_CENTER_ACCESS_TOKEN: &str = "PARTNER_CENTER_ACCESS_TOKEN";
/// The default output folder.
pub const DEFAULT_OUT: &str = "billing-exports";
/// The CloudEvents this command records, beside the data.
pub const EVENTS_FILE: &str = "events.jsonl";

/// The Function app's settings as `export` reads them: the environment, with `--out` and the
/// laptop defaults (Azure CLI credentials, a filesystem destination) filled in.
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
    for name in [s::AZURE_CREDENTIAL_KIND, s::GRAPH_CREDENTIAL_KIND] {
        m.entry(name.to_string())
            .or_insert_with(|| "azure-cli".to_string());
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

/// Everything `export` needs before it plans.
#[derive(Debug)]
pub struct Setup {
    pub config: Config,
    pub tokens: Arc<dyn TokenSource>,
    pub events: Arc<dyn EventPublisher>,
    /// The events file, for a filesystem destination.
    pub events_file: Option<PathBuf>,
    /// Which credential signs in to Graph, for the plan.
    pub graph_credential: String,
}

pub fn load(settings: &HashMap<String, String>) -> anyhow::Result<Setup> {
    let config = Config::load(&Settings::new(|n| settings.get(n).cloned()))?;
    let statics = static_tokens(&config, settings)?;
    let graph_credential = if statics.contains_key(&Audience::Graph) {
        format!("{GRAPH_ACCESS_TOKEN} (loopback test endpoint)")
    } else {
        format!("{:?}", config.credentials.graph)
    };
    let rest: Arc<dyn TokenSource> = Arc::new(token_sources(&config.credentials)?);
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
        tokens,
        events,
        events_file,
        graph_credential,
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
                 unset {var} and sign in with `az login` (or set GRAPH_CREDENTIAL_KIND)",
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

/// Gets a token for each audience the run will need, so that "not signed in" is said once,
/// before anything starts.
pub async fn check_sign_in(tokens: &dyn TokenSource, audiences: &[Audience]) -> anyhow::Result<()> {
    for a in audiences {
        if let Err(e) = tokens.token(*a).await {
            let hint = diagnose::auth(&e)
                .map(|p| format!("\nhint: {p}"))
                .unwrap_or_default();
            bail!("cannot get a {} token: {e}{hint}", a.name());
        }
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
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ExportArgs,
    }

    fn args(v: &[&str]) -> ExportArgs {
        T::parse_from(std::iter::once("t").chain(v.iter().copied())).a
    }

    #[test]
    fn laptop_defaults() {
        let m = settings_map(&args(&[]), |_| None, Path::new("/home/me"));
        assert_eq!(m[s::GRAPH_CREDENTIAL_KIND], "azure-cli");
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
    fn static_tokens_only_for_loopback() {
        let mut m = settings_map(&args(&[]), |_| None, Path::new("/tmp"));
        m.insert(GRAPH_ACCESS_TOKEN.into(), "t0ken-value".into());
        let e = load(&m).unwrap_err().to_string();
        assert!(e.contains("GRAPH_ACCESS_TOKEN is accepted only for a test endpoint on loopback"));
        assert!(e.contains("https://graph.microsoft.com"), "{e}");
        assert!(!e.contains("t0ken-value"), "{e}");
        m.insert(s::GRAPH_BASE_URL.into(), "http://127.0.0.1:9".into());
        let ok = load(&m).unwrap();
        assert!(ok.graph_credential.contains("loopback"));
    }
}

//! How `export` signs in on a laptop, run as a user runs it: the real binary against the Entra
//! stand-in (token and device code endpoints on loopback, `AZURE_AUTHORITY_HOST`) and the Graph
//! sandbox, which accepts tokens by their claims as Graph does.
//! - `--client-id --tenant` signs in with a device code (the message on stderr), gets Partner
//!   Center's token from the refresh token, exports; the next run reuses the saved tokens
//!   without a device code, and an expired one is renewed with the refresh token;
//! - the token file is the user's alone and holds the tokens; the output never shows one;
//! - a token without PartnerBilling.Read.All stops the run before anything starts;
//! - without any credential, `export` says how to sign in (exit 2);
//! - a partner list's secret settings are read from the environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use partner_billing_export::adapters::device_code::{GRAPH_SCOPES, PARTNER_CENTER_SCOPES};
use partner_billing_export::auth::Audience;
use partner_billing_local::entra::{EntraApp, EntraConfig, EntraRequest, EntraStandIn};
use partner_billing_local::graph_sandbox::{
    default_invoices, GraphSandbox, SandboxConfig, SandboxPartner,
};
use partner_billing_local::server::ServerHandle;
use partner_billing_local::tokens::{
    local_token, partner_center_token, partner_graph_token, LOCAL_TENANT_ID,
};
use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_partner-billing-export");
/// The partner's public client app registration.
const APP: &str = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn today() -> time::Date {
    time::macros::date!(2026 - 11 - 25)
}

fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        seed: 11,
        polls_before_done: 1,
        retry_after_secs: 1,
        partitions: 2,
        rows_per_partition: 50,
        today: Some(today()),
        invoices: default_invoices(today()),
        ..SandboxConfig::default()
    }
}

/// The partner tenant's app: a public client whose users' Graph tokens carry `scopes`.
fn app(scopes: &[&str]) -> EntraApp {
    EntraApp {
        tenant_id: LOCAL_TENANT_ID.into(),
        client_id: APP.into(),
        public_client: true,
        delegated_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..EntraApp::default()
    }
}

struct World {
    sb: GraphSandbox,
    entra: EntraStandIn,
    entra_http: ServerHandle,
    dir: tempfile::TempDir,
}

impl World {
    async fn start(app: EntraApp) -> Self {
        let entra = EntraStandIn::new(EntraConfig {
            apps: vec![app],
            // The user takes two polls to finish in the browser.
            pending_polls: 2,
        });
        let entra_http = entra.serve(0).await.unwrap();
        Self {
            sb: GraphSandbox::start(sandbox_config()).await.unwrap(),
            entra,
            entra_http,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("private/tokens.json")
    }

    /// The command with what a user sets against these stand-ins: their URLs, no token.
    fn export(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("export")
            .arg("--out")
            .arg(self.dir.path().join("out"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // A home of its own: the test never reads or writes the real user's cache.
            .env("HOME", self.dir.path().join("home"))
            .env("GRAPH_BASE_URL", self.sb.graph_base_url().as_str())
            .env(
                "PARTNER_CENTER_BASE_URL",
                self.sb.partner_center_base_url().as_str(),
            )
            .env(
                "AZURE_AUTHORITY_HOST",
                EntraStandIn::authority(&self.entra_http).as_str(),
            )
            .env("PARTNER_BILLING_TOKEN_CACHE", self.cache())
            .env("MIN_RETRY_AFTER_SECONDS", "0")
            .env("DEFAULT_RETRY_AFTER_SECONDS", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// `export` signed in through the app, for last month's invoices (found in Partner Center).
    fn signed_in_export(&self) -> Command {
        let mut c = self.export();
        c.args([
            "--client-id",
            APP,
            "--tenant",
            LOCAL_TENANT_ID,
            "--kind",
            "billedUsage",
            "--months",
            "2026-10",
        ]);
        c
    }

    /// The tokens in the cache file: every access and refresh token it holds.
    fn cached_tokens(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&std::fs::read(self.cache()).unwrap()).unwrap();
        let mut out = Vec::new();
        for entry in v["signIns"].as_object().unwrap().values() {
            if let Some(rt) = entry["refreshToken"].as_str() {
                out.push(rt.to_string());
            }
            for t in entry["access"].as_object().unwrap().values() {
                out.push(t["token"].as_str().unwrap().to_string());
            }
        }
        out
    }

    async fn stop(self) {
        self.sb.shutdown().await;
        self.entra_http.shutdown().await;
    }
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Neither stream shows a token: none of `tokens`, and nothing shaped like a JWT.
    fn assert_no_tokens(&self, tokens: &[String]) {
        let text = self.both();
        for t in tokens {
            assert!(!text.contains(t.as_str()), "output shows a token:\n{text}");
        }
        assert!(!text.contains("eyJ"), "output shows a JWT:\n{text}");
    }
}

async fn run(mut c: Command) -> Ran {
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("export finished within two minutes")
        .expect("the binary starts");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn count(requests: &[EntraRequest], endpoint: &str, grant: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.endpoint == endpoint && r.grant_type == grant)
        .count()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sign_in_exports_and_the_next_run_signs_in_silently() {
    let w = World::start(app(&["PartnerBilling.Read.All"])).await;

    // First run: the device code, then the export.
    let first = run(w.signed_in_export()).await;
    assert_eq!(first.code, Some(0), "{}", first.both());
    assert!(
        first.stderr.contains(
            "sign in to tenant 5a4d1b6e-0c0e-4c43-9d0b-10ca1b111e55: To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code LOCAL"
        ),
        "{}",
        first.stderr
    );
    assert!(first.stdout.contains("0 failed"), "{}", first.stdout);
    assert!(
        first
            .stdout
            .contains(&format!("signed in with device sign-in (app {APP}")),
        "{}",
        first.stdout
    );
    let requests = w.entra.requests();
    let devicecode: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "devicecode")
        .collect();
    assert_eq!(devicecode.len(), 1, "{requests:#?}");
    assert_eq!(devicecode[0].scope, GRAPH_SCOPES);
    assert_eq!(devicecode[0].tenant, LOCAL_TENANT_ID);
    assert_eq!(devicecode[0].client_id, APP);
    // Two polls pending, the third signed in.
    assert_eq!(
        count(&requests, "token", DEVICE_CODE_GRANT),
        3,
        "{requests:#?}"
    );
    // Partner Center's token came from the refresh token, without asking the user again.
    let refreshes: Vec<_> = requests
        .iter()
        .filter(|r| r.grant_type == "refresh_token")
        .collect();
    assert_eq!(refreshes.len(), 1, "{requests:#?}");
    assert_eq!(refreshes[0].scope, PARTNER_CENTER_SCOPES);
    assert!(refreshes[0].granted);
    assert!(w.sb.stats().exports_started > 0);

    // The token file: the user's alone, holding both access tokens and the refresh token.
    #[cfg(unix)]
    {
        assert_eq!(mode(&w.cache()), 0o600);
        assert_eq!(mode(w.cache().parent().unwrap()), 0o700);
    }
    let tokens = w.cached_tokens();
    assert_eq!(tokens.len(), 3, "refresh token, Graph and Partner Center");
    first.assert_no_tokens(&tokens);

    // Second run: the saved tokens, no device code and no request to Entra at all.
    let seen = requests.len();
    let second = run(w.signed_in_export()).await;
    assert_eq!(second.code, Some(0), "{}", second.both());
    assert!(!second.stderr.contains("To sign in"), "{}", second.stderr);
    assert_eq!(w.entra.requests().len(), seen, "{:#?}", w.entra.requests());
    second.assert_no_tokens(&tokens);

    // Expired access tokens are renewed with the refresh token (still no device code), and
    // the rotated refresh token is kept.
    let mut file: Value = serde_json::from_slice(&std::fs::read(w.cache()).unwrap()).unwrap();
    for entry in file["signIns"].as_object_mut().unwrap().values_mut() {
        for t in entry["access"].as_object_mut().unwrap().values_mut() {
            t["expiresAt"] = Value::from(1_000_000_000);
        }
    }
    std::fs::write(w.cache(), serde_json::to_vec(&file).unwrap()).unwrap();
    let mut third = w.signed_in_export();
    third.arg("--dry-run");
    let third = run(third).await;
    assert_eq!(third.code, Some(0), "{}", third.both());
    assert!(!third.stderr.contains("To sign in"), "{}", third.stderr);
    let after = w.entra.requests();
    assert_eq!(
        count(&after, "devicecode", ""),
        1,
        "no second device code: {after:#?}"
    );
    let new: Vec<_> = after[seen..].iter().collect();
    assert_eq!(new.len(), 2, "Graph and Partner Center renewed: {new:#?}");
    assert!(new
        .iter()
        .all(|r| r.grant_type == "refresh_token" && r.granted));
    let renewed = w.cached_tokens();
    assert!(
        !renewed.contains(&tokens[0]),
        "the rotated refresh token replaced the old one"
    );
    third.assert_no_tokens(&renewed);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_permission_stops_before_anything_starts() {
    // Admin consent covered User.Read only.
    let w = World::start(app(&["User.Read"])).await;
    let ran = run(w.signed_in_export()).await;
    assert_eq!(ran.code, Some(2), "{}", ran.both());
    for want in [
        "signed in, but partner default: the Microsoft Graph token cannot be used: missing permission",
        &format!("the signed-in user's token for app {APP} has no delegated PartnerBilling.Read.All (scopes: User.Read)"),
        "grant admin consent",
        "The saved sign-in was discarded",
    ] {
        assert!(ran.stderr.contains(want), "{want:?}:\n{}", ran.stderr);
    }
    assert_eq!(w.sb.stats().exports_started, 0, "nothing started");
    assert_eq!(
        count(&w.entra.requests(), "token", "refresh_token"),
        0,
        "stopped at Graph's token, before Partner Center's"
    );
    ran.assert_no_tokens(&[]);
    // The refused token is not kept: once the grant is fixed, the next run signs in afresh.
    assert!(
        w.cached_tokens().is_empty(),
        "{:?}",
        std::fs::read_to_string(w.cache())
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_credential_export_says_how_to_sign_in() {
    let w = World::start(app(&["PartnerBilling.Read.All"])).await;
    let mut c = w.export();
    c.args(["--invoice", "G026100001"]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2), "{}", ran.both());
    for want in [
        "partner-billing-export export: not signed in: no credential for Microsoft Graph is configured",
        "public client app with the delegated Microsoft Graph permission PartnerBilling.Read.All",
        "admin consent",
        "partner-billing-export export --client-id <application id> --tenant <partner tenant id>",
    ] {
        assert!(ran.stderr.contains(want), "{want:?}:\n{}", ran.stderr);
    }
    assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    assert!(w.entra.requests().is_empty());
    assert_eq!(w.sb.stats().exports_started, 0);

    // Half a device sign-in says what is missing.
    let mut c = w.export();
    c.args(["--invoice", "G026100001", "--client-id", APP]);
    let ran = run(c).await;
    assert_eq!(ran.code, Some(2), "{}", ran.both());
    assert!(ran.stderr.contains("pass --tenant"), "{}", ran.stderr);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_lists_secret_setting_is_read_from_the_environment() {
    let contoso = SandboxPartner::new("contoso", today(), ("USD", "$"));
    let invoice = contoso.invoices[0].id.clone();
    let partners = format!(
        r#"{{"partners": [{{"id": "contoso", "tenantId": "{}",
            "credential": {{"kind": "client-secret", "clientId": "{APP}", "secretSetting": "CONTOSO_SECRET"}}}}]}}"#,
        contoso.tenant_id
    );
    let sb = GraphSandbox::start(SandboxConfig {
        partners: vec![contoso],
        ..sandbox_config()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let command = |secret: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["export", "--partner", "contoso", "--dry-run", "--invoice"])
            .arg(&invoice)
            .arg("--out")
            .arg(dir.path().join("out"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRAPH_BASE_URL", sb.graph_base_url().as_str())
            .env(
                "PARTNER_CENTER_BASE_URL",
                sb.partner_center_base_url().as_str(),
            )
            .env("PARTNERS", &partners)
            // The loopback sandbox takes fixed tokens of contoso's tenant.
            .env("GRAPH_ACCESS_TOKEN", partner_graph_token("contoso"))
            .env(
                "PARTNER_CENTER_ACCESS_TOKEN",
                partner_center_token("contoso"),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(s) = secret {
            c.env("CONTOSO_SECRET", s);
        }
        c
    };
    let ran = run(command(Some("contoso-s3cret"))).await;
    assert_eq!(ran.code, Some(0), "{}", ran.both());
    assert!(ran.stdout.contains("would start"), "{}", ran.stdout);
    assert!(!ran.both().contains("contoso-s3cret"));
    let ran = run(command(None)).await;
    assert_eq!(ran.code, Some(2), "{}", ran.both());
    assert!(
        ran.stderr.contains(
            "partners[0].credential.secretSetting: app setting CONTOSO_SECRET is not set"
        ),
        "{}",
        ran.stderr
    );
    assert!(!ran.both().contains(local_token(Audience::Graph)));
    sb.shutdown().await;
}

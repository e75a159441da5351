//! `partner-billing-export local`: the whole pipeline on this machine. Starts the Graph sandbox,
//! the Service Bus and Event Grid stand-ins and the Functions host emulator (which starts this
//! binary with `serve`, as Azure does), fires the timer, shows progress through the status API,
//! verifies every landed partition against what the sandbox served, and summarises.

mod partners;
mod progress;
mod summary;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use partners::sandbox_partners;
use progress::{drive, Progress};
pub use summary::{invoice_check_line, payload, print_summary};
use verify::verify_outputs;
pub use verify::OutputReader;

use crate::azurite::{Azurite, DEV_ACCOUNT, PARTNER_ACCOUNT};

/// The container that plays the partner's export container in Azurite.
const PARTNER_CONTAINER: &str = "billing-exports";
use crate::entra::{
    issuer as entra_issuer, EntraApp, EntraConfig, EntraStandIn, FederatedIdentity,
};
use crate::eventgrid::{EventGridConfig, EventGridEmulator};
use crate::graph_sandbox::{ExternalBlobStore, GraphSandbox, SandboxConfig};
use crate::host::{FunctionsHost, HostOptions};
use crate::identity::{principal_id, IdentityConfig, IdentityEndpoint};
use crate::layout::{AppLayout, TriggerDef};
use crate::script_root;
use crate::servicebus::{ServiceBusConfig, ServiceBusEmulator};
use crate::tokens::{LOCAL_APP_ID, LOCAL_TENANT_ID};
use crate::tokens::{LOCAL_EVENTGRID_TOKEN, LOCAL_SERVICEBUS_TOKEN};
use partner_billing_export::auth::claims::PARTNER_BILLING_READ_ALL;
use partner_billing_export::settings as s;

/// Marks a directory as ours, so a rerun may clear it without risking a user's files.
const MARKER: &str = ".partner-billing-export-local";
pub const LOCAL_FUNCTION_KEY: &str = "local-function-key";
/// The script root the emulator runs, under the output directory.
pub const SCRIPT_ROOT: &str = "functions-app";

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub out_dir: PathBuf,
    /// Where `host.json` and `functions/` are (the embedded copies are used if absent); staged
    /// into a script root as the package lays them out. Also where Azurite is looked for.
    pub app_root: PathBuf,
    /// Run this deployment zip instead: unpacked into the script root, its own `handler`
    /// started (`app_root`'s function files and `handler_program` are not used).
    pub package: Option<PathBuf>,
    pub sandbox: SandboxConfig,
    /// Extra app settings for the handler (e.g. `EXPORT_KINDS`).
    pub settings: Vec<(String, String)>,
    pub timeout: Duration,
    /// Front-door port (0 = any free port).
    pub http_port: u16,
    pub quiet: bool,
    /// The handler binary; `None` = this executable (tests pass the built binary).
    pub handler_program: PathBuf,
    /// Run Azurite: the sandbox serves its partitions from Azurite's "Microsoft" account with
    /// real SAS tokens (Node.js and `npm ci` needed).
    pub azurite: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RunLine {
    pub run_id: String,
    pub subject: String,
    pub status: String,
    pub files: u64,
    pub bytes: u64,
    /// Unknown when the copies ran server-side (the bytes never passed through us).
    pub rows: Option<u64>,
    pub reason: Option<String>,
    /// Where the run's `_manifest.json` is (a path, or a blob URL without SAS).
    pub manifest: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LocalSummary {
    pub runs: Vec<RunLine>,
    pub partitions: u64,
    pub bytes: u64,
    pub rows: u64,
    pub duration: Duration,
    pub verified: u64,
    /// Typed Parquet and FOCUS files found beside the partitions (`OUTPUT_FORMATS=…,parquet`).
    pub parquet_files: u64,
    pub focus_files: u64,
    pub mismatches: Vec<String>,
    pub dead_letters: usize,
    pub events: Vec<Value>,
    pub output_dir: PathBuf,
    /// Where the exported data landed (the output folder, or Azurite's partner container).
    pub data_location: String,
    pub events_file: PathBuf,
}

impl LocalSummary {
    pub fn failed(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.status != "completed" && r.status != "no data")
            .count()
    }
    /// Runs Graph had no data for (code 5000): completed, not failed.
    pub fn no_data(&self) -> usize {
        self.runs.iter().filter(|r| r.status == "no data").count()
    }
    pub fn ok(&self) -> bool {
        !self.runs.is_empty()
            && self.failed() == 0
            && self.mismatches.is_empty()
            && self.dead_letters == 0
    }
}

/// The handler a package brings, where the host would start it; it must be an executable file.
fn packaged_handler(layout: &AppLayout, zip: &Path) -> anyhow::Result<PathBuf> {
    let path = layout.executable_path();
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "{} has no handler {:?} (host.json defaultExecutablePath)",
            zip.display(),
            layout.host.executable
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            bail!(
                "{}: the handler {:?} is not executable (mode {:o}); the Linux host could not start it",
                zip.display(),
                layout.host.executable,
                meta.permissions().mode() & 0o777
            );
        }
    }
    anyhow::ensure!(meta.is_file(), "{} is not a file", path.display());
    Ok(path)
}

fn prepare_out_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                bail!(
                    "{} exists and was not made by `local`; choose another --out or remove it",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by partner-billing-export local; safe to delete\n",
    )?;
    Ok(())
}

/// The stand-ins the handler talks to, started.
struct StandIns {
    sandbox: GraphSandbox,
    sb: std::sync::Arc<ServiceBusEmulator>,
    sb_http: crate::server::ServerHandle,
    eg: std::sync::Arc<EventGridEmulator>,
    eg_http: crate::server::ServerHandle,
    event_rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
    entra_http: crate::server::ServerHandle,
    /// The managed-identity endpoint: serves until dropped.
    identity_http: crate::server::ServerHandle,
    /// The handler's app settings that point at them.
    env: Vec<(String, String)>,
}

pub async fn run_local(opts: LocalOptions) -> anyhow::Result<LocalSummary> {
    let started = Instant::now();
    let mut progress = Progress {
        quiet: opts.quiet,
        started,
        last: String::new(),
    };
    prepare_out_dir(&opts.out_dir)?;
    let out_dir = std::fs::canonicalize(&opts.out_dir)?;
    let events_file = out_dir.join("events.jsonl");
    let (layout, program, queues) = stage_app(&opts, &out_dir, &progress)?;
    let azurite = if opts.azurite {
        let az = Azurite::start(&opts.app_root, &out_dir.join(".azurite"))
            .await
            .context("starting Azurite")?;
        progress.say(&format!(
            "Azurite blob service on 127.0.0.1:{}",
            az.blob_port
        ));
        Some(az)
    } else {
        None
    };
    let mut settings = opts.settings.clone();
    let mut stand_ins = start_stand_ins(
        &opts,
        &mut settings,
        queues,
        azurite.as_ref(),
        &out_dir,
        &progress,
    )
    .await?;
    let (destination_sas, data_location) = match &azurite {
        Some(az) => azurite_destination(az, &opts.settings, &mut stand_ins.env).await?,
        None => (None, out_dir.display().to_string()),
    };
    let mut env = std::mem::take(&mut stand_ins.env);
    env.extend(settings.iter().cloned());
    let host = FunctionsHost::start(HostOptions {
        layout: layout.clone(),
        program,
        env,
        log_file: out_dir.join("handler.log"),
        http_port: opts.http_port,
        function_key: LOCAL_FUNCTION_KEY.into(),
        service_bus: stand_ins.sb.clone(),
    })
    .await?;
    progress.say(&format!(
        "Graph sandbox {} | Service Bus {} | Event Grid {} | Functions API {} (key {LOCAL_FUNCTION_KEY})",
        stand_ins.sandbox.graph_base_url(),
        stand_ins.sb_http.base_url(),
        EventGridEmulator::topic_url(&stand_ins.eg_http),
        host.http_base()
    ));
    let StandIns {
        sandbox,
        sb,
        sb_http,
        eg,
        eg_http,
        mut event_rx,
        entra_http,
        identity_http,
        ..
    } = stand_ins;
    let result = drive(&host, &sb, &eg, &mut event_rx, &mut progress, opts.timeout).await;

    let dead = sb.dead_letters();
    if !dead.is_empty() {
        let lines: String = dead
            .iter()
            .map(|d| serde_json::to_string(d).unwrap_or_default() + "\n")
            .collect();
        std::fs::write(out_dir.join("dead-letters.jsonl"), lines)?;
    }
    let served = sandbox.served_partitions();
    host.shutdown().await;
    sb_http.shutdown().await;
    entra_http.shutdown().await;
    eg_http.shutdown().await;
    identity_http.shutdown().await;
    sandbox.shutdown().await;
    let verified = async {
        let mut summary = LocalSummary {
            runs: result?,
            duration: started.elapsed(),
            dead_letters: dead.len(),
            events: eg.events(),
            output_dir: out_dir.clone(),
            data_location: data_location.clone(),
            events_file,
            ..Default::default()
        };
        let expected: HashMap<(String, String), String> = served
            .iter()
            .map(|p| ((p.root_directory.clone(), p.name.clone()), p.md5.clone()))
            .collect();
        let reader = match &destination_sas {
            Some(sas) => OutputReader::Blobs {
                http: reqwest::Client::new(),
                sas: sas.clone(),
            },
            None => OutputReader::Files,
        };
        verify_outputs(&reader, &expected, &mut summary).await?;
        anyhow::Ok(summary)
    }
    .await;
    // Azurite stops only after the landed blobs were read back.
    if let Some(az) = azurite {
        az.stop().await;
    }
    verified
}

/// Stages the script root (as the zip lays it out) and finds the handler to start and the
/// queues the functions listen on.
fn stage_app(
    opts: &LocalOptions,
    out_dir: &Path,
    progress: &Progress,
) -> anyhow::Result<(AppLayout, PathBuf, Vec<String>)> {
    let lookup_settings = opts.settings.clone();
    let lookup = move |name: &str| -> Option<String> {
        lookup_settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
            .or_else(|| s::find(name).and_then(|x| x.default).map(str::to_string))
    };
    // The emulator reads only a script root, laid out as the zip is (see script_root.rs).
    let script_root = out_dir.join(SCRIPT_ROOT);
    let script_root = match &opts.package {
        Some(zip) => script_root::unpack_package(zip, &script_root)?,
        None => script_root::stage(&opts.app_root, &script_root)?,
    };
    let layout = AppLayout::load(&script_root, &lookup)?;
    let program = match &opts.package {
        Some(zip) => packaged_handler(&layout, zip)?,
        None => opts.handler_program.clone(),
    };
    if layout.functions.is_empty() {
        bail!(
            "no functions in {}: the host loads each direct subfolder holding a function.json",
            script_root.display()
        );
    }
    progress.say(&format!(
        "Functions app: {} functions in {}",
        layout.functions.len(),
        script_root.display()
    ));
    let queues: Vec<String> = layout
        .functions
        .iter()
        .filter_map(|f| match &f.trigger {
            TriggerDef::ServiceBusQueue { queue, .. } => Some(queue.clone()),
            _ => None,
        })
        .collect();
    Ok((layout, program, queues))
}

/// Starts the Graph sandbox (with the partner list's tenants), the Service Bus and Event Grid
/// stand-ins, the managed-identity endpoint and the Entra stand-in.
async fn start_stand_ins(
    opts: &LocalOptions,
    settings: &mut [(String, String)],
    queues: Vec<String>,
    azurite: Option<&Azurite>,
    out_dir: &Path,
    progress: &Progress,
) -> anyhow::Result<StandIns> {
    let mut sandbox_cfg = opts.sandbox.clone();
    let sign_ins = sandbox_partners(settings, &mut sandbox_cfg)?;
    if !sandbox_cfg.partners.is_empty() {
        progress.say(&format!(
            "{} partner tenants: {}",
            sandbox_cfg.partners.len(),
            sandbox_cfg
                .partners
                .iter()
                .map(|p| format!("{} ({} invoices)", p.id, p.invoices.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(az) = azurite {
        sandbox_cfg.blob_store = Some(ExternalBlobStore {
            account_url: az.account_url(DEV_ACCOUNT),
            account: az.account(DEV_ACCOUNT).clone(),
        });
    }
    let sandbox = GraphSandbox::start(sandbox_cfg)
        .await
        .context("starting the Graph sandbox")?;
    let sb = ServiceBusEmulator::new(ServiceBusConfig {
        queues,
        max_delivery_count: 10,
        duplicate_detection_window: Duration::from_secs(600),
        token: LOCAL_SERVICEBUS_TOKEN.into(),
        sas_keys: Vec::new(),
    });
    let sb_http = sb
        .serve(0)
        .await
        .context("starting the Service Bus stand-in")?;
    let eg = EventGridEmulator::new(EventGridConfig {
        token: LOCAL_EVENTGRID_TOKEN.into(),
        events_file: Some(out_dir.join("events.jsonl")),
    });
    let event_rx = eg.subscribe();
    let eg_http = eg
        .serve(0)
        .await
        .context("starting the Event Grid stand-in")?;

    // The handler signs in as in Azure with the recommended setup: its managed identity (the
    // identity endpoint stand-in) for Azure resources, and for Graph and Partner Center the
    // partner's app registration, which trusts that identity as a federated credential (the
    // Entra stand-in). The claim checks run on the tokens as on Entra's.
    let identity = IdentityEndpoint::new(IdentityConfig {
        header_secret: uuid::Uuid::new_v4().to_string(),
        partner_clients: sign_ins.identities,
        tenant_id: LOCAL_TENANT_ID.into(),
        ..IdentityConfig::default()
    });
    let identity_http = identity
        .serve(0)
        .await
        .context("starting the managed-identity endpoint stand-in")?;
    let mut apps = sign_ins.apps;
    apps.push(EntraApp {
        tenant_id: LOCAL_TENANT_ID.into(),
        client_id: LOCAL_APP_ID.into(),
        federated: vec![FederatedIdentity {
            issuer: entra_issuer(LOCAL_TENANT_ID),
            subject: principal_id(None),
        }],
        app_roles: vec![PARTNER_BILLING_READ_ALL.into()],
        ..EntraApp::default()
    });
    let entra = EntraStandIn::new(EntraConfig {
        apps,
        pending_polls: 0,
    });
    let entra_http = entra
        .serve(0)
        .await
        .context("starting the Entra ID stand-in")?;
    let mut env: Vec<(String, String)> = identity.settings(&identity_http);
    env.extend(handler_settings(
        &sandbox,
        &sb_http,
        &eg_http,
        &entra_http,
        out_dir,
    ));
    Ok(StandIns {
        sandbox,
        sb,
        sb_http,
        eg,
        eg_http,
        event_rx,
        entra_http,
        identity_http,
        env,
    })
}

/// The handler's app settings for the stand-ins and the output folder.
fn handler_settings(
    sandbox: &GraphSandbox,
    sb_http: &crate::server::ServerHandle,
    eg_http: &crate::server::ServerHandle,
    entra_http: &crate::server::ServerHandle,
    out_dir: &Path,
) -> Vec<(String, String)> {
    vec![
        (
            "AZURE_AUTHORITY_HOST".into(),
            EntraStandIn::authority(entra_http).to_string(),
        ),
        (s::GRAPH_TENANT_ID.into(), LOCAL_TENANT_ID.into()),
        (s::GRAPH_CLIENT_ID.into(), LOCAL_APP_ID.into()),
        (
            s::GRAPH_BASE_URL.into(),
            sandbox.graph_base_url().to_string(),
        ),
        (
            s::PARTNER_CENTER_BASE_URL.into(),
            sandbox.partner_center_base_url().to_string(),
        ),
        (
            s::SERVICEBUS_ENDPOINT.into(),
            sb_http.base_url().to_string(),
        ),
        (
            s::EVENTGRID_TOPIC_ENDPOINT.into(),
            EventGridEmulator::topic_url(eg_http).to_string(),
        ),
        (s::DESTINATION_KIND.into(), "filesystem".into()),
        (
            s::DESTINATION_DIRECTORY.into(),
            out_dir.display().to_string(),
        ),
        (s::AZURE_CREDENTIAL_KIND.into(), "managed-identity".into()),
        (
            s::GRAPH_CREDENTIAL_KIND.into(),
            "federated-managed-identity".into(),
        ),
        (s::DEFAULT_RETRY_AFTER_SECONDS.into(), "1".into()),
        // The sandbox asks for short waits; the production floor would only slow the demo.
        (s::MIN_RETRY_AFTER_SECONDS.into(), "1".into()),
        (s::LOG_FORMAT.into(), "text".into()),
        (
            s::EVENT_SOURCE.into(),
            "/partner-billing-export/local".into(),
        ),
        (
            "RUST_LOG".into(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ]
}

/// With Azurite the partner's storage is Azurite's second account, reached with a SAS, and
/// copies run server-side (async Copy Blob: Azurite lacks the From-URL APIs). Returns the SAS
/// and where the data lands.
async fn azurite_destination(
    az: &Azurite,
    settings: &[(String, String)],
    env: &mut Vec<(String, String)>,
) -> anyhow::Result<(Option<String>, String)> {
    let http = reqwest::Client::new();
    az.create_container(&http, PARTNER_ACCOUNT, PARTNER_CONTAINER)
        .await?;
    // The FinOps hubs ingestion container, when asked for, exists beside it (as infra/
    // ensures in Azure).
    if let Some((_, hubs)) = settings
        .iter()
        .find(|(k, v)| k == s::HUBS_INGESTION_CONTAINER && !v.is_empty())
    {
        az.create_container(&http, PARTNER_ACCOUNT, hubs).await?;
    }
    let sas = az.account(PARTNER_ACCOUNT).sas(
        "rwdlac",
        time::OffsetDateTime::now_utc() + Duration::from_secs(24 * 3600),
    );
    env.retain(|(k, _)| k != s::DESTINATION_KIND && k != s::DESTINATION_DIRECTORY);
    env.extend([
        (s::DESTINATION_KIND.to_string(), "blob".to_string()),
        (
            s::DESTINATION_ACCOUNT_URL.to_string(),
            az.account_url(PARTNER_ACCOUNT).to_string(),
        ),
        (
            s::DESTINATION_CONTAINER.to_string(),
            PARTNER_CONTAINER.to_string(),
        ),
        (s::DESTINATION_SAS.to_string(), sas.clone()),
    ]);
    let location = format!(
        "{}/{PARTNER_CONTAINER} (Azurite)",
        az.account_url(PARTNER_ACCOUNT)
    );
    Ok((Some(sas), location))
}

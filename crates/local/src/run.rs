//! `partner-billing-export local`: the whole pipeline on this machine. Starts the Graph sandbox,
//! the Service Bus and Event Grid stand-ins and the Functions host emulator (which starts this
//! binary with `serve`, as Azure does), fires the timer, shows progress through the status API,
//! verifies every landed partition against what the sandbox served, and summarises.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::azurite::{Azurite, DEV_ACCOUNT, PARTNER_ACCOUNT};

/// The container that plays the partner's export container in Azurite.
const PARTNER_CONTAINER: &str = "billing-exports";
use super::eventgrid::{EventGridConfig, EventGridEmulator};
use super::graph_sandbox::{ExternalBlobStore, GraphSandbox, SandboxConfig, SandboxPartner};
use super::host::{FunctionsHost, HostOptions};
use super::layout::{AppLayout, TriggerDef};
use super::script_root;
use super::servicebus::{ServiceBusConfig, ServiceBusEmulator};
use crate::entra::{
    issuer as entra_issuer, EntraApp, EntraConfig, EntraStandIn, FederatedIdentity,
};
use crate::identity::{principal_id, IdentityConfig, IdentityEndpoint, PartnerClient};
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

struct Progress {
    quiet: bool,
    started: Instant,
    last: String,
}

impl Progress {
    fn say(&self, line: &str) {
        if !self.quiet {
            println!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }
    fn update(&mut self, line: String) {
        if line != self.last {
            self.say(&line);
            self.last = line;
        }
    }
}

fn short_type(t: &str) -> &str {
    t.strip_prefix("PartnerBillingExport.").unwrap_or(t)
}

fn describe_event(e: &Value) -> String {
    let t = short_type(e["type"].as_str().unwrap_or("?"));
    let subject = e["subject"].as_str().unwrap_or("");
    let d = &e["data"];
    match t {
        "ExportCompleted.v1" => format!(
            "event {t} {subject}: {} files, {} bytes, {} rows",
            d["blobCount"], d["byteCount"], d["rowCount"]
        ),
        "ExportFailed.v1" => format!("event {t} {subject}: {} {}", d["code"], d["reason"]),
        _ => format!("event {t} {subject}"),
    }
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
    let log_file = out_dir.join("handler.log");

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
    let mut sandbox_cfg = opts.sandbox.clone();
    let mut settings = opts.settings.clone();
    let sign_ins = sandbox_partners(&mut settings, &mut sandbox_cfg)?;
    let partner_clients = sign_ins.identities;
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
    if let Some(az) = &azurite {
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
        events_file: Some(events_file.clone()),
    });
    let mut event_rx = eg.subscribe();
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
        partner_clients,
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
    env.extend([
        (
            "AZURE_AUTHORITY_HOST".into(),
            EntraStandIn::authority(&entra_http).to_string(),
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
            EventGridEmulator::topic_url(&eg_http).to_string(),
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
    ]);
    // With Azurite the partner's storage is Azurite's second account, reached with a SAS, and
    // copies run server-side (async Copy Blob: Azurite lacks the From-URL APIs).
    let mut destination_sas = None;
    let mut data_location = out_dir.display().to_string();
    if let Some(az) = &azurite {
        let http = reqwest::Client::new();
        az.create_container(&http, PARTNER_ACCOUNT, PARTNER_CONTAINER)
            .await?;
        // The FinOps hubs ingestion container, when asked for, exists beside it (as infra/
        // ensures in Azure).
        if let Some((_, hubs)) = opts
            .settings
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
        destination_sas = Some(sas);
        data_location = format!(
            "{}/{PARTNER_CONTAINER} (Azurite)",
            az.account_url(PARTNER_ACCOUNT)
        );
    }
    env.extend(settings.iter().cloned());
    let host = FunctionsHost::start(HostOptions {
        layout: layout.clone(),
        program,
        env,
        log_file: log_file.clone(),
        http_port: opts.http_port,
        function_key: LOCAL_FUNCTION_KEY.into(),
        service_bus: sb.clone(),
    })
    .await?;
    progress.say(&format!(
        "Graph sandbox {} | Service Bus {} | Event Grid {} | Functions API {} (key {LOCAL_FUNCTION_KEY})",
        sandbox.graph_base_url(),
        sb_http.base_url(),
        EventGridEmulator::topic_url(&eg_http),
        host.http_base()
    ));

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

/// How the sandbox partners of a partner list sign in: app registrations for the Entra
/// stand-in, user-assigned identities for the identity endpoint stand-in.
#[derive(Debug, Default)]
struct PartnerSignIns {
    apps: Vec<EntraApp>,
    identities: Vec<PartnerClient>,
}

/// The partner tenants of a `PARTNERS` / `PARTNERS_FILE` setting, as the stand-ins play them:
/// each becomes a sandbox partner (its tenant id, invoices in its first currency) whose
/// managed identity (`credential.clientId`) the identity stand-in serves with that partner's
/// tokens. Returns the (client id, partner id) pairs; `PARTNERS_FILE` is made absolute, since
/// the handler does not run in this directory. The handler validates the list itself.
fn sandbox_partners(
    settings: &mut [(String, String)],
    sandbox: &mut SandboxConfig,
) -> anyhow::Result<PartnerSignIns> {
    let setting = |name: &str| {
        settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let json = match (setting(s::PARTNERS), setting(s::PARTNERS_FILE)) {
        (Some(json), _) => json,
        (None, Some(path)) => {
            let abs = std::fs::canonicalize(&path)
                .with_context(|| format!("{}: cannot find {path:?}", s::PARTNERS_FILE))?;
            for (k, v) in settings.iter_mut() {
                if k == s::PARTNERS_FILE {
                    *v = abs.display().to_string();
                }
            }
            std::fs::read_to_string(&abs)
                .with_context(|| format!("{}: reading {}", s::PARTNERS_FILE, abs.display()))?
        }
        (None, None) => return Ok(PartnerSignIns::default()),
    };
    let doc: Value = serde_json::from_str(&json).context("the partner list is not JSON")?;
    let today = sandbox
        .today
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let mut sign_ins = PartnerSignIns::default();
    for p in doc["partners"].as_array().into_iter().flatten() {
        let tenant = p["tenantId"].as_str().unwrap_or_default();
        let id = p["id"].as_str().unwrap_or(tenant).to_ascii_lowercase();
        let currency = p["currencies"][0]
            .as_str()
            .unwrap_or("USD")
            .to_ascii_uppercase();
        let symbol = match currency.as_str() {
            "EUR" => "€",
            "GBP" => "£",
            _ => "$",
        };
        let mut partner = SandboxPartner::new(&id, today, (&currency, symbol));
        if let Ok(t) = uuid::Uuid::parse_str(tenant) {
            partner.tenant_id = t;
        }
        let tenant_id = partner.tenant_id.to_string();
        let credential = &p["credential"];
        match (credential["kind"].as_str(), credential["clientId"].as_str()) {
            // The partner's app trusts the (system- or user-assigned) identity of the app.
            (Some("federated-managed-identity"), Some(app)) => {
                sign_ins.apps.push(EntraApp {
                    tenant_id: tenant_id.clone(),
                    client_id: app.to_string(),
                    federated: vec![FederatedIdentity {
                        issuer: entra_issuer(LOCAL_TENANT_ID),
                        subject: principal_id(credential["managedIdentityClientId"].as_str()),
                    }],
                    app_roles: vec![PARTNER_BILLING_READ_ALL.into()],
                    ..EntraApp::default()
                });
                // The user-assigned identity the app uses must exist on the identity endpoint.
                if let Some(identity) = credential["managedIdentityClientId"].as_str() {
                    sign_ins.identities.push(PartnerClient {
                        client_id: identity.to_string(),
                        partner: id.clone(),
                        tenant_id: tenant_id.clone(),
                    });
                }
            }
            (_, Some(client)) => sign_ins.identities.push(PartnerClient {
                client_id: client.to_string(),
                partner: id.clone(),
                tenant_id,
            }),
            _ => {}
        }
        sandbox.partners.push(partner);
    }
    Ok(sign_ins)
}

/// Fires the timer and waits until every run is finished and announced, showing progress.
async fn drive(
    host: &FunctionsHost,
    sb: &ServiceBusEmulator,
    eg: &EventGridEmulator,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    progress: &mut Progress,
    timeout: Duration,
) -> anyhow::Result<Vec<RunLine>> {
    // Billed and unbilled exports have a timer each; local mode fires both at once.
    for timer in partner_billing_export::functions::START_TIMERS {
        let fired = host.fire_timer(timer.name).await?;
        for l in &fired.logs {
            progress.say(&format!("{}: {l}", timer.name));
        }
        if !fired.ok {
            bail!(
                "the {} timer invocation failed; see {}",
                timer.name,
                host.log_file().display()
            );
        }
    }
    let client = reqwest::Client::builder().no_proxy().build()?;
    let list_url = host.http_base().join("exports")?;
    let deadline = Instant::now() + timeout;
    loop {
        while let Ok(e) = events.try_recv() {
            progress.say(&describe_event(&e));
        }
        let list: Value = client
            .get(list_url.clone())
            .header("x-functions-key", host.function_key())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        let (mut done_parts, mut total_parts) = (0, 0);
        for r in &runs {
            *by_state
                .entry(r["status"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            done_parts += r["partsDone"].as_u64().unwrap_or(0);
            total_parts += r["partsTotal"].as_u64().unwrap_or(0);
        }
        let states: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
        progress.update(format!(
            "{} runs: {} | partitions {done_parts}/{total_parts}",
            runs.len(),
            states.join(", ")
        ));
        let terminal = runs
            .iter()
            .filter(|r| matches!(r["status"].as_str(), Some("completed" | "failed")))
            .count();
        let finals = eg
            .events()
            .iter()
            .filter(|e| {
                e["type"]
                    .as_str()
                    .is_some_and(|t| t.contains("ExportCompleted") || t.contains("ExportFailed"))
            })
            .count();
        let idle = sb.depth().values().all(|d| *d == 0);
        if !runs.is_empty() && terminal == runs.len() && finals >= runs.len() && idle {
            while let Ok(e) = events.try_recv() {
                progress.say(&describe_event(&e));
            }
            return collect_runs(&client, host, &runs).await;
        }
        if Instant::now() > deadline {
            bail!(
                "runs did not finish within {timeout:?} ({}); see {}",
                states.join(", "),
                host.log_file().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn collect_runs(
    client: &reqwest::Client,
    host: &FunctionsHost,
    runs: &[Value],
) -> anyhow::Result<Vec<RunLine>> {
    let mut out = Vec::new();
    for r in runs {
        let id = r["runId"].as_str().unwrap_or_default();
        let url = host.http_base().join(&format!("exports/{id}"))?;
        let v: Value = client
            .get(url)
            .header("x-functions-key", host.function_key())
            .send()
            .await?
            .json()
            .await?;
        let req = &v["request"];
        let scope = &req["scope"];
        let partner = match v["partner"].as_str() {
            Some(p) if p != "default" => format!("{p}: "),
            _ => String::new(),
        };
        let who = scope["invoiceId"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "{} {}",
                    scope["billingPeriod"].as_str().unwrap_or(""),
                    scope["currencyCode"].as_str().unwrap_or("")
                )
            });
        out.push(RunLine {
            run_id: id.to_string(),
            subject: format!("{partner}{} {who}", req["kind"].as_str().unwrap_or("")),
            status: if v["result"]["noData"] == true {
                "no data".to_string()
            } else {
                v["status"].as_str().unwrap_or("?").to_string()
            },
            files: v["result"]["blobCount"].as_u64().unwrap_or(0),
            bytes: v["result"]["byteCount"].as_u64().unwrap_or(0),
            rows: v["result"]["rowCount"].as_u64(),
            reason: v["failure"]["reason"]
                .as_str()
                .or(v["result"]["noDataReason"].as_str())
                .map(str::to_string),
            manifest: v["result"]["manifest"].as_str().map(str::to_string),
        });
    }
    out.sort_by(|a, b| a.subject.cmp(&b.subject));
    Ok(out)
}

/// Reads what landed, wherever it landed: files, or blobs (with the partner account's SAS).
pub enum OutputReader {
    Files,
    Blobs { http: reqwest::Client, sas: String },
}

impl OutputReader {
    async fn read(&self, location: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            OutputReader::Files => {
                std::fs::read(location).with_context(|| format!("reading {location}"))
            }
            OutputReader::Blobs { http, sas } => {
                let res = http
                    .get(format!("{location}?{sas}"))
                    .header("x-ms-version", super::azurite::SAS_VERSION)
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "reading {location}: HTTP {}",
                    res.status()
                );
                Ok(res.bytes().await?.to_vec())
            }
        }
    }
}

/// Beside a location (path or URL): `{parent}/{name}`.
fn sibling(location: &str, name: &str) -> String {
    match location.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/{name}"),
        None => name.to_string(),
    }
}

/// Follows each completed run's `_manifest.json` to its partitions and checks every one against
/// the MD5 of what the sandbox served for the same source blob: the bytes are read back, not
/// taken from the pipeline's own records.
async fn verify_outputs(
    reader: &OutputReader,
    expected: &HashMap<(String, String), String>,
    summary: &mut LocalSummary,
) -> anyhow::Result<()> {
    let manifests: Vec<String> = summary
        .runs
        .iter()
        .filter_map(|r| r.manifest.clone())
        .collect();
    for location in manifests {
        let m: Value = serde_json::from_slice(&reader.read(&location).await?)
            .with_context(|| format!("{location} is not JSON"))?;
        let root = m["source"]["rootDirectory"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for b in m["blobs"].as_array().cloned().unwrap_or_default() {
            let file = sibling(&location, b["blobName"].as_str().unwrap_or_default());
            let source = b["sourceName"].as_str().unwrap_or_default().to_string();
            let bytes = reader.read(&file).await?;
            let got = hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes));
            summary.partitions += 1;
            summary.bytes += bytes.len() as u64;
            summary.rows += b["dataRowCount"].as_u64().unwrap_or(0);
            for (key, count) in [
                ("parquetName", &mut summary.parquet_files),
                ("focusName", &mut summary.focus_files),
            ] {
                let Some(name) = b[key].as_str() else {
                    continue;
                };
                let file = sibling(&location, name);
                let bytes = reader.read(&file).await?;
                // A whole Parquet file starts and ends with its magic number.
                if bytes.len() >= 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1") {
                    *count += 1;
                } else {
                    summary
                        .mismatches
                        .push(format!("{file} is not a whole Parquet file"));
                }
            }
            match expected.get(&(root.clone(), source)) {
                Some(want) if *want == got => summary.verified += 1,
                Some(_) => summary
                    .mismatches
                    .push(format!("{file} differs from the source")),
                None => summary
                    .mismatches
                    .push(format!("{file} has no matching source partition")),
            }
        }
    }
    Ok(())
}

/// The invoice check's last word per invoice, e.g. `Invoices: 3 checked, 3 reconciled (billed
/// usage matched the Azure lines of 3), 0 mismatched`; `None` when no check was made.
pub fn invoice_check_line(events: &[Value]) -> Option<String> {
    let mut last: std::collections::BTreeMap<&str, &Value> = std::collections::BTreeMap::new();
    for e in events {
        let ty = e["type"].as_str().unwrap_or("");
        if !(ty.contains("InvoiceReconciled") || ty.contains("InvoiceMismatch")) {
            continue;
        }
        let Some(id) = e["data"]["invoiceId"].as_str() else {
            continue;
        };
        // The event that compared usage too is the fuller verdict.
        if e["data"]["azureUsage"].is_object() || !last.contains_key(id) {
            last.insert(id, e);
        }
    }
    if last.is_empty() {
        return None;
    }
    let reconciled = last
        .values()
        .filter(|e| e["data"]["verdict"] == "reconciled")
        .count();
    let usage_matched = last
        .values()
        .filter(|e| e["data"]["azureUsage"]["verdict"] == "reconciled")
        .count();
    let mismatched: Vec<&str> = last
        .iter()
        .filter(|(_, e)| e["data"]["verdict"] != "reconciled")
        .map(|(id, _)| *id)
        .collect();
    Some(format!(
        "Invoices: {} checked, {reconciled} reconciled (billed usage matched the Azure lines of {usage_matched}), {} mismatched{}",
        last.len(),
        mismatched.len(),
        if mismatched.is_empty() {
            String::new()
        } else {
            format!(": {}", mismatched.join(", "))
        }
    ))
}

pub fn print_summary(s: &LocalSummary) {
    println!();
    println!("Runs:");
    for r in &s.runs {
        match &r.reason {
            None => println!(
                "  {:<10} {:<45} {:>3} files {:>10} bytes {:>8} rows  ({})",
                r.status,
                r.subject,
                r.files,
                r.bytes,
                r.rows.map_or_else(|| "n/a".to_string(), |n| n.to_string()),
                r.run_id
            ),
            Some(why) => println!("  {:<10} {:<45} {why}  ({})", r.status, r.subject, r.run_id),
        }
    }
    println!();
    println!(
        "Summary: {} runs ({} completed, {} no data, {} failed), {} partitions, {} bytes, {} rows, {:.1} s",
        s.runs.len(),
        s.runs.len() - s.failed() - s.no_data(),
        s.no_data(),
        s.failed(),
        s.partitions,
        s.bytes,
        s.rows,
        s.duration.as_secs_f64()
    );
    println!(
        "Verified: {} of {} partitions byte-identical to what the Graph sandbox served{}",
        s.verified,
        s.partitions,
        if s.mismatches.is_empty() {
            String::new()
        } else {
            format!("; {} MISMATCHED", s.mismatches.len())
        }
    );
    if s.parquet_files + s.focus_files > 0 {
        println!(
            "Parquet: {} typed and {} FOCUS files beside the partitions",
            s.parquet_files, s.focus_files
        );
    }
    if let Some(line) = invoice_check_line(&s.events) {
        println!("{line}");
    }
    for m in &s.mismatches {
        println!("  mismatch: {m}");
    }
    if s.dead_letters > 0 {
        println!(
            "Dead-lettered messages: {} (see {}/dead-letters.jsonl)",
            s.dead_letters,
            s.output_dir.display()
        );
    }
    println!("Output:  {}", s.data_location);
    println!("Logs:    {}", s.output_dir.join("handler.log").display());
    println!(
        "Events:  {} ({} events)",
        s.events_file.display(),
        s.events.len()
    );
}

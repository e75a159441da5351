//! partner-billing-export: one binary, several entry points.
//! - `serve`: the custom handler the Azure Functions host starts (host.json `arguments`).
//! - `local`: the whole pipeline on this machine with embedded defaults, no Azure account.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use partner_billing_export::app::App;
use partner_billing_export::auth::{LOCAL_GRAPH_TOKEN, LOCAL_PARTNER_CENTER_TOKEN};
use partner_billing_export::config::Config;
use partner_billing_export::local::graph_sandbox::{GraphSandbox, ManifestShape, SandboxConfig};
use partner_billing_export::local::run::{print_summary, run_local, LocalOptions};
use partner_billing_export::runtime::server;

#[derive(Parser)]
#[command(
    name = "partner-billing-export",
    version,
    about = "Microsoft Graph partner billing exports, end to end, as an Azure Functions custom handler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    Inline,
    Link,
    Alternate,
}

#[derive(Subcommand)]
enum Command {
    /// Run as the custom handler (what the Functions host starts); reads app settings from the environment.
    Serve,
    /// Run the whole pipeline locally against the built-in Graph sandbox and Azure stand-ins.
    Local {
        /// Output directory (partitions, _manifest.json per run, events.jsonl, handler.log).
        #[arg(long, default_value = "local-run")]
        out: PathBuf,
        /// Folder with host.json and functions/ (the built-in copies are used if it has none).
        #[arg(long, default_value = ".")]
        app_root: PathBuf,
        /// Seed of the sandbox's generated billing data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Partitions (blobs) per export.
        #[arg(long, default_value_t = 3)]
        partitions: u32,
        /// JSON lines per partition.
        #[arg(long, default_value_t = 500)]
        rows: u32,
        /// Polls an operation stays running before it succeeds.
        #[arg(long, default_value_t = 2)]
        polls: u32,
        /// Retry-After (seconds) the sandbox sends while an operation runs.
        #[arg(long, default_value_t = 1)]
        retry_after: u32,
        /// Manifest shape: inline resourceLocation, navigation link, or alternating.
        #[arg(long, value_enum, default_value = "alternate")]
        manifest_shape: Shape,
        /// Make the export of this invoice id (or unbilled currency) fail with code 5000.
        #[arg(long = "fail")]
        fail: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Port of the local Functions HTTP API (0 = any free port).
        #[arg(long, default_value_t = 0)]
        http_port: u16,
        /// Extra app settings for the handler, NAME=VALUE (e.g. EXPORT_KINDS=billedUsage).
        #[arg(long = "setting", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// Serve the sandbox's partitions from Azurite (real Azure Storage emulator, from npm).
        #[arg(long)]
        azurite: bool,
    },
    /// Serve only the Graph partner billing sandbox (and its Partner Center and blob endpoints)
    /// until Ctrl-C, for trying a client or the handler against it by hand.
    Sandbox {
        #[arg(long, default_value_t = 7080)]
        port: u16,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 3)]
        partitions: u32,
        #[arg(long, default_value_t = 500)]
        rows: u32,
        #[arg(long, default_value_t = 2)]
        polls: u32,
        #[arg(long, default_value_t = 5)]
        retry_after: u32,
    },
    /// Build the deployable zip: host.json, functions/*/function.json and the binary as `handler`.
    Package {
        /// Folder with host.json and functions/.
        #[arg(long, default_value = ".")]
        app_root: PathBuf,
        /// The Linux release binary to ship (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where to write the zip.
        #[arg(long, default_value = "target/partner-billing-export.zip")]
        output: PathBuf,
    },
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    init_tracing(config.json_logs, "info");
    let port = server::port_from_env().map_err(anyhow::Error::msg)?;
    let (listener, addr) = server::bind(port).await?;
    let app = App::from_config(config)?;
    let router = app.router();
    tracing::info!(%addr, functions = ?router.names(), "custom handler listening");
    server::serve(router, listener, shutdown_signal()).await;
    tracing::info!("custom handler stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => match serve().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("partner-billing-export serve: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Sandbox {
            port,
            seed,
            partitions,
            rows,
            polls,
            retry_after,
        } => {
            init_tracing(false, "info");
            let cfg = SandboxConfig {
                seed,
                partitions,
                rows_per_partition: rows,
                polls_before_done: polls,
                retry_after_secs: retry_after,
                ..SandboxConfig::default()
            };
            match GraphSandbox::start_on(cfg, ([127, 0, 0, 1], port).into()).await {
                Ok(sb) => {
                    println!(
                        "Graph sandbox:   {} (bearer token {LOCAL_GRAPH_TOKEN})",
                        sb.graph_base_url()
                    );
                    println!(
                        "Partner Center:  {}/v1/invoices (bearer token {LOCAL_PARTNER_CENTER_TOKEN})",
                        sb.partner_center_base_url().as_str().trim_end_matches('/')
                    );
                    println!("Ctrl-C stops it.");
                    sb.run_until(shutdown_signal()).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("partner-billing-export sandbox: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Package {
            app_root,
            binary,
            output,
        } => {
            let binary = match binary.map(Ok).unwrap_or_else(std::env::current_exe) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("partner-billing-export package: locating this binary: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = partner_billing_export::package::PackageOptions {
                app_root,
                binary,
                output,
            };
            match partner_billing_export::package::build_package(&opts) {
                Ok(report) => {
                    for e in &report.entries {
                        println!("  {:o} {:>10} {}", e.mode, e.size, e.name);
                    }
                    println!(
                        "wrote {} ({} bytes, executable `{}`)",
                        report.output.display(),
                        report.zip_size,
                        report.executable
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("partner-billing-export package: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Local {
            out,
            app_root,
            seed,
            partitions,
            rows,
            polls,
            retry_after,
            manifest_shape,
            fail,
            timeout,
            http_port,
            settings,
            azurite,
        } => {
            init_tracing(false, "warn");
            let sandbox = SandboxConfig {
                seed,
                partitions,
                rows_per_partition: rows,
                polls_before_done: polls,
                retry_after_secs: retry_after,
                manifest_shape: match manifest_shape {
                    Shape::Inline => ManifestShape::Inline,
                    Shape::Link => ManifestShape::Link,
                    Shape::Alternate => ManifestShape::Alternate,
                },
                fail_invoices: fail,
                ..SandboxConfig::default()
            };
            let opts = LocalOptions {
                out_dir: out,
                app_root,
                sandbox,
                settings,
                timeout: Duration::from_secs(timeout),
                http_port,
                quiet: false,
                handler_program: None,
                azurite,
            };
            match run_local(opts).await {
                Ok(summary) => {
                    print_summary(&summary);
                    if summary.ok() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("partner-billing-export local: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

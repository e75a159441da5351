//! partner-billing-local: the product on one machine, no Azure account.
//! - `local`: the whole pipeline against the loopback emulators, with the real handler binary
//!   started exactly as the Functions host starts it.
//! - `sandbox`: only the Graph partner billing sandbox, to point a client at by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use partner_billing_export::auth::Audience;
use partner_billing_export::telemetry::{init_tracing, shutdown_signal};
use partner_billing_local::graph_sandbox::{GraphSandbox, ManifestShape, SandboxConfig};
use partner_billing_local::handler_binary;
use partner_billing_local::run::{print_summary, run_local, LocalOptions};
use partner_billing_local::tokens::local_token;

#[derive(Parser)]
#[command(
    name = "partner-billing-local",
    version,
    about = "partner-billing-export on one machine: the whole pipeline against loopback emulators"
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
    /// Run the whole pipeline locally against the built-in Graph sandbox and Azure stand-ins.
    Local {
        /// Output directory (partitions, _manifest.json per run, events.jsonl, handler.log, and
        /// functions-app/: the script root the local host ran).
        #[arg(long, default_value = "local-run")]
        out: PathBuf,
        /// Folder with host.json and functions/ (the built-in copies are used if it has none).
        #[arg(long, default_value = ".")]
        app_root: PathBuf,
        /// The custom handler binary to start. Default: the workspace's
        /// `partner-billing-export`, built by cargo when run through cargo.
        #[arg(long, conflicts_with = "package")]
        handler: Option<PathBuf>,
        /// Run a deployment zip (scripts/package.sh) as the host would: unpacked into a script
        /// root under --out, functions loaded from its layout, its own `handler` started.
        #[arg(long)]
        package: Option<PathBuf>,
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
        /// Make the export of this invoice id (or unbilled currency) end in a failed operation
        /// with `--fail-code` (default 5000, "No data available": the run completes without data).
        #[arg(long = "fail")]
        fail: Vec<String>,
        /// Graph error code of the operations `--fail` names; anything but 5000 fails the run.
        #[arg(long, default_value = "5000")]
        fail_code: String,
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
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))
}

async fn sandbox(cfg: SandboxConfig, port: u16) -> anyhow::Result<()> {
    let sb = GraphSandbox::start_on(cfg, ([127, 0, 0, 1], port).into()).await?;
    println!(
        "Graph sandbox:   {} (bearer token {})",
        sb.graph_base_url(),
        local_token(Audience::Graph)
    );
    println!(
        "Partner Center:  {}/v1/invoices (bearer token {})",
        sb.partner_center_base_url().as_str().trim_end_matches('/'),
        local_token(Audience::PartnerCenter)
    );
    println!("Ctrl-C stops it.");
    sb.run_until(shutdown_signal()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
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
            match sandbox(cfg, port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("partner-billing-local sandbox: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Local {
            out,
            app_root,
            handler,
            package,
            seed,
            partitions,
            rows,
            polls,
            retry_after,
            manifest_shape,
            fail,
            fail_code,
            timeout,
            http_port,
            settings,
            azurite,
        } => {
            init_tracing(false, "warn");
            let handler = match (&package, handler) {
                // The package brings its own handler; nothing to build.
                (Some(_), _) => Ok(PathBuf::new()),
                (None, Some(h)) => Ok(h),
                (None, None) => handler_binary::locate(),
            };
            let handler = match handler {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("partner-billing-local local: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
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
                fail_code,
                ..SandboxConfig::default()
            };
            let opts = LocalOptions {
                out_dir: out,
                app_root,
                package,
                sandbox,
                settings,
                timeout: Duration::from_secs(timeout),
                http_port,
                quiet: false,
                handler_program: handler,
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
                    eprintln!("partner-billing-local local: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

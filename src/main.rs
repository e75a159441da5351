//! partner-billing-export: the deployed binary.
//! - `serve`: the custom handler the Azure Functions host starts (host.json `arguments`).
//! - `export`: the same pipeline run from a laptop against Microsoft Graph, with progress
//!   (`partner_billing_export::cli`).
//!
//! The local emulators and the `local` command live in `crates/local`, packaging in `xtask`:
//! nothing of either links into this binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use functions_runtime::server;
use partner_billing_export::app::App;
use partner_billing_export::config::Config;
use partner_billing_export::functions;
use partner_billing_export::telemetry::{init_handler_tracing, shutdown_signal};

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

#[derive(Subcommand)]
enum Command {
    /// Run as the custom handler (what the Functions host starts); reads app settings from the environment.
    Serve,
    /// Run exports end to end from this machine (device sign-in with your app: --client-id), with progress;
    /// resumable. Exit codes: 0 all completed (or no data), 1 some failed, 2 usage or
    /// configuration error, 130 interrupted.
    Export(partner_billing_export::cli::ExportArgs),
    /// Not this binary's command: the local runner is the workspace's `cargo local`.
    #[command(hide = true)]
    Local {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        _args: Vec<String>,
    },
    /// Not this binary's command: the Graph sandbox is the workspace's `cargo sandbox`.
    #[command(hide = true)]
    Sandbox {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        _args: Vec<String>,
    },
}

/// The exit code of a usage error, as `export` uses it.
const USAGE_EXIT: u8 = 2;

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    config.check_deployment()?;
    // Info to stdout, warnings and errors to stderr: the host grades lines by stream.
    init_handler_tracing(config.json_logs, "info");
    let port = server::port_from_env().map_err(anyhow::Error::msg)?;
    let (listener, addr) = server::bind(port).await?;
    let app = App::from_config(config)?;
    let router = functions::router(&app);
    tracing::info!(%addr, functions = ?router.names(), "custom handler listening");
    server::serve(router, listener, shutdown_signal()).await;
    tracing::info!("custom handler stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Export(args) => {
            ExitCode::from(partner_billing_export::cli::export(args).await.code())
        }
        Command::Local { .. } => {
            eprintln!(
                "partner-billing-export: `local` is not a command of the handler; \
                 run the local pipeline with `cargo local` (see README.md)"
            );
            ExitCode::from(USAGE_EXIT)
        }
        Command::Sandbox { .. } => {
            eprintln!(
                "partner-billing-export: `sandbox` is not a command of the handler; \
                 run the Graph sandbox with `cargo sandbox` (see docs/development.md)"
            );
            ExitCode::from(USAGE_EXIT)
        }
        Command::Serve => match serve().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("partner-billing-export serve: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

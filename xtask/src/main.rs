//! Build tasks that do not belong in the deployed handler.
//! - `cargo xtask package`: the deployable Functions zip, laid out as the host's script root
//!   (host.json, `<Name>/function.json` per function and the handler binary as `handler`,
//!   mode 0755).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use xtask::package;

#[derive(Parser)]
#[command(name = "xtask", about = "partner-billing-export build tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the deployable zip: host.json, <Name>/function.json (from functions/<Name>/) and the
    /// binary as `handler`.
    Package {
        /// Folder with host.json and functions/.
        #[arg(long, default_value = ".")]
        app_root: PathBuf,
        /// The Linux release handler binary to ship (built by scripts/package.sh).
        #[arg(long)]
        binary: PathBuf,
        /// Where to write the zip.
        #[arg(long, default_value = "target/partner-billing-export.zip")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Package {
            app_root,
            binary,
            output,
        } => {
            let opts = package::PackageOptions {
                app_root,
                binary,
                output,
            };
            match package::build_package(&opts) {
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
                    eprintln!("xtask package: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! Stand-in for `partner-billing-export package` until the CLI subcommand is wired:
//! `cargo run --example package -- <app-root> <binary> <output.zip>`.

use std::path::PathBuf;

use partner_billing_export::package::{build_package, PackageOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [app_root, binary, output] = args.as_slice() else {
        anyhow::bail!("usage: package <app-root> <binary> <output.zip>");
    };
    let report = build_package(&PackageOptions {
        app_root: PathBuf::from(app_root),
        binary: PathBuf::from(binary),
        output: PathBuf::from(output),
    })?;
    for e in &report.entries {
        println!(
            "{:o} {:>10} {:>10} {}",
            e.mode, e.size, e.compressed_size, e.name
        );
    }
    println!("{} ({} bytes)", report.output.display(), report.zip_size);
    Ok(())
}

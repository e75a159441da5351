//! Finds the custom handler binary `local` starts, the way the Functions host would start the
//! deployed `handler`: a separate process, never this one.
//!
//! Run by cargo (`cargo local`, a `cargo run` alias) the workspace's `partner-billing-export`
//! binary is (re)built first, with the same profile as this binary, so a newcomer's
//! `cargo local` always runs the handler as the source stands. Elsewhere (an installed copy) the binary beside this one is
//! used. `--handler PATH` overrides both (for example the packaged, glibc-2.28 `handler`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The handler's package and binary name in the workspace.
pub const HANDLER_PACKAGE: &str = "partner-billing-export";

pub fn locate() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this binary")?;
    // `cargo run` sets CARGO for the program it runs; it has released the build lock by then.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile_dir = me.parent().context("this binary has no directory")?;
        return build_with_cargo(Path::new(&cargo), profile_dir);
    }
    let sibling = me.with_file_name(HANDLER_PACKAGE);
    if sibling.is_file() {
        return Ok(sibling);
    }
    bail!(
        "no handler binary: pass --handler PATH, or run through cargo (`cargo local`) \
         so the workspace's {HANDLER_PACKAGE} is built"
    )
}

/// Builds the workspace's handler with `cargo` in the profile whose output directory is
/// `profile_dir` (`target/debug` or `target/release`) and returns its path there. Tests of this
/// crate call it too: the handler is another package's binary, so cargo gives them no
/// `CARGO_BIN_EXE_` path for it.
pub fn build_with_cargo(cargo: &Path, profile_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--package",
        HANDLER_PACKAGE,
        "--bin",
        HANDLER_PACKAGE,
    ]);
    // Same profile as the caller: target/<profile>/.
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    if let Some(manifest) = option_env!("CARGO_MANIFEST_DIR") {
        cmd.arg("--manifest-path")
            .arg(Path::new(manifest).join("../../Cargo.toml"));
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {} to build the handler", cargo.display()))?;
    if !status.success() {
        bail!("building the handler ({HANDLER_PACKAGE}) failed: {status}");
    }
    let built = profile_dir.join(HANDLER_PACKAGE);
    if !built.is_file() {
        bail!("cargo built the handler but {} is missing", built.display());
    }
    Ok(built)
}

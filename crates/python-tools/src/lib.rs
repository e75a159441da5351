//! The pinned Python tools our tests and benchmarks use as independent judges of what we
//! write: DuckDB (reads our Parquet) and the official FOCUS validator. Each lives in a venv
//! under `target/`, made on first use by the script beside this crate's manifest, which holds
//! the pinned versions and a lock so parallel test binaries wait instead of racing pip.
//! Never linked into the deployed handler.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs the venv script `script` (beside the manifest) and returns the python it prints.
fn venv_python(script: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let what = format!("preparing the venv of {script}");
    PathBuf::from(stdout_of(Command::new("bash").arg(&path), &what).trim())
}

/// Runs `python -c code args…` (in `dir` when given) and returns what it printed; panics
/// with `what` and the script's stderr when it fails.
pub fn run(
    python: &Path,
    dir: Option<&Path>,
    code: &str,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    what: &str,
) -> String {
    let mut cmd = Command::new(python);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    stdout_of(cmd.args(["-c", code]).args(args), what)
}

/// What `cmd` printed; panics with `what` and its stderr when it fails.
fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// DuckDB, from PyPI.
pub mod duckdb {
    use super::*;

    /// The venv's python with the pinned duckdb.
    pub fn python() -> &'static Path {
        static PY: OnceLock<PathBuf> = OnceLock::new();
        PY.get_or_init(|| venv_python("duckdb-venv.sh"))
    }

    /// Runs one statement in DuckDB with `dir` as working directory; every value comes back
    /// as a string (or null), so decimals stay exact.
    pub fn rows(dir: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
        let code = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(sys.argv[1]).fetchall()
print(json.dumps([[None if v is None else str(v) for v in r] for r in rows]))
"#;
        let out = run(
            python(),
            Some(dir),
            code,
            [sql],
            &format!("DuckDB on {sql}"),
        );
        serde_json::from_str(&out).expect("DuckDB prints JSON")
    }
}

/// The official FOCUS validator (`focus-validator` on PyPI, Python 3.12 or newer).
pub mod focus_validator {
    use super::*;

    /// The venv's python with the pinned validator.
    pub fn python() -> &'static Path {
        static PY: OnceLock<PathBuf> = OnceLock::new();
        PY.get_or_init(|| venv_python("focus-validator-venv.sh"))
    }
}

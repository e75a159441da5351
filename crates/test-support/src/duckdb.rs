//! DuckDB (from PyPI, in the project-local `target/duckdb-venv`) as the independent reader of
//! the Parquet files we write: tests compare what it reads with the JSON source.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The venv's python with the pinned duckdb, created on first use by the same script the
/// converter's own tests and `scripts/test.sh` use (it holds the version and a lock).
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../billing-columnar/tests/support/duckdb-venv.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("running duckdb-venv.sh");
        assert!(
            out.status.success(),
            "preparing the DuckDB venv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Runs one statement in DuckDB with `dir` as working directory; every value comes back as
/// a string (or null), so decimals stay exact.
pub fn rows(dir: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let code = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(sys.argv[1]).fetchall()
print(json.dumps([[None if v is None else str(v) for v in r] for r in rows]))
"#;
    let out = Command::new(python())
        .current_dir(dir)
        .args(["-c", code, sql])
        .output()
        .expect("running DuckDB");
    assert!(
        out.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("DuckDB prints JSON")
}

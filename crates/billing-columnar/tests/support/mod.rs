//! Helpers shared by the integration tests: the DuckDB venv, running DuckDB queries, gzip,
//! and an exact decimal reading written independently of the crate's parser.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The venv's python with the pinned duckdb, created on first use (tests/support/duckdb-venv.sh
/// holds the version and the lock).
pub fn duckdb_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/duckdb-venv.sh");
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

/// Runs `sql` (one statement) in DuckDB and returns its rows as JSON arrays of strings
/// (values are cast to VARCHAR by the caller's SQL where exactness matters).
pub fn duckdb_rows(sql: &str) -> Vec<Vec<serde_json::Value>> {
    let code = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(sys.argv[1]).fetchall()
print(json.dumps([[None if v is None else str(v) for v in r] for r in rows]))
"#;
    let out = Command::new(duckdb_python())
        .args(["-c", code, sql])
        .output()
        .expect("running DuckDB");
    assert!(
        out.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("DuckDB output is JSON")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Fractional digits of the converter's decimals, as the tests expect them.
pub const SCALE: i32 = 12;

/// A decimal text (`-12.5`, `1.23e-6`, `12.500000000000000000`) as value × 10^SCALE, rounded
/// half to even, written independently of the crate so the comparison means something.
pub fn scaled(text: &str) -> i128 {
    let t = text.trim();
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().unwrap()),
        None => (t, 0),
    };
    let neg = mant.starts_with('-');
    let mant = mant.trim_start_matches('-');
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits: String = format!("{int}{frac}");
    let mut v: i128 = digits.parse().unwrap();
    let mut shift = SCALE - frac.len() as i32 + exp;
    while shift > 0 {
        v *= 10;
        shift -= 1;
    }
    if shift < 0 {
        let p = 10i128.pow(shift.unsigned_abs());
        let (q, r) = (v / p, v % p);
        v = if 2 * r > p || (2 * r == p && q % 2 == 1) {
            q + 1
        } else {
            q
        };
    }
    if neg {
        -v
    } else {
        v
    }
}

/// The value of a JSON amount as value × 10^SCALE: numbers and numeric strings; null and ""
/// are None.
pub fn json_amount(v: &serde_json::Value) -> Option<i128> {
    match v {
        serde_json::Value::Number(n) => Some(scaled(&n.to_string())),
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(scaled(s)),
        serde_json::Value::Null => None,
        other => panic!("not an amount: {other}"),
    }
}

/// A scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("billing-columnar")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

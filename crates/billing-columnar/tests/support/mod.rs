//! Helpers shared by the integration tests: running DuckDB queries, gzip,
//! and an exact decimal reading written independently of the crate's parser.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// The venv's python with the pinned duckdb (made on first use, `python-tools`).
pub fn duckdb_python() -> &'static Path {
    python_tools::duckdb::python()
}

/// Runs `sql` (one statement) in DuckDB and returns its rows as JSON arrays of strings
/// (values are cast to VARCHAR by the caller's SQL where exactness matters).
pub fn duckdb_rows(sql: &str) -> Vec<Vec<serde_json::Value>> {
    python_tools::duckdb::rows(Path::new("."), sql)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.map_or(serde_json::Value::Null, serde_json::Value::String))
                .collect()
        })
        .collect()
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

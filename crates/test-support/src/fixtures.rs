//! Payload fixtures: real-shaped host envelopes and Graph bodies under `tests/fixtures/`,
//! each file a documented shape (see `tests/fixtures/README.md`).

use std::path::PathBuf;

/// The fixtures folder.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture's text, by path under `tests/fixtures/`.
pub fn text(name: &str) -> String {
    let p = dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A fixture parsed as JSON.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&text(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

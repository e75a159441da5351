//! The official FOCUS validator (`focus-validator` on PyPI, pinned in
//! focus-validator-venv.sh beside this file) as a test helper: installs it, runs it on a FOCUS
//! Parquet file with Microsoft's applicability criteria, and judges its outcome. Shared by
//! billing-columnar's validator test and the pipeline's FinOps output test (`#[path]`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root, from the including package's manifest folder.
fn repo_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("crates/billing-columnar").is_dir() {
        dir.to_path_buf()
    } else {
        dir.join("../..")
    }
}

/// What Microsoft's platform supports, in the validator's terms. Left out: virtual
/// currencies, several sub-account or billing-account types in one dataset.
pub const CRITERIA: &[&str] = &[
    "ACCOUNT_NAMING_SUPPORTED",
    "AVAILABILITY_ZONE_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
    "CAPACITY_RESERVATION_SUPPORTED",
    "COMMITMENT_DISCOUNT_SUPPORTED",
    "MULTIPLE_PRICING_CATEGORIES_SUPPORTED",
    "NEGOTIATED_PRICING_SUPPORTED",
    "PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED",
    "PUBLIC_PRICE_LIST_SUPPORTED",
    "REGION_SUPPORTED",
    "RESOURCE_TYPE_ASSIGNMENT_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED",
    "TAGGING_SUPPORTED",
    "UNIT_PRICING_SUPPORTED",
    "USAGE_MEASUREMENT_SUPPORTED",
];

/// Rules whose check in focus-validator 2.2.1 contradicts the FOCUS 1.2 text it quotes, with
/// why; the test tolerates their failure only, and docs/focus.md lists them.
pub const VALIDATOR_DEFECTS: &[(&str, &str)] = &[
    (
        "CommitmentDiscountStatus-C-004-C",
        "FOCUS: not null when CommitmentDiscountId is not null and ChargeCategory is Usage. The \
         validator applies it where CommitmentDiscountId *is* null, the same rows on which \
         CommitmentDiscountStatus-C-003-C requires null: no file passes both.",
    ),
    (
        "CapacityReservationStatus-C-004-C",
        "FOCUS: not null when CapacityReservationId is not null and ChargeCategory is Usage. The \
         validator does not read the rule's condition and checks every row, including those \
         without a capacity reservation, where CapacityReservationStatus-C-003-C requires null.",
    ),
    (
        "EffectiveCost-C-005-C",
        "FOCUS: EffectiveCost is 0 for a Purchase \"intended to cover future eligible charges\" \
         (a commitment's prepayment). The validator checks every Purchase row, so a licence \
         or marketplace purchase, whose effective cost is what it bills, fails. Reservation \
         and savings-plan purchases have EffectiveCost 0.",
    ),
];

/// Composite rules that fail only because a defective rule above is one of their parts.
pub const DEFECT_PARENTS: &[&str] = &[
    "CommitmentDiscountStatus-C-000-C",
    "CommitmentDiscountStatus-C-002-C",
    "CapacityReservationStatus-C-000-C",
    "CapacityReservationStatus-C-002-C",
    "EffectiveCost-C-000-M",
];

/// The venv's python with the pinned validator, created on first use.
fn validator_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let script =
            repo_root().join("crates/billing-columnar/tests/support/focus-validator-venv.sh");
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

/// The folder holding the `focus_validator` package: the validator opens
/// `focus_validator/rules/currency_codes.csv` relative to the working directory.
fn site_packages() -> PathBuf {
    let out = Command::new(validator_python())
        .args([
            "-c",
            "import os, focus_validator; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))",
        ])
        .output()
        .expect("locating focus_validator");
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// One rule's outcome as the validator's console output gives it.
struct Outcome {
    status: String,
    /// The rest of the line: violations, reason, message.
    detail: String,
}

/// Runs the validator on `file`; the outcome of every rule and the console text.
fn validate(file: &Path) -> (BTreeMap<String, Outcome>, String) {
    let out = Command::new(validator_python())
        .current_dir(site_packages())
        .args(["-m", "focus_validator.main", "--data-file"])
        .arg(file)
        .args(["--validate-version", "1.2", "--block-download"])
        .args(["--output-type", "console", "--show-violations"])
        .args(["--applicability-criteria", &CRITERIA.join(",")])
        .output()
        .expect("running focus-validator");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() || text.contains("Total:"),
        "focus-validator did not run on {}: {}{}",
        file.display(),
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rules = BTreeMap::new();
    for line in text.lines() {
        // "❌ PricingUnit-C-003-O: FAIL  (violations=383, msg=…)"
        let Some((_, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((id, rest)) = rest.split_once(": ") else {
            continue;
        };
        let Some((status, detail)) = rest.split_once(' ') else {
            continue;
        };
        if id.contains(' ') || !matches!(status, "PASS" | "FAIL" | "SKIPPED") {
            continue;
        }
        let detail = detail.trim().to_string();
        rules.insert(
            id.to_string(),
            Outcome {
                status: status.to_string(),
                detail,
            },
        );
    }
    assert!(
        !rules.is_empty(),
        "no rule outcome in the validator's output:\n{text}"
    );
    (rules, text)
}

/// The validator's rule model: each rule's keyword (MUST, SHOULD, …) and, for each rule that
/// is a branch of an OR rule, the OR rules it belongs to.
struct Model {
    keyword: HashMap<String, String>,
    or_parents: HashMap<String, Vec<String>>,
}

fn model() -> Model {
    let path = site_packages().join("focus_validator/rules/model-1.2.0.1.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the validator's rule model")).unwrap();
    let mut m = Model {
        keyword: HashMap::new(),
        or_parents: HashMap::new(),
    };
    fn walk(v: &serde_json::Value, parent: &str, m: &mut Model) {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("CheckFunction").and_then(|f| f.as_str()) == Some("OR") {
                    for item in o["Items"].as_array().into_iter().flatten() {
                        if let Some(child) = item.get("ModelRuleId").and_then(|c| c.as_str()) {
                            let parents = m.or_parents.entry(child.to_string()).or_default();
                            parents.push(parent.to_string());
                        }
                    }
                }
                o.values().for_each(|v| walk(v, parent, m));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, parent, m)),
            _ => {}
        }
    }
    for (id, rule) in json["ModelRules"].as_object().unwrap() {
        let criteria = &rule["ValidationCriteria"];
        let keyword = criteria["Keyword"].as_str().unwrap_or_default();
        m.keyword.insert(id.clone(), keyword.to_string());
        walk(&criteria["Requirement"], id, &mut m);
    }
    m
}

/// What the validator says about one file, judged: the rules that fail (other than a branch
/// of an OR rule that passes and the validator's defects above), the MUST rules it skips with
/// its reason, and its console text.
pub struct Verdict {
    pub failing: Vec<String>,
    pub skipped_must: BTreeMap<String, String>,
    pub text: String,
}

pub fn check(file: &Path) -> Verdict {
    static MODEL: OnceLock<Model> = OnceLock::new();
    let model = MODEL.get_or_init(model);
    let (rules, text) = validate(file);
    let passes = |id: &str| rules.get(id).is_some_and(|o| o.status == "PASS");
    let tolerated =
        |id: &str| VALIDATOR_DEFECTS.iter().any(|(d, _)| *d == id) || DEFECT_PARENTS.contains(&id);
    let mut v = Verdict {
        failing: Vec::new(),
        skipped_must: BTreeMap::new(),
        text,
    };
    for (id, o) in &rules {
        let keyword = model.keyword.get(id).map(String::as_str).unwrap_or("");
        match o.status.as_str() {
            "FAIL" => {
                let branch_of_passing_or = model
                    .or_parents
                    .get(id)
                    .is_some_and(|ps| ps.iter().any(|p| passes(p)));
                if !branch_of_passing_or && !tolerated(id) {
                    v.failing.push(id.clone());
                }
            }
            "SKIPPED" if keyword.starts_with("MUST") => {
                v.skipped_must.insert(id.clone(), o.detail.clone());
            }
            _ => {}
        }
    }
    v
}

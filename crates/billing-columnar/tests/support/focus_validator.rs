//! The official FOCUS validator (`focus-validator` on PyPI, pinned in
//! crates/python-tools/focus-validator-venv.sh) as a test helper: installs it, derives from its
//! rule model one in which only the rules whose Condition contradicts the FOCUS text they
//! quote are corrected (CORRECTIONS), runs its engine on a FOCUS Parquet file with that model
//! and Microsoft's applicability criteria, and judges the outcome. Shared by
//! billing-columnar's validator test and the pipeline's FinOps output test (`#[path]`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What Microsoft's platform supports, in the validator's terms, as far as the dataset can
/// show it. Left out: virtual currencies, several sub-account or billing-account types in one
/// dataset, and capacity reservations. Partner Center's billing exports have no field that
/// names a capacity reservation or tells its used from its unused portion, so every
/// CapacityReservationId and CapacityReservationStatus the converter writes is null. Declaring
/// CAPACITY_RESERVATION_SUPPORTED would claim that no charge of the dataset relates to a
/// capacity reservation, which the exports cannot tell; undeclared, the validator skips the
/// capacity-reservation rules and docs/focus.md lists them with this reason. (Declared, they
/// would also meet a model defect: CapacityReservationStatus-C-003-C and -C-004-C write their
/// Condition as `{"AND": …}` without `CheckFunction`, which the engine reads as no Condition,
/// focus_validator/config_objects/focus_to_duckdb_converter.py lines 6232-6234.)
pub const CRITERIA: &[&str] = &[
    "ACCOUNT_NAMING_SUPPORTED",
    "AVAILABILITY_ZONE_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
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

/// The validator's rule model file inside its package, the one the derived model replaces.
const MODEL_FILE: &str = "model-1.2.0.1.json";

/// A rule of the shipped model whose Condition contradicts the FOCUS 1.2 text the rule quotes
/// in its `MustSatisfy`, and the Condition that text states.
pub struct Correction {
    pub id: &'static str,
    /// The rule's `MustSatisfy` in the shipped model: the correction is written from it.
    pub must_satisfy: &'static str,
    /// The shipped Condition (JSON). The derived model is built only while the shipped model
    /// still has it, so an upstream fix shows up as a failing assertion, not as a silent
    /// double correction.
    pub shipped: &'static str,
    /// The Condition the text states (JSON), in the model's own vocabulary.
    pub corrected: &'static str,
    /// Why, for docs/focus.md.
    pub why: &'static str,
}

/// The corrections the derived model makes: the Condition of these rules, nothing else.
pub const CORRECTIONS: &[Correction] = &[
    Correction {
        id: "CommitmentDiscountStatus-C-004-C",
        must_satisfy: "CommitmentDiscountStatus MUST NOT be null when CommitmentDiscountId is not \
                       null and Charge Category is \"Usage\".",
        shipped: r#"{"CheckFunction": "CheckValue", "ColumnName": "CommitmentDiscountId",
                     "Value": null}"#,
        corrected: r#"{"CheckFunction": "AND", "Items": [
            {"CheckFunction": "CheckNotValue", "ColumnName": "CommitmentDiscountId", "Value": null},
            {"CheckFunction": "CheckValue", "ColumnName": "ChargeCategory", "Value": "Usage"}]}"#,
        why: "The shipped Condition is \"CommitmentDiscountId is null\": it is inverted and \
              leaves out ChargeCategory, so the rule requires a status on exactly the rows where \
              `CommitmentDiscountStatus-C-003-C` (\"MUST be null when CommitmentDiscountId is \
              null\") requires null, and no dataset with a row outside a commitment passes both. \
              The derived model's Condition is the text's: CommitmentDiscountId is not null and \
              ChargeCategory is \"Usage\".",
    },
    Correction {
        id: "EffectiveCost-C-005-C",
        must_satisfy: "EffectiveCost MUST be 0 when ChargeCategory is \"Purchase\" and the \
                       purchase is intended to cover future eligible charges.",
        shipped: r#"{"CheckFunction": "CheckValue", "ColumnName": "ChargeCategory",
                     "Value": "Purchase"}"#,
        corrected: r#"{"CheckFunction": "AND", "Items": [
            {"CheckFunction": "CheckValue", "ColumnName": "ChargeCategory", "Value": "Purchase"},
            {"CheckFunction": "CheckNotValue", "ColumnName": "CommitmentDiscountId", "Value": null}]}"#,
        why: "The shipped Condition is \"ChargeCategory is Purchase\" alone: it drops \"the \
              purchase is intended to cover future eligible charges\" and so requires 0 of \
              every purchase, including a licence or marketplace purchase, whose effective cost \
              is what it bills. The purchases that cover \
              future eligible charges are the commitments' (reservations, savings plans), the \
              Purchase rows that carry a CommitmentDiscountId (CommitmentDiscountId-C-005-C \
              requires it on them); the derived model's Condition is ChargeCategory \
              \"Purchase\" and CommitmentDiscountId not null. A prepayment that is not a \
              commitment discount would escape this check.",
    },
];

/// The venv's python with the pinned validator, created on first use (`python-tools`).
fn validator_python() -> &'static Path {
    python_tools::focus_validator::python()
}

/// The folder holding the `focus_validator` package: the validator opens
/// `focus_validator/rules/currency_codes.csv` relative to the working directory.
fn site_packages() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let code = "import os, focus_validator; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))";
        let out = python_tools::run(validator_python(), None, code, None::<&str>, "locating focus_validator");
        PathBuf::from(out.trim())
    })
}

/// The rule model the validator ships, as published with the package.
fn shipped_model_path() -> PathBuf {
    site_packages()
        .join("focus_validator/rules")
        .join(MODEL_FILE)
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn condition_of<'a>(model: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    let criteria = model["ModelRules"]
        .get(id)
        .unwrap_or_else(|| panic!("{id} is not in the validator's rule model"))
        .get("ValidationCriteria")
        .unwrap_or_else(|| panic!("{id} has no ValidationCriteria"));
    &criteria["Condition"]
}

/// The folder of the derived rule model: the shipped model with CORRECTIONS applied, written
/// on first use from the installed package (never from a copy kept in the repository).
///
/// `--rule-set-path` names a folder, not a file: focus-validator 2.2.1 lists it for
/// `model-<version>.json` and loads the highest version that matches `--validate-version`
/// (focus_validator/rules/spec_rules.py, lines 185-195 and 166-170), so the derived model is
/// the folder's only file and keeps the shipped file's name.
fn derived_rules_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shipped_path = shipped_model_path();
        let shipped = read_json(&shipped_path);
        let mut patch = serde_json::Map::new();
        for c in CORRECTIONS {
            let defective: serde_json::Value = serde_json::from_str(c.shipped).unwrap();
            let shipped_condition = condition_of(&shipped, c.id);
            let criteria = &shipped["ModelRules"][c.id]["ValidationCriteria"];
            assert_eq!(
                criteria["MustSatisfy"], c.must_satisfy,
                "{}: the shipped model quotes another text; review the correction",
                c.id
            );
            assert_eq!(
                *shipped_condition, defective,
                "{}: the shipped model no longer has the defective Condition, so the \
                 correction is no longer needed: remove it from CORRECTIONS",
                c.id
            );
            let corrected: serde_json::Value = serde_json::from_str(c.corrected).unwrap();
            patch.insert(c.id.to_string(), corrected);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("focus-validator-rules");
        std::fs::create_dir_all(&dir).unwrap();
        // Python's json keeps the rules in the shipped order (serde_json here would sort
        // them); the rename makes the file appear whole to parallel test binaries.
        let tmp = dir.join(format!(".derived-{}", std::process::id()));
        let code = r#"
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    model = json.load(f)
for rule_id, condition in json.loads(sys.argv[3]).items():
    model["ModelRules"][rule_id]["ValidationCriteria"]["Condition"] = condition
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(model, f, indent=2)
"#;
        let patch = serde_json::Value::Object(patch).to_string();
        python_tools::run(
            validator_python(),
            None,
            code,
            [shipped_path.as_os_str(), tmp.as_os_str(), patch.as_ref()],
            "writing the derived rule model",
        );
        // Nothing but the corrected Conditions differs from the shipped model.
        let mut restored = read_json(&tmp);
        for c in CORRECTIONS {
            let criteria = &mut restored["ModelRules"][c.id]["ValidationCriteria"];
            assert_eq!(
                criteria["Condition"],
                serde_json::from_str::<serde_json::Value>(c.corrected).unwrap()
            );
            criteria["Condition"] = serde_json::from_str(c.shipped).unwrap();
        }
        assert!(
            restored == shipped,
            "the derived model differs from the shipped one beyond the corrected Conditions"
        );
        std::fs::rename(&tmp, dir.join(MODEL_FILE)).unwrap();
        dir
    })
}

/// One rule's outcome as the validator's console output gives it.
pub struct Outcome {
    pub status: String,
    /// The rest of the line: violations, reason, message.
    pub detail: String,
}

impl Outcome {
    /// The status, with the violation count of a failure.
    pub fn summary(&self) -> String {
        let violations = self
            .detail
            .split_once("violations=")
            .and_then(|(_, rest)| rest.split([',', ')']).next());
        match violations {
            Some(n) if self.status == "FAIL" => format!("FAIL ({n} violations)"),
            _ => self.status.clone(),
        }
    }
}

/// Runs the validator on `file` with the rule model in `rules_dir` (None: the shipped one);
/// the outcome of every rule and the console text.
fn validate(file: &Path, rules_dir: Option<&Path>) -> (BTreeMap<String, Outcome>, String) {
    let mut cmd = Command::new(validator_python());
    cmd.current_dir(site_packages())
        .args(["-m", "focus_validator.main", "--data-file"])
        .arg(file)
        .args(["--validate-version", "1.2", "--block-download"])
        .args(["--output-type", "console", "--show-violations"])
        .args(["--applicability-criteria", &CRITERIA.join(",")]);
    if let Some(dir) = rules_dir {
        cmd.arg("--rule-set-path").arg(dir);
    }
    let out = cmd.output().expect("running focus-validator");
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

/// The validator's rule model: each rule's keyword (MUST, SHOULD, …) and column, for each rule
/// that is a branch of an OR rule the OR rules it belongs to, and for each rule the rules
/// whose outcome depends on it (as a part or a dependency).
struct Model {
    keyword: HashMap<String, String>,
    reference: HashMap<String, String>,
    or_parents: HashMap<String, Vec<String>>,
    dependents: HashMap<String, Vec<String>>,
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let json = read_json(&shipped_model_path());
        let mut m = Model {
            keyword: HashMap::new(),
            reference: HashMap::new(),
            or_parents: HashMap::new(),
            dependents: HashMap::new(),
        };
        fn walk(v: &serde_json::Value, parent: &str, m: &mut Model) {
            match v {
                serde_json::Value::Object(o) => {
                    if let Some(child) = o.get("ModelRuleId").and_then(|c| c.as_str()) {
                        let dependents = m.dependents.entry(child.to_string()).or_default();
                        dependents.push(parent.to_string());
                    }
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
            let reference = rule["Reference"].as_str().unwrap_or_default();
            m.reference.insert(id.clone(), reference.to_string());
            walk(&criteria["Requirement"], id, &mut m);
            for dep in criteria["Dependencies"].as_array().into_iter().flatten() {
                if let Some(dep) = dep.as_str() {
                    m.dependents
                        .entry(dep.to_string())
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        m
    })
}

/// The column or attribute a rule is about (the model's `Reference`).
pub fn reference(id: &str) -> &'static str {
    model().reference.get(id).map(String::as_str).unwrap_or("")
}

/// The corrected rules and every rule whose outcome depends on one of them, transitively:
/// the only rules whose verdict the derived model may change.
pub fn affected_by_corrections() -> BTreeSet<String> {
    let m = model();
    let mut affected = BTreeSet::new();
    let mut todo: Vec<String> = CORRECTIONS.iter().map(|c| c.id.to_string()).collect();
    while let Some(id) = todo.pop() {
        if affected.insert(id.clone()) {
            todo.extend(m.dependents.get(&id).into_iter().flatten().cloned());
        }
    }
    affected
}

/// What the validator says about one file, judged: the rules that fail (other than a branch
/// of an OR rule that passes), the MUST rules it skips with its reason, every rule's outcome
/// and its console text.
pub struct Verdict {
    pub failing: Vec<String>,
    pub skipped_must: BTreeMap<String, String>,
    pub outcomes: BTreeMap<String, Outcome>,
    pub text: String,
}

/// The verdict of the validator's engine with the derived rule model (CORRECTIONS applied).
pub fn check(file: &Path) -> Verdict {
    judge(validate(file, Some(derived_rules_dir())))
}

/// The verdict with the rule model as shipped, to show what the corrections change.
pub fn check_with_shipped_model(file: &Path) -> Verdict {
    judge(validate(file, None))
}

fn judge((outcomes, text): (BTreeMap<String, Outcome>, String)) -> Verdict {
    let model = model();
    let passes = |id: &str| outcomes.get(id).is_some_and(|o| o.status == "PASS");
    let mut failing = Vec::new();
    let mut skipped_must = BTreeMap::new();
    for (id, o) in &outcomes {
        let keyword = model.keyword.get(id).map(String::as_str).unwrap_or("");
        match o.status.as_str() {
            "FAIL" => {
                let branch_of_passing_or = model
                    .or_parents
                    .get(id)
                    .is_some_and(|ps| ps.iter().any(|p| passes(p)));
                if !branch_of_passing_or {
                    failing.push(id.clone());
                }
            }
            "SKIPPED" if keyword.starts_with("MUST") => {
                skipped_must.insert(id.clone(), o.detail.clone());
            }
            _ => {}
        }
    }
    Verdict {
        failing,
        skipped_must,
        outcomes,
        text,
    }
}

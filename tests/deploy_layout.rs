//! Deployment layout checks: the package, function.json vs CATALOG, settings referenced by the
//! host files, and the app settings in infra/ vs src/settings.rs.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use functions_runtime::TriggerBinding as Trigger;
use partner_billing_export::functions::CATALOG;
use partner_billing_export::settings::{self, Scope, SETTINGS};
use serde_json::Value;
use xtask::package::{build_package, default_executable_path, PackageOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn function_dirs() -> BTreeSet<String> {
    fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect()
}

#[test]
fn package_holds_exactly_the_app() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_partner-billing-export"));
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out").join("app.zip");
    let opts = PackageOptions {
        app_root: root(),
        binary: binary.clone(),
        output: output.clone(),
    };
    let report = build_package(&opts).unwrap();
    assert_eq!(report.output, output);
    assert_eq!(report.zip_size, fs::metadata(&output).unwrap().len());

    let host_json = fs::read(root().join("host.json")).unwrap();
    assert_eq!(default_executable_path(&host_json).unwrap(), "handler");
    assert_eq!(report.executable, "handler");

    // The zip is the host's script root: one `<Name>/function.json` per function beside
    // host.json (the host indexes only direct subfolders), nothing under `functions/`.
    let mut expected: Vec<String> = function_dirs()
        .into_iter()
        .map(|name| format!("{name}/function.json"))
        .collect();
    expected.push("handler".into());
    expected.push("host.json".into());
    expected.sort();

    let mut archive = zip::ZipArchive::new(fs::File::open(&output).unwrap()).unwrap();
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().into_owned())
        .collect();
    assert_eq!(names, expected, "entries (sorted, nothing else)");
    assert_eq!(
        report
            .entries
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>(),
        expected
    );

    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mode = entry.unix_mode().expect("unix mode recorded") & 0o7777;
        if name == "handler" {
            assert_eq!(mode, 0o755, "handler must be executable");
            assert!(
                data == fs::read(&binary).unwrap(),
                "handler differs from the binary"
            );
        } else {
            assert_eq!(mode, 0o644, "{name}");
            // `<Name>/function.json` in the zip is `functions/<Name>/function.json` here.
            let source = if name == "host.json" {
                root().join(&name)
            } else {
                root().join("functions").join(&name)
            };
            assert_eq!(data, fs::read(&source).unwrap(), "{name}");
        }
    }

    // Deterministic: a second build gives the same bytes.
    let again = dir.path().join("again.zip");
    build_package(&PackageOptions {
        output: again.clone(),
        ..opts
    })
    .unwrap();
    assert!(
        fs::read(&output).unwrap() == fs::read(&again).unwrap(),
        "zip not reproducible"
    );
}

#[test]
fn package_rejects_a_non_elf_binary() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("handler.exe");
    fs::write(&fake, b"MZ not linux").unwrap();
    let err = build_package(&PackageOptions {
        app_root: root(),
        binary: fake,
        output: dir.path().join("x.zip"),
    })
    .unwrap_err();
    assert!(err.to_string().contains("ELF"), "{err:#}");
    assert!(!dir.path().join("x.zip").exists());
}

#[test]
fn function_json_matches_catalog() {
    let dirs = function_dirs();
    let catalog: BTreeSet<String> = CATALOG.iter().map(|f| f.name.to_owned()).collect();
    assert_eq!(
        dirs, catalog,
        "function folders vs CATALOG (no extra, none missing)"
    );

    for spec in CATALOG {
        let json = read_json(
            &root()
                .join("functions")
                .join(spec.name)
                .join("function.json"),
        );
        let bindings = json["bindings"].as_array().expect("bindings array");
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .collect();
        assert_eq!(triggers.len(), 1, "{}: exactly one trigger", spec.name);
        let t = triggers[0];
        assert_eq!(t["direction"], "in", "{}", spec.name);
        assert_eq!(t["name"], spec.binding, "{}: binding name", spec.name);
        match spec.trigger {
            Trigger::Timer { schedule } => {
                assert_eq!(t["type"], spec.trigger.binding_type(), "{}", spec.name);
                assert_eq!(t["schedule"], schedule, "{}", spec.name);
            }
            Trigger::Http {
                route,
                methods,
                output,
            } => {
                assert_eq!(t["type"], "httpTrigger", "{}", spec.name);
                assert_eq!(t["route"], route, "{}", spec.name);
                let got: Vec<&str> = t["methods"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect();
                assert_eq!(got, methods, "{}", spec.name);
                assert!(
                    bindings.iter().any(|b| b["type"] == "http"
                        && b["direction"] == "out"
                        && b["name"] == output),
                    "{}: http output binding",
                    spec.name
                );
            }
            Trigger::ServiceBusQueue { queue, connection } => {
                assert_eq!(t["type"], "serviceBusTrigger", "{}", spec.name);
                assert_eq!(t["queueName"], queue, "{}", spec.name);
                assert_eq!(t["connection"], connection, "{}", spec.name);
            }
        }
    }
}

/// `%NAME%` references in a string.
fn percent_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            refs.push(name.to_owned());
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    refs
}

#[test]
fn referenced_settings_are_known() {
    let mut files = vec![root().join("host.json")];
    files.extend(
        function_dirs()
            .iter()
            .map(|d| root().join("functions").join(d).join("function.json")),
    );
    let mut seen = 0;
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for name in percent_refs(&text) {
            seen += 1;
            assert!(
                settings::find(&name).is_some(),
                "{}: %{name}% is not in settings::SETTINGS",
                file.display()
            );
        }
    }
    assert!(seen > 0, "expected at least %BILLED_SCHEDULE%");
}

/// App setting names declared in the Bicep files, between `// app-settings:begin` and
/// `// app-settings:end` markers: object keys of the form `NAME: value`.
fn bicep_app_settings() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = vec![root().join("infra/main.bicep")];
    for e in fs::read_dir(root().join("infra/modules")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "bicep") {
            files.push(p);
        }
    }
    let mut blocks = 0;
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let mut inside = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("// app-settings:begin") {
                inside = true;
                blocks += 1;
                continue;
            }
            if t.starts_with("// app-settings:end") {
                inside = false;
                continue;
            }
            if !inside || t.starts_with("//") {
                continue;
            }
            if let Some((key, _)) = t.split_once(':') {
                let key = key.trim();
                if !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && key.chars().next().unwrap().is_ascii_uppercase()
                    && !key.starts_with("var ")
                {
                    names.insert(key.to_owned());
                }
            }
        }
        assert!(
            !inside,
            "{}: app-settings:begin without end",
            file.display()
        );
    }
    assert!(
        blocks >= 2,
        "expected app-settings blocks in main.bicep and functionapp.bicep"
    );
    names
}

/// Settings that only make sense off Azure and so are absent from infra/ on purpose.
const LOCAL_ONLY: &[&str] = &[
    settings::SERVICEBUS_ENDPOINT, // points the REST client at the local stand-in
    settings::DESTINATION_DIRECTORY, // DESTINATION_KIND=filesystem only
    settings::CUSTOM_HANDLER_PORT, // set by the Functions host itself
    // Keyed alternatives to managed identity: the keyless deployment must never set them.
    settings::SERVICEBUS_CONNECTION_STRING,
    settings::EVENTGRID_TOPIC_KEY,
    settings::DESTINATION_SAS,
    // The template passes the certificate as a Key Vault reference (GRAPH_CLIENT_CERTIFICATE);
    // a PEM file path is for machines that have one (a laptop, a container).
    settings::GRAPH_CLIENT_CERTIFICATE_PATH,
    // The same for the partner list: in Azure it is the PARTNERS setting.
    settings::PARTNERS_FILE,
];

/// Names the Functions platform reads (not our code).
const HOST_PREFIXES: &[&str] = &[
    "AzureWebJobsStorage__",
    "ServiceBusConnection__",
    "APPLICATIONINSIGHTS_",
    "FUNCTIONS_",
    "WEBSITE_",
];

#[test]
fn infra_app_settings_agree_with_settings_table() {
    let bicep = bicep_app_settings();

    let mut required: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| {
            s.scope == Scope::Handler && s.default.is_none() && !LOCAL_ONLY.contains(&s.name)
        })
        .map(|s| s.name)
        .collect();
    required.push(settings::BILLED_SCHEDULE);
    required.push(settings::UNBILLED_SCHEDULE);
    // function.json reads it through %WATCHDOG_SCHEDULE%: the host cannot index the function without it.
    required.push(settings::WATCHDOG_SCHEDULE);
    for name in required {
        assert!(
            bicep.contains(name),
            "{name} (required in Azure) is not set in infra/"
        );
    }
    // The deployment pins these deliberately rather than relying on defaults.
    for name in [
        settings::DESTINATION_KIND,
        settings::AZURE_CREDENTIAL_KIND,
        settings::GRAPH_CREDENTIAL_KIND,
        settings::DESTINATION_ACCOUNT_URL,
    ] {
        assert!(bicep.contains(name), "{name} missing from infra/");
    }

    for name in &bicep {
        let known =
            settings::find(name).is_some() || HOST_PREFIXES.iter().any(|p| name.starts_with(p));
        assert!(
            known,
            "infra/ sets {name}, which is neither in settings::SETTINGS nor a host setting"
        );
    }
    for name in LOCAL_ONLY {
        assert!(
            !bicep.contains(*name),
            "{name} is local-only and must not be set in Azure"
        );
    }
}

#[test]
fn bicep_queue_names_match_catalog() {
    let main = fs::read_to_string(root().join("infra/main.bicep")).unwrap();
    for spec in CATALOG {
        if let Trigger::ServiceBusQueue { queue, .. } = spec.trigger {
            assert!(
                main.contains(&format!("'{queue}'")),
                "queue {queue} not declared in infra/main.bicep"
            );
        }
    }
}

/// A Graph outage at a start timer must not skip the day: StartBilledExports and
/// StartUnbilledExports fail the invocation when a start could not reach Graph, and the host
/// retries it (already started exports are duplicates then, hence no-ops). Timer triggers
/// support retry policies.
#[test]
fn start_exports_has_a_retry_policy() {
    for name in ["StartBilledExports", "StartUnbilledExports"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("functions")
            .join(name)
            .join("function.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let retry = &v["retry"];
        assert!(
            matches!(
                retry["strategy"].as_str(),
                Some("exponentialBackoff" | "fixedDelay")
            ),
            "{name}: {retry}"
        );
        assert!(
            retry["maxRetryCount"].as_i64().unwrap_or(0) > 0,
            "{name}: {retry}"
        );
    }
}

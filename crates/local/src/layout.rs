//! The Functions app as the host sees it: a *script root* holding `host.json`, one
//! `<Name>/function.json` per function and the handler (see [`crate::script_root`] for how
//! `local` gets one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    pub arguments: Vec<String>,
    /// `customHandler.description.workingDirectory` as written (empty: the script root).
    pub working_directory: String,
    pub route_prefix: String,
    pub max_concurrent_calls: usize,
    pub function_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerDef {
    Timer {
        schedule: String,
        use_monitor: bool,
    },
    Http {
        route: String,
        methods: Vec<String>,
        auth_level: String,
        output: String,
    },
    ServiceBusQueue {
        queue: String,
        connection: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    /// The trigger binding's `name`: its key in `Data`.
    pub binding: String,
    pub trigger: TriggerDef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppLayout {
    /// The folder it was loaded from (host.json's folder).
    pub script_root: PathBuf,
    pub host: HostSettings,
    /// Sorted by name.
    pub functions: Vec<FunctionDef>,
}

/// `%NAME%` → the setting's value (app settings are resolved by the host, not the handler).
pub fn resolve_setting(
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    if let Some(name) = raw.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        lookup(name).with_context(|| format!("app setting {name} (referenced as {raw}) is not set"))
    } else {
        Ok(raw.to_string())
    }
}

/// `hh:mm:ss` TimeSpan.
fn timespan(s: &str) -> Option<Duration> {
    let mut it = s.split(':');
    let (h, m, sec) = (
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<u64>().ok()?,
        it.next()?,
    );
    let sec: f64 = sec.parse().ok()?;
    Some(Duration::from_secs(h * 3600 + m * 60) + Duration::from_secs_f64(sec))
}

impl AppLayout {
    /// Loads the app in `script_root` as the Functions host indexes it: host.json there, and
    /// a function for each *direct* subfolder that holds its own function.json. Anything
    /// deeper (`functions/X/function.json`, `A/B/function.json`) is not a function: the host
    /// enumerates `Directory.EnumerateDirectories(ScriptPath)` and skips a folder without a
    /// function.json (Azure/azure-functions-host,
    /// `src/WebJobs.Script/Host/HostFunctionMetadataProvider.cs`, `ReadFunctionsMetadata` and
    /// `Utility.TryReadFunctionConfig`; Microsoft Learn, "Azure Functions custom handlers",
    /// *Application structure*).
    pub fn load(
        script_root: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let host_path = script_root.join("host.json");
        let host = std::fs::read_to_string(&host_path).with_context(|| {
            format!(
                "reading {} (a script root holds host.json)",
                host_path.display()
            )
        })?;
        let host = parse_host(&host).with_context(|| format!("in {}", host_path.display()))?;
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(script_root)
            .with_context(|| format!("reading {}", script_root.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_dir() && entry.path().join("function.json").is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        let mut functions = Vec::new();
        for name in names {
            let p = script_root.join(&name).join("function.json");
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            functions.push(
                parse_function(&name, &text, lookup)
                    .with_context(|| format!("in {}", p.display()))?,
            );
        }
        Ok(Self {
            script_root: script_root.to_path_buf(),
            host,
            functions,
        })
    }

    /// The handler as the host starts it: `defaultExecutablePath` against the script root
    /// when relative (`HttpWorkerDescription.ApplyDefaultsAndValidate`).
    pub fn executable_path(&self) -> PathBuf {
        self.script_root.join(&self.host.executable)
    }

    /// The handler's working directory: the script root, or `workingDirectory` against it
    /// (`HttpWorkerOptionsSetup.ConfigureWorkerDescription`).
    pub fn working_dir(&self) -> PathBuf {
        if self.host.working_directory.is_empty() {
            self.script_root.clone()
        } else {
            self.script_root.join(&self.host.working_directory)
        }
    }

    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }
}

fn parse_host(text: &str) -> anyhow::Result<HostSettings> {
    let v: Value = serde_json::from_str(text).context("host.json is not JSON")?;
    if v.get("version").and_then(Value::as_str) != Some("2.0") {
        bail!("host.json: version must be \"2.0\"");
    }
    let desc = v
        .pointer("/customHandler/description")
        .context("host.json: customHandler.description is required for a custom handler")?;
    let executable = desc
        .get("defaultExecutablePath")
        .and_then(Value::as_str)
        .context("host.json: customHandler.description.defaultExecutablePath is required")?
        .to_string();
    let arguments = functions_runtime::codec::string_array(desc.get("arguments"));
    let working_directory = desc
        .get("workingDirectory")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(HostSettings {
        executable,
        arguments,
        working_directory,
        route_prefix: v
            .pointer("/extensions/http/routePrefix")
            .and_then(Value::as_str)
            .unwrap_or("api")
            .to_string(),
        max_concurrent_calls: v
            .pointer("/extensions/serviceBus/maxConcurrentCalls")
            .and_then(Value::as_u64)
            .unwrap_or(16)
            .clamp(1, 64) as usize,
        function_timeout: v
            .get("functionTimeout")
            .and_then(Value::as_str)
            .and_then(timespan)
            .unwrap_or(Duration::from_secs(300)),
    })
}

fn parse_function(
    name: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<FunctionDef> {
    let v: Value = serde_json::from_str(text).context("function.json is not JSON")?;
    let bindings = v
        .get("bindings")
        .and_then(Value::as_array)
        .context("bindings array is required")?;
    let s = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let triggers: Vec<&Value> = bindings
        .iter()
        .filter(|b| s(b, "type").is_some_and(|t| t.ends_with("Trigger")))
        .collect();
    let [trigger] = triggers.as_slice() else {
        bail!(
            "a function needs exactly one trigger binding, found {}",
            triggers.len()
        );
    };
    let binding = s(trigger, "name").context("trigger binding has no name")?;
    let kind = s(trigger, "type").unwrap_or_default();
    let trigger = match kind.as_str() {
        "timerTrigger" => {
            let raw = s(trigger, "schedule").context("timerTrigger needs a schedule")?;
            let schedule = resolve_setting(&raw, lookup)?;
            schedule
                .parse::<super::ncrontab::Schedule>()
                .map_err(|e| anyhow::anyhow!("schedule {e}"))?;
            TriggerDef::Timer {
                schedule,
                use_monitor: trigger
                    .get("useMonitor")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            }
        }
        "httpTrigger" => TriggerDef::Http {
            route: s(trigger, "route").unwrap_or_else(|| name.to_string()),
            methods: trigger
                .get("methods")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|m| m.to_ascii_uppercase())
                        .collect()
                })
                .unwrap_or_else(|| vec!["GET".into(), "POST".into()]),
            auth_level: s(trigger, "authLevel").unwrap_or_else(|| "function".into()),
            output: bindings
                .iter()
                .find(|b| {
                    s(b, "type").as_deref() == Some("http")
                        && s(b, "direction").as_deref() == Some("out")
                })
                .and_then(|b| s(b, "name"))
                .context("httpTrigger needs an http output binding")?,
        },
        "serviceBusTrigger" => TriggerDef::ServiceBusQueue {
            queue: resolve_setting(
                &s(trigger, "queueName").context("serviceBusTrigger needs queueName")?,
                lookup,
            )?,
            connection: s(trigger, "connection").unwrap_or_default(),
        },
        other => bail!("trigger type {other:?} is not emulated locally"),
    };
    Ok(FunctionDef {
        name: name.to_string(),
        binding,
        trigger,
    })
}

/// Matches a request path (below the route prefix) against a route template such as
/// `exports/{runId?}` or `orders/{id:int}`; returns the route parameters.
pub fn match_route(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let tsegs: Vec<&str> = template
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let psegs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut params = Vec::new();
    for (i, t) in tsegs.iter().enumerate() {
        let p = psegs.get(i);
        if let Some(inner) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            let optional = inner.ends_with('?');
            let inner = inner.trim_end_matches('?');
            let (name, constraint) = inner.split_once(':').unwrap_or((inner, ""));
            match p {
                Some(v) => {
                    if constraint == "int" && v.parse::<i64>().is_err() {
                        return None;
                    }
                    params.push((name.to_string(), (*v).to_string()));
                }
                None if optional => {}
                None => return None,
            }
        } else if p.is_none_or(|p| !p.eq_ignore_ascii_case(t)) {
            return None;
        }
    }
    (psegs.len() <= tsegs.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(n: &str) -> Option<String> {
        partner_billing_export::settings::find(n)
            .and_then(|s| s.default)
            .map(str::to_string)
    }

    #[test]
    fn embedded_layout_matches_the_function_catalog_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = crate::script_root::stage_embedded(&dir.path().join("embedded")).unwrap();
        let l = AppLayout::load(&embedded, &defaults).unwrap();
        assert_eq!(l.host.executable, "handler");
        assert_eq!(l.host.arguments, vec!["serve"]);
        assert_eq!(l.host.route_prefix, "api");
        assert_eq!(l.host.function_timeout, Duration::from_secs(600));
        assert_eq!(l.working_dir(), embedded);
        assert_eq!(l.executable_path(), embedded.join("handler"));
        assert_eq!(
            l.functions.len(),
            partner_billing_export::functions::CATALOG.len()
        );
        for spec in partner_billing_export::functions::CATALOG {
            let f = l.function(spec.name).unwrap();
            assert_eq!(f.binding, spec.binding);
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let staged = crate::script_root::stage_repository(&repo, &dir.path().join("repo")).unwrap();
        let on_disk = AppLayout::load(&staged, &defaults).unwrap();
        assert_eq!(
            (on_disk.host, on_disk.functions),
            (l.host, l.functions),
            "embedded copies must equal the files"
        );
    }

    #[test]
    fn unresolved_schedule_setting_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::script_root::stage_embedded(dir.path()).unwrap();
        assert!(AppLayout::load(&root, &|_| None).is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(match_route("exports/{runId?}", "exports"), Some(vec![]));
        assert_eq!(
            match_route("exports/{runId?}", "exports/r1"),
            Some(vec![("runId".into(), "r1".into())])
        );
        assert_eq!(match_route("exports/{runId?}", "exports/r1/x"), None);
        assert_eq!(match_route("exports/{runId?}", "other"), None);
        assert_eq!(match_route("orders/{id:int}", "orders/x"), None);
        assert_eq!(
            match_route("orders/{id:int}", "orders/7"),
            Some(vec![("id".into(), "7".into())])
        );
    }
}

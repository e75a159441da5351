//! Functions host emulator: runs the functions of a script root ([`AppLayout::load`]), starts
//! the custom handler as the host does (port variable, working directory, `GET /` readiness),
//! fires timers, forwards HTTP requests in payload mode, and delivers Service Bus
//! messages in the host's envelope shape (strings JSON-encoded once more, integers as strings,
//! `DateTime`s without offset). A non-2xx or non-JSON answer fails the invocation; a failed
//! queue invocation abandons the message, as the Service Bus extension does.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warp::Filter;

use super::layout::{match_route, AppLayout, FunctionDef, TriggerDef};
use super::server::{json_response, spawn, ServerHandle};
use super::servicebus::{Delivery, ServiceBusEmulator};

const READINESS_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HTTP_BODY: usize = 4 << 20;

pub struct HostOptions {
    /// The app, loaded from its script root; the handler runs in its working directory.
    pub layout: AppLayout,
    /// The handler executable: the script root's `defaultExecutablePath` for a package,
    /// the workspace's build for `local` from the repository.
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
    /// The handler's stdout and stderr go here.
    pub log_file: PathBuf,
    /// Port of the HTTP front door (0 = any).
    pub http_port: u16,
    /// Key required by `authLevel: function` routes (`?code=` or `x-functions-key`).
    pub function_key: String,
    pub service_bus: Arc<ServiceBusEmulator>,
}

#[derive(Debug, Default)]
pub struct HostStats {
    pub invocations: AtomicU64,
    pub failures: AtomicU64,
}

/// What one invocation answered.
#[derive(Debug, Clone)]
pub struct InvocationOutcome {
    pub ok: bool,
    pub status: u16,
    pub outputs: Map<String, Value>,
    pub logs: Vec<String>,
}

struct Core {
    layout: AppLayout,
    handler: url::Url,
    client: reqwest::Client,
    stats: HostStats,
    function_key: String,
}

pub struct FunctionsHost {
    core: Arc<Core>,
    child: tokio::process::Child,
    http: ServerHandle,
    workers: Vec<tokio::task::JoinHandle<()>>,
    log_file: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A string metadata value as the host sends it: JSON-encoded once more.
fn quoted(s: &str) -> Value {
    Value::String(serde_json::to_string(s).expect("string encodes"))
}

fn sys(method: &str) -> Value {
    json!({ "MethodName": method, "UtcNow": rfc3339(OffsetDateTime::now_utc()), "RandGuid": uuid::Uuid::new_v4().to_string() })
}

impl Core {
    /// POSTs an envelope to the handler and applies the host's success rules.
    async fn invoke(&self, function: &str, envelope: Value) -> InvocationOutcome {
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let timeout = self.layout.host.function_timeout + Duration::from_secs(60);
        let url = self
            .handler
            .join(function)
            .expect("function names are path-safe");
        let res = self
            .client
            .post(url)
            .header(
                "X-Azure-Functions-InvocationId",
                uuid::Uuid::new_v4().to_string(),
            )
            .header("X-Azure-Functions-HostVersion", "4.0.0-local")
            .header("User-Agent", "Azure-Functions-Host/4.0.0-local")
            .timeout(timeout)
            .json(&envelope)
            .send()
            .await;
        let outcome = match res {
            Err(e) => InvocationOutcome {
                ok: false,
                status: 0,
                outputs: Map::new(),
                logs: vec![format!("handler unreachable: {e}")],
            },
            Ok(r) => {
                let status = r.status().as_u16();
                let json_ct = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let logs = functions_runtime::codec::string_array(body.get("Logs"));
                let ok = (200..300).contains(&status) && json_ct && body.is_object();
                InvocationOutcome {
                    ok,
                    status,
                    // The host binds outputs only for a successful invocation.
                    outputs: if ok {
                        body.get("Outputs")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default()
                    } else {
                        Map::new()
                    },
                    logs,
                }
            }
        };
        if !outcome.ok {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(function, status = outcome.status, logs = ?outcome.logs, "invocation failed");
        }
        outcome
    }

    /// `TimerInfo` as the host serializes it; `ScheduleStatus` is null without `useMonitor`.
    fn timer_envelope(&self, def: &FunctionDef) -> Value {
        let TriggerDef::Timer {
            schedule,
            use_monitor,
        } = &def.trigger
        else {
            return Value::Null;
        };
        let now = OffsetDateTime::now_utc();
        let next = schedule
            .parse::<super::ncrontab::Schedule>()
            .ok()
            .and_then(|s| s.next_after(now));
        let status = if *use_monitor {
            json!({ "Last": rfc3339(now), "Next": next.map(rfc3339), "LastUpdated": rfc3339(now) })
        } else {
            Value::Null
        };
        json!({
            "Data": { def.binding.clone(): { "Schedule": { "AdjustForDST": true }, "ScheduleStatus": status, "IsPastDue": false } },
            "Metadata": { "sys": sys(&def.name) },
        })
    }

    fn service_bus_envelope(def: &FunctionDef, d: &Delivery) -> Value {
        let text = String::from_utf8_lossy(&d.body).into_owned();
        let mut meta = Map::new();
        for k in [
            "MessageReceiver",
            "MessageSession",
            "MessageActions",
            "SessionActions",
            "ReceiveActions",
        ] {
            meta.insert(k.into(), json!({}));
        }
        meta.insert(
            "Client".into(),
            json!({"FullyQualifiedNamespace": "local", "IsClosed": false, "TransportType": 0}),
        );
        meta.insert(
            "DeliveryCount".into(),
            Value::String(d.delivery_count.to_string()),
        );
        meta.insert(
            "SequenceNumber".into(),
            Value::String(d.sequence_number.to_string()),
        );
        meta.insert("LockToken".into(), quoted(&d.lock_token.to_string()));
        meta.insert("MessageId".into(), quoted(&d.message_id));
        if let Some(ct) = &d.content_type {
            meta.insert("ContentType".into(), quoted(ct));
        }
        meta.insert(
            "EnqueuedTimeUtc".into(),
            Value::String(functions_runtime::codec::seconds_no_offset(d.enqueued_time)),
        );
        meta.insert(
            "EnqueuedTime".into(),
            Value::String(rfc3339(d.enqueued_time)),
        );
        meta.insert("ApplicationProperties".into(), json!({}));
        meta.insert("UserProperties".into(), json!({}));
        // The host copies top-level JSON body properties into Metadata, escaped.
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&text) {
            for (k, v) in o {
                meta.entry(k)
                    .or_insert_with(|| Value::String(v.to_string()));
            }
        }
        meta.insert("sys".into(), sys(&def.name));
        json!({ "Data": { def.binding.clone(): Value::String(serde_json::to_string(&text).expect("string encodes")) }, "Metadata": meta })
    }
}

/// Starts the handler on a fresh port and waits until it is ready, as the host does: `GET /`
/// polled every 25 ms. `None` if the handler exited first (its port was taken).
async fn launch(
    opts: &HostOptions,
    client: &reqwest::Client,
) -> anyhow::Result<Option<(tokio::process::Child, url::Url)>> {
    let port = free_port().context("finding a port for the handler")?;
    let worker_id = uuid::Uuid::new_v4().to_string();
    let log = std::fs::File::create(&opts.log_file)
        .with_context(|| format!("creating {}", opts.log_file.display()))?;
    let mut child = tokio::process::Command::new(&opts.program)
        .args(&opts.layout.host.arguments)
        // As the host: the script root unless host.json names another working directory.
        .current_dir(opts.layout.working_dir())
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the handler {}", opts.program.display()))?;
    let handler = url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("loopback URL");
    let deadline = tokio::time::Instant::now() + READINESS_TIMEOUT;
    loop {
        if let Ok(res) = client
            .get(handler.clone())
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            // Stricter than the host: make sure the answer comes from *our* handler, not from
            // whatever else grabbed the port (our handler echoes its worker id).
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if body
                .get("workerId")
                .and_then(Value::as_str)
                .is_none_or(|w| w == worker_id)
            {
                return Ok(Some((child, handler)));
            }
        }
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the handler did not answer GET / within {READINESS_TIMEOUT:?}; see {}",
                opts.log_file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl FunctionsHost {
    pub async fn start(opts: HostOptions) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the host's HTTP client")?;
        // A free port can be taken by someone else before the handler binds it (tests run in
        // parallel): a handler that dies at start-up is started again on another port.
        let mut attempt = 0;
        let (child, handler) = loop {
            attempt += 1;
            match launch(&opts, &client).await? {
                Some(ok) => break ok,
                None if attempt < 5 => tracing::warn!(
                    attempt,
                    "handler exited during start-up; retrying on another port"
                ),
                None => bail!(
                    "the handler exited during start-up {attempt} times; see {}",
                    opts.log_file.display()
                ),
            }
        };
        let core = Arc::new(Core {
            layout: opts.layout,
            handler,
            client,
            stats: HostStats::default(),
            function_key: opts.function_key,
        });
        let http = spawn(http_front(core.clone()), opts.http_port)
            .await
            .context("binding the HTTP front door")?;
        let mut workers = Vec::new();
        for def in core.layout.functions.clone() {
            if let TriggerDef::ServiceBusQueue { queue, .. } = &def.trigger {
                for _ in 0..core.layout.host.max_concurrent_calls {
                    let (core, sb, def, queue) = (
                        core.clone(),
                        opts.service_bus.clone(),
                        def.clone(),
                        queue.clone(),
                    );
                    workers.push(tokio::spawn(async move {
                        while let Some(d) = sb.receive(&queue).await {
                            let out = core
                                .invoke(&def.name, Core::service_bus_envelope(&def, &d))
                                .await;
                            if out.ok {
                                sb.complete(&d);
                            } else {
                                let why = out
                                    .logs
                                    .last()
                                    .cloned()
                                    .unwrap_or_else(|| format!("HTTP {}", out.status));
                                sb.abandon(&d, &why);
                            }
                        }
                    }));
                }
            }
        }
        // Timers fire at their NCRONTAB occurrences while the host runs, as in Azure.
        for def in core.layout.functions.clone() {
            if let TriggerDef::Timer { schedule, .. } = &def.trigger {
                let schedule: super::ncrontab::Schedule =
                    schedule.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                let core = core.clone();
                workers.push(tokio::spawn(async move {
                    while let Some(next) = schedule.next_after(OffsetDateTime::now_utc()) {
                        let wait = (next - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                        tokio::time::sleep(wait.unsigned_abs()).await;
                        let out = core.invoke(&def.name, core.timer_envelope(&def)).await;
                        tracing::info!(function = %def.name, ok = out.ok, "scheduled timer fired");
                    }
                }));
            }
        }
        Ok(Self {
            core,
            child,
            http,
            workers,
            log_file: opts.log_file,
        })
    }

    /// `http://127.0.0.1:{port}/{routePrefix}/`
    pub fn http_base(&self) -> url::Url {
        self.http
            .base_url()
            .join(&format!("{}/", self.core.layout.host.route_prefix))
            .expect("route prefix is a path")
    }

    pub fn function_key(&self) -> &str {
        &self.core.function_key
    }

    pub fn log_file(&self) -> &std::path::Path {
        &self.log_file
    }

    pub fn stats(&self) -> (u64, u64) {
        (
            self.core.stats.invocations.load(Ordering::Relaxed),
            self.core.stats.failures.load(Ordering::Relaxed),
        )
    }

    /// Fires a timer function now ("run now"), with the `TimerInfo` the host would send.
    pub async fn fire_timer(&self, name: &str) -> anyhow::Result<InvocationOutcome> {
        let def = self
            .core
            .layout
            .function(name)
            .with_context(|| format!("no function {name}"))?;
        if !matches!(def.trigger, TriggerDef::Timer { .. }) {
            bail!("{name} is not a timer function");
        }
        Ok(self.core.invoke(name, self.core.timer_envelope(def)).await)
    }

    /// Stops the workers, the front door and the handler.
    pub async fn shutdown(mut self) {
        for w in &self.workers {
            w.abort();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.http.shutdown().await;
    }
}

fn http_front(
    core: Arc<Core>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: warp::http::HeaderMap,
                  body: Bytes| {
                let core = core.clone();
                async move {
                    // The Functions front end caps request bodies; so do we (GETs carry none).
                    if body.len() > MAX_HTTP_BODY {
                        return json_response(413, &json!({"error": "request body too large"}));
                    }
                    forward_http(&core, method, path.as_str(), &query, &headers, body).await
                }
            },
        )
        .recover(|_r: warp::Rejection| async move {
            Ok::<_, std::convert::Infallible>(json_response(400, &json!({"error": "bad request"})))
        })
        .unify()
}

async fn run_now(
    core: &Core,
    method: &warp::http::Method,
    name: &str,
    headers: &warp::http::HeaderMap,
) -> warp::reply::Response {
    if method != warp::http::Method::POST {
        return json_response(405, &json!({"error": "POST to run a function now"}));
    }
    let key = headers.get("x-functions-key").and_then(|v| v.to_str().ok());
    if key != Some(core.function_key.as_str()) {
        return json_response(401, &json!({"error": "x-functions-key is required"}));
    }
    let Some(def) = core.layout.function(name) else {
        return json_response(404, &json!({"error": "no such function"}));
    };
    if !matches!(def.trigger, TriggerDef::Timer { .. }) {
        return json_response(
            400,
            &json!({"error": "only timer functions can be run this way here"}),
        );
    }
    let out = core.invoke(&def.name, core.timer_envelope(def)).await;
    // Azure answers 202 Accepted; we wait for the invocation so the caller sees its logs.
    json_response(
        if out.ok { 202 } else { 500 },
        &json!({ "ok": out.ok, "logs": out.logs }),
    )
}

async fn forward_http(
    core: &Core,
    method: warp::http::Method,
    path: &str,
    query: &str,
    headers: &warp::http::HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    // The host's "run now" for non-HTTP functions: POST /admin/functions/{name} (function key here).
    if let Some(name) = path.strip_prefix("/admin/functions/") {
        return run_now(core, &method, name, headers).await;
    }
    let prefix = format!("/{}/", core.layout.host.route_prefix);
    let Some(rest) = path
        .strip_prefix(&prefix)
        .or_else(|| (path == prefix.trim_end_matches('/')).then_some(""))
    else {
        return json_response(404, &json!({"error": "not found"}));
    };
    let found = core.layout.functions.iter().find_map(|f| match &f.trigger {
        TriggerDef::Http {
            route,
            methods,
            auth_level,
            output,
        } => match_route(route, rest).map(|params| (f, methods, auth_level, output, params)),
        _ => None,
    });
    let Some((def, methods, auth_level, output, params)) = found else {
        return json_response(404, &json!({"error": "no function serves this route"}));
    };
    if !methods.iter().any(|m| m == method.as_str()) {
        return json_response(405, &json!({"error": "method not allowed"}));
    }
    let query_map: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if auth_level != "anonymous" {
        let key = query_map.get("code").cloned().or_else(|| {
            headers
                .get("x-functions-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        if key.as_deref() != Some(core.function_key.as_str()) {
            return json_response(
                401,
                &json!({"error": "a function key is required (?code= or x-functions-key)"}),
            );
        }
    }
    let mut header_arrays = Map::new();
    let mut header_flat = Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            header_arrays.insert(k.as_str().to_string(), json!([v]));
            header_flat.insert(k.as_str().to_string(), json!(v));
        }
    }
    let params_map: HashMap<String, String> = params.into_iter().collect();
    let mut req = json!({
        "Url": format!("http://127.0.0.1{path}{}{query}", if query.is_empty() { "" } else { "?" }),
        "Method": method.as_str(),
        "Query": query_map,
        "Headers": header_arrays,
        "Params": params_map,
        "Identities": [{ "AuthenticationType": "WebJobsAuthLevel", "IsAuthenticated": true }],
    });
    if !body.is_empty() {
        req["Body"] = Value::String(String::from_utf8_lossy(&body).into_owned());
    }
    let envelope = json!({
        "Data": { def.binding.clone(): req },
        "Metadata": { "Params": params_map, "Query": query_map, "Headers": header_flat, "sys": sys(&def.name) },
    });
    let out = core.invoke(&def.name, envelope).await;
    if !out.ok {
        return json_response(500, &json!({"error": "the function invocation failed"}));
    }
    let Some(res) = out.outputs.get(output).and_then(Value::as_object) else {
        return json_response(500, &json!({"error": "the function set no HTTP response"}));
    };
    let status = res
        .get("statusCode")
        .or_else(|| res.get("status"))
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(200) as u16;
    let body = match res.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() =
        warp::http::StatusCode::from_u16(status).unwrap_or(warp::http::StatusCode::OK);
    if let Some(h) = res.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(val))) = (
                warp::http::header::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(warp::http::HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, val);
            }
        }
    }
    response
}

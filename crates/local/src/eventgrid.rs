//! Event Grid stand-in: a topic endpoint taking CloudEvents 1.0 (`POST /api/events`, batch or
//! single), authenticated by bearer token or `aeg-sas-key`. Accepted events are printed and
//! appended to a JSON-lines file, the way a subscriber would see them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use warp::Filter;

use super::server::{json_response, spawn, ServerHandle};

/// Event Grid's limit for one event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct EventGridConfig {
    pub token: String,
    /// Where accepted events are appended (one JSON object per line).
    pub events_file: Option<PathBuf>,
}

pub struct EventGridEmulator {
    cfg: EventGridConfig,
    events: Mutex<Vec<Value>>,
    tx: Mutex<Option<mpsc::UnboundedSender<Value>>>,
    /// Requests carrying an event whose type ends with `.0` are answered 503, `.1` times.
    refusals: Mutex<Option<(String, u32)>>,
}

impl EventGridEmulator {
    pub fn new(cfg: EventGridConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            events: Mutex::new(Vec::new()),
            tx: Mutex::new(None),
            refusals: Mutex::new(None),
        })
    }

    /// The next `times` publish requests carrying an event whose type ends with `type_suffix`
    /// are refused with `503 ServiceUnavailable`, as a topic under an outage answers.
    pub fn refuse(&self, type_suffix: &str, times: u32) {
        *self.refusals.lock().expect("event grid lock") = Some((type_suffix.to_string(), times));
    }

    /// A channel that sees every accepted event (for progress output).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.tx.lock().expect("event grid lock") = Some(tx);
        rx
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("event grid lock").clone()
    }

    pub fn topic_url(handle: &ServerHandle) -> url::Url {
        handle.base_url().join("api/events").expect("static path")
    }

    pub async fn serve(self: &Arc<Self>, port: u16) -> std::io::Result<ServerHandle> {
        let me = self.clone();
        let route = warp::post()
            .and(warp::path!("api" / "events"))
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("aeg-sas-key"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::content_length_limit(MAX_EVENT_BYTES as u64 * 8))
            .and(warp::body::bytes())
            .map(move |auth: Option<String>, key: Option<String>, ct: Option<String>, body: Bytes| {
                me.handle(auth.as_deref(), key.as_deref(), ct.as_deref(), &body)
            })
            .recover(|_r: warp::Rejection| async move {
                Ok::<_, std::convert::Infallible>(json_response(
                    404,
                    &serde_json::json!({"error": {"code": "NotFound", "message": "POST /api/events only"}}),
                ))
            });
        spawn(route, port).await
    }

    fn handle(
        &self,
        auth: Option<&str>,
        key: Option<&str>,
        ct: Option<&str>,
        body: &[u8],
    ) -> warp::reply::Response {
        let bearer_ok = auth
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.cfg.token);
        let key_ok = key.is_some_and(|k| k == self.cfg.token);
        if !bearer_ok && !key_ok {
            return problem(
                401,
                "Unauthorized",
                "the request is missing a valid token or aeg-sas-key",
            );
        }
        let ct = ct.unwrap_or("").to_ascii_lowercase();
        let batch = ct.starts_with("application/cloudevents-batch+json");
        if !batch && !ct.starts_with("application/cloudevents+json") {
            return problem(
                400,
                "BadRequest",
                "Content-Type must be application/cloudevents-batch+json or application/cloudevents+json for a CloudEvents topic",
            );
        }
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return problem(400, "BadRequest", &format!("body is not JSON: {e}")),
        };
        let events = match (batch, parsed) {
            (true, Value::Array(a)) => a,
            (false, v @ Value::Object(_)) => vec![v],
            _ => {
                return problem(
                    400,
                    "BadRequest",
                    "a batch must be a JSON array; a single event a JSON object",
                )
            }
        };
        for (i, e) in events.iter().enumerate() {
            if let Err(why) = validate(e) {
                return problem(400, "BadRequest", &format!("event {i}: {why}"));
            }
        }
        {
            let mut refusals = self.refusals.lock().expect("event grid lock");
            if let Some((suffix, left)) = refusals.as_mut() {
                let hit = events.iter().any(|e| {
                    e["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(suffix.as_str()))
                });
                if hit && *left > 0 {
                    *left -= 1;
                    return problem(
                        503,
                        "ServiceUnavailable",
                        "the topic is unavailable; try again later",
                    );
                }
            }
        }
        for e in &events {
            self.accept(e.clone());
        }
        json_response(200, &serde_json::json!({}))
    }

    fn accept(&self, event: Value) {
        if let Some(path) = &self.cfg.events_file {
            let line = format!("{event}\n");
            let res = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = res {
                tracing::error!(file = %path.display(), error = %e, "could not append event");
            }
        }
        if let Some(tx) = self.tx.lock().expect("event grid lock").as_ref() {
            let _ = tx.send(event.clone());
        }
        self.events.lock().expect("event grid lock").push(event);
    }
}

fn validate(e: &Value) -> Result<(), String> {
    if e.to_string().len() > MAX_EVENT_BYTES {
        return Err("event is larger than 1 MB".into());
    }
    if e.get("specversion").and_then(Value::as_str) != Some("1.0") {
        return Err("specversion must be \"1.0\"".into());
    }
    for f in ["id", "source", "type"] {
        if e.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("required attribute {f:?} is missing"));
        }
    }
    Ok(())
}

fn problem(status: u16, code: &str, message: &str) -> warp::reply::Response {
    json_response(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

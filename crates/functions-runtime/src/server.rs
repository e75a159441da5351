//! The custom-handler HTTP server: `GET /` answers readiness, `POST /{FunctionName}` runs a
//! function. Handler errors and panics become non-2xx answers, which the host turns into a
//! failed invocation (and, for Service Bus, an abandoned and redelivered message).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;
use warp::http::StatusCode;
use warp::Filter;

use crate::catalog::{FunctionSpec, TriggerBinding};
use crate::invocation::{HttpRequestData, Invocation, ServiceBusDelivery, TimerInfo};
use crate::reply::{HttpResponse, InvocationReply};

/// Largest invocation envelope accepted from the host.
pub const MAX_ENVELOPE_BYTES: usize = 4 << 20;

/// How much of an over-limit body is read and discarded before answering 413 anyway. Reading
/// it lets the connection finish the request cleanly (an unread body makes the server close
/// the connection mid-upload, which the sender sees as a reset instead of our answer); the
/// bound keeps a runaway sender from holding the handler forever. Service Bus Premium messages
/// reach 100 MB, so the bound sits above that.
const MAX_DRAINED_BYTES: usize = 256 << 20;

/// A request body read with a bound.
enum BoundedBody {
    Complete(bytes::Bytes),
    /// Over the limit: `seen` bytes were read (and dropped) before answering.
    TooLarge {
        seen: usize,
    },
}

/// Reads `body` (with or without Content-Length: chunked bodies too) up to `limit` bytes; past
/// the limit it keeps reading and discarding, up to `drain` bytes in all.
async fn read_bounded<S, B>(body: S, limit: usize, drain: usize) -> Result<BoundedBody, warp::Error>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk?;
        seen = seen.saturating_add(chunk.remaining());
        if seen <= limit {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                kept.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        } else {
            kept = bytes::BytesMut::new();
            if seen > drain {
                break;
            }
        }
    }
    Ok(if seen <= limit {
        BoundedBody::Complete(kept.freeze())
    } else {
        BoundedBody::TooLarge { seen }
    })
}

/// 413 with a body that says what the limit is, in the `Logs` the host records.
fn too_large_reply(seen: usize) -> warp::reply::Response {
    let msg = format!(
        "invocation envelope too large: {seen} bytes or more, over the handler's limit of \
         {MAX_ENVELOPE_BYTES} bytes (4 MiB)"
    );
    tracing::error!(bytes = seen, limit = MAX_ENVELOPE_BYTES, "{msg}");
    json_reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        &serde_json::json!({"Logs": [msg], "limitBytes": MAX_ENVELOPE_BYTES}),
    )
}

/// Why an invocation failed; `logs` still reach the caller for diagnostics.
#[derive(Debug)]
pub struct InvocationFailure {
    pub message: String,
    pub logs: Vec<String>,
}

impl<E: std::fmt::Display> From<E> for InvocationFailure {
    fn from(e: E) -> Self {
        // `{:#}` prints anyhow's context chain on one line.
        Self {
            message: format!("{e:#}").replace('\n', " "),
            logs: Vec::new(),
        }
    }
}

pub type InvocationResult = Result<InvocationReply, InvocationFailure>;
pub type HandlerFuture = Pin<Box<dyn Future<Output = InvocationResult> + Send>>;
type Handler = Arc<dyn Fn(Invocation) -> HandlerFuture + Send + Sync>;

/// Function name → handler. Names are matched exactly, as the host posts the folder name.
#[derive(Clone, Default)]
pub struct FunctionRouter {
    handlers: HashMap<String, Handler>,
}

impl FunctionRouter {
    pub fn new() -> Self {
        Self::default()
    }

    fn route<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = InvocationResult> + Send + 'static,
    {
        self.handlers
            .insert(name.to_string(), Arc::new(move |inv| Box::pin(f(inv))));
        self
    }

    /// Registers a timer function; `f` gets the decoded `TimerInfo` and the invocation.
    ///
    /// # Panics
    /// If `spec` is not a timer function (a wiring mistake, caught by the first test).
    pub fn timer<F, Fut>(self, spec: &'static FunctionSpec, f: F) -> Self
    where
        F: Fn(TimerInfo, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = InvocationResult> + Send + 'static,
    {
        assert!(
            matches!(spec.trigger, TriggerBinding::Timer { .. }),
            "{} is not a timer function",
            spec.name
        );
        let f = Arc::new(f);
        self.route(spec.name, move |inv: Invocation| {
            let f = f.clone();
            async move {
                let timer = inv.timer(spec.binding)?;
                f(timer, inv).await
            }
        })
    }

    /// Registers a Service Bus queue function; `f` gets the decoded delivery and the invocation.
    ///
    /// # Panics
    /// If `spec` is not a Service Bus queue function.
    pub fn service_bus<F, Fut>(self, spec: &'static FunctionSpec, f: F) -> Self
    where
        F: Fn(ServiceBusDelivery, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = InvocationResult> + Send + 'static,
    {
        assert!(
            matches!(spec.trigger, TriggerBinding::ServiceBusQueue { .. }),
            "{} is not a Service Bus queue function",
            spec.name
        );
        let f = Arc::new(f);
        self.route(spec.name, move |inv: Invocation| {
            let f = f.clone();
            async move {
                let delivery = inv.service_bus(spec.binding)?;
                f(delivery, inv).await
            }
        })
    }

    /// Registers an HTTP function; `f` answers the decoded request, and the response goes to
    /// the spec's `http` output binding.
    ///
    /// # Panics
    /// If `spec` is not an HTTP function.
    pub fn http<F, Fut>(self, spec: &'static FunctionSpec, f: F) -> Self
    where
        F: Fn(HttpRequestData, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HttpResponse, InvocationFailure>> + Send + 'static,
    {
        let TriggerBinding::Http { output, .. } = spec.trigger else {
            panic!("{} is not an HTTP function", spec.name);
        };
        let f = Arc::new(f);
        self.route(spec.name, move |inv: Invocation| {
            let f = f.clone();
            async move {
                let req = inv.http(spec.binding)?;
                let res = f(req, inv).await?;
                Ok(InvocationReply::new().http(output, res))
            }
        })
    }

    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    async fn dispatch(
        &self,
        name: &str,
        body: bytes::Bytes,
        invocation_id: Option<String>,
    ) -> warp::reply::Response {
        let Some(handler) = self.handlers.get(name).cloned() else {
            tracing::warn!(function = name, "invocation for an unknown function");
            return json_reply(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"Logs": [format!("no function named {name:?}")]}),
            );
        };
        let inv: Invocation = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(function = name, error = %e, "invocation envelope is not valid JSON");
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"Logs": [format!("invalid invocation envelope: {e}")]}),
                );
            }
        };
        let span = tracing::info_span!(
            "invocation",
            function = name,
            invocation_id = invocation_id.as_deref().unwrap_or("")
        );
        let started = std::time::Instant::now();
        let (outcome, captured) = crate::logs::capture(tracing::Instrument::instrument(
            std::panic::AssertUnwindSafe(handler(inv)).catch_unwind(),
            span,
        ))
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(Ok(mut reply)) => {
                tracing::debug!(function = name, elapsed_ms, "invocation succeeded");
                reply.logs.extend(captured);
                json_reply(StatusCode::OK, &reply)
            }
            Ok(Err(fail)) => {
                tracing::warn!(function = name, elapsed_ms, error = %fail.message, "invocation failed");
                let mut logs = fail.logs;
                logs.extend(captured);
                logs.push(format!("error: {}", fail.message));
                json_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({"Logs": logs}),
                )
            }
            Err(_) => {
                tracing::error!(function = name, elapsed_ms, "invocation panicked");
                json_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({"Logs": ["error: handler panicked"]}),
                )
            }
        }
    }
}

fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> warp::reply::Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = warp::reply::Response::new(bytes.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    res
}

/// The warp filter of the custom handler.
pub fn routes(
    router: FunctionRouter,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let router = Arc::new(router);
    // The host only needs some answer; the worker id lets a local host tell us from a stranger.
    let worker = std::env::var("FUNCTIONS_CUSTOMHANDLER_WORKER_ID").ok();
    let ready = warp::get().and(warp::path::end()).map(move || {
        json_reply(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "workerId": worker}),
        )
    });
    let invoke = warp::post()
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::header::optional::<String>(
            "x-azure-functions-invocationid",
        ))
        // Not `content_length_limit`: it rejects on the header without reading the body, and
        // the unread upload then ends in a reset connection instead of our 413.
        .and(warp::body::stream())
        .then(move |name: String, id: Option<String>, body| {
            let router = router.clone();
            async move {
                match read_bounded(body, MAX_ENVELOPE_BYTES, MAX_DRAINED_BYTES).await {
                    Ok(BoundedBody::Complete(body)) => router.dispatch(&name, body, id).await,
                    Ok(BoundedBody::TooLarge { seen }) => too_large_reply(seen),
                    Err(e) => json_reply(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"Logs": [format!("reading the invocation envelope failed: {e}")]}),
                    ),
                }
            }
        });
    ready
        .or(invoke)
        .unify()
        .recover(|rej: warp::Rejection| async move {
            let (status, msg) = if rej.is_not_found() {
                (StatusCode::NOT_FOUND, "not found".to_string())
            } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed".to_string(),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("{rej:?}"))
            };
            Ok::<_, Infallible>(json_reply(status, &serde_json::json!({"Logs": [msg]})))
        })
}

/// The port the host gave us (`FUNCTIONS_CUSTOMHANDLER_PORT`, or the legacy `FUNCTIONS_HTTPWORKER_PORT`);
/// 3000 when run standalone.
pub fn port_from_env() -> Result<u16, String> {
    for var in ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"] {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .map_err(|_| format!("{var}={v:?} is not a port number"));
        }
    }
    Ok(3000)
}

/// Serves until `shutdown` resolves. Binds 127.0.0.1: the host always calls on loopback.
pub async fn serve(
    router: FunctionRouter,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(router))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

pub async fn bind(port: u16) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

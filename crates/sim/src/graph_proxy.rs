//! A fault-injecting proxy in front of the Graph sandbox, on loopback: per request, as the seed
//! decides, it answers 429 with `Retry-After`, 503, or passes the request on, and sometimes
//! passes it on and then loses the answer (503 after the sandbox acted). `Location` headers are
//! rewritten to point back at the proxy, so operation polls go through it too.
//!
//! A lost answer to an export POST leaves Graph with an export the client never heard of; no
//! client can avoid starting another one then (the API has no idempotency key), so the
//! simulation counts those and allows one more export for each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

use crate::world::Chaos;

/// Per mille of Graph requests that meet each fault.
#[derive(Debug, Clone, Copy)]
pub struct GraphFaults {
    pub throttled: u64,
    pub unavailable: u64,
    pub lost_answer: u64,
}

pub struct GraphProxy {
    pub base: url::Url,
    pub lost_post_answers: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl GraphProxy {
    pub async fn start(
        upstream: url::Url,
        chaos: Arc<Chaos>,
        faults: Arc<std::sync::Mutex<GraphFaults>>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let base = url::Url::parse(&format!("http://127.0.0.1:{port}/"))?;
        let lost = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::new();
        let (up, me, lost2) = (upstream.clone(), base.clone(), lost.clone());
        let route = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap,
                      body: Bytes| {
                    let (http, up, me, chaos, faults, lost) = (
                        http.clone(),
                        up.clone(),
                        me.clone(),
                        chaos.clone(),
                        faults.clone(),
                        lost2.clone(),
                    );
                    async move {
                        let f = *faults.lock().unwrap();
                        let roll = chaos.below(1000) as u64;
                        if roll < f.throttled {
                            // Short, zero, day-long and past (an HTTP date) waits alike.
                            let wait = ["2", "0", "86400", "Wed, 21 Oct 2015 07:28:00 GMT"]
                                [chaos.below(4)];
                            return reply(StatusCode::TOO_MANY_REQUESTS, Some(wait), Bytes::new());
                        }
                        if roll < f.throttled + f.unavailable {
                            return reply(StatusCode::SERVICE_UNAVAILABLE, None, Bytes::new());
                        }
                        let lose = roll < f.throttled + f.unavailable + f.lost_answer;
                        let mut target = up.clone();
                        target.set_path(path.as_str());
                        target.set_query((!query.is_empty()).then_some(query.as_str()));
                        let mut req = http.request(method.clone(), target).body(body);
                        for (k, v) in headers.iter() {
                            if k != "host" && k != "content-length" {
                                req = req.header(k, v);
                            }
                        }
                        let Ok(res) = req.send().await else {
                            return reply(StatusCode::BAD_GATEWAY, None, Bytes::new());
                        };
                        if lose {
                            if method == Method::POST {
                                lost.fetch_add(1, Ordering::SeqCst);
                            }
                            return reply(StatusCode::SERVICE_UNAVAILABLE, None, Bytes::new());
                        }
                        let status = res.status();
                        let mut out = Response::builder().status(status.as_u16());
                        for (k, v) in res.headers() {
                            if k == "location" {
                                let loc = v
                                    .to_str()
                                    .unwrap_or_default()
                                    .replace(up.as_str(), me.as_str());
                                out = out.header(k.as_str(), loc);
                            } else if k != "content-length" && k != "transfer-encoding" {
                                out = out.header(k.as_str(), v.as_bytes());
                            }
                        }
                        let bytes = res.bytes().await.unwrap_or_default();
                        out.body(bytes.to_vec().into())
                            .unwrap_or_else(|_| Response::new(Vec::new().into()))
                    }
                },
            );
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Ok(Self {
            base,
            lost_post_answers: lost,
            _task: task,
        })
    }
}

fn reply(status: StatusCode, retry_after: Option<&str>, body: Bytes) -> warp::reply::Response {
    let mut b = Response::builder().status(status.as_u16());
    if let Some(r) = retry_after {
        b = b.header("Retry-After", r);
    }
    b.body(body.to_vec().into())
        .unwrap_or_else(|_| Response::new(Vec::new().into()))
}

impl Drop for GraphProxy {
    fn drop(&mut self) {
        self._task.abort();
    }
}

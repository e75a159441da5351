//! A recording stand-in of a storage account on 127.0.0.1 (warp), for the REST calls Azurite
//! does not implement (Put Blob From URL, Put Block From URL). It records every request and
//! keeps just enough state to answer like Azure: source blobs under `/src/...`, destination
//! blobs with their length and metadata, staged blocks and their lengths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    sources: HashMap<String, Bytes>,
    blobs: HashMap<String, (u64, HashMap<String, String>)>,
    blocks: HashMap<(String, String), u64>,
    /// Answer copies with 403 CannotVerifyCopySource, as Azure does for an expired source SAS.
    refuse_copy_source: bool,
    /// Async Copy Blob: how many status reads answer `pending`, then the final status and
    /// description.
    copy_polls: u32,
    copy_outcome: (String, String),
    /// Per destination blob: status reads left before the copy completes.
    copies: HashMap<String, u32>,
}

#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
    pub port: u16,
}

impl Recorder {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            copy_outcome: ("success".into(), String::new()),
            ..State::default()
        }));
        let s = state.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |method, path: warp::path::FullPath, query, headers, body| {
                    handle(&s, method, path.as_str().to_string(), query, headers, body)
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { state, port }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn add_source(&self, path: &str, data: Bytes) {
        self.state.lock().unwrap().sources.insert(path.into(), data);
    }

    pub fn refuse_copy_source(&self, on: bool) {
        self.state.lock().unwrap().refuse_copy_source = on;
    }

    /// How the next async Copy Blob behaves: `polls` pending answers, then `status`.
    pub fn async_copy_plan(&self, polls: u32, status: &str, description: &str) {
        let mut st = self.state.lock().unwrap();
        st.copy_polls = polls;
        st.copy_outcome = (status.into(), description.into());
    }

    /// Lets every pending copy answer `pending` once more, then complete.
    pub fn finish_copies(&self) {
        for v in self.state.lock().unwrap().copies.values_mut() {
            *v = 1;
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    pub fn blob(&self, path: &str) -> Option<(u64, HashMap<String, String>)> {
        self.state.lock().unwrap().blobs.get(path).cloned()
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: Bytes) -> warp::reply::Response {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(body.into()).unwrap()
}

fn error(status: u16, code: &str) -> warp::reply::Response {
    reply(
        status,
        &[("x-ms-error-code", code.to_string())],
        Bytes::new(),
    )
}

fn source_len(st: &State, copy_source: &str) -> Option<u64> {
    let u = url::Url::parse(copy_source).ok()?;
    st.sources.get(u.path()).map(|b| b.len() as u64)
}

/// Get Blob Properties of a stored blob: its length, metadata and copy status (an async copy
/// stays pending for the configured number of looks).
fn head_blob(st: &mut State, path: &str) -> warp::reply::Response {
    let etag = ("etag", "\"0x1\"".to_string());
    let Some((len, meta)) = st.blobs.get(path).cloned() else {
        return error(404, "BlobNotFound");
    };
    let mut h = vec![
        ("content-length", len.to_string()),
        ("x-ms-blob-type", "BlockBlob".into()),
        etag,
    ];
    let outcome = st.copy_outcome.clone();
    if let Some(left) = st.copies.get_mut(path) {
        if *left > 0 {
            *left -= 1;
            h.push(("x-ms-copy-status", "pending".into()));
        } else {
            h.push(("x-ms-copy-status", outcome.0));
            h.push(("x-ms-copy-status-description", outcome.1));
        }
    }
    let meta_headers: Vec<(String, String)> = meta
        .iter()
        .map(|(k, v)| (format!("x-ms-meta-{k}"), v.clone()))
        .collect();
    for (k, v) in &meta_headers {
        h.push((k.as_str(), v.clone()));
    }
    reply(200, &h, Bytes::new())
}

/// Copy Blob (async): the blob exists at once, its copy pending for the configured looks.
fn start_async_copy(
    st: &mut State,
    path: String,
    copy_source: &str,
    meta: HashMap<String, String>,
) -> warp::reply::Response {
    let etag = ("etag", "\"0x1\"".to_string());
    let Some(len) = source_len(st, copy_source) else {
        return error(404, "CannotVerifyCopySource");
    };
    let polls = st.copy_polls;
    st.copies.insert(path.clone(), polls);
    st.blobs.insert(path, (len, meta));
    let status = if polls > 0 {
        "pending".to_string()
    } else {
        st.copy_outcome.0.clone()
    };
    reply(
        202,
        &[
            ("x-ms-copy-id", "copy-1".into()),
            ("x-ms-copy-status", status),
            etag,
        ],
        Bytes::new(),
    )
}

fn handle(
    state: &Arc<Mutex<State>>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    let hdrs: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let rec = Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: hdrs.clone(),
        body: body.clone(),
    };
    let mut st = state.lock().unwrap();
    st.requests.push(rec.clone());
    let etag = ("etag", "\"0x1\"".to_string());
    let meta: HashMap<String, String> = hdrs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("x-ms-meta-")
                .map(|m| (m.to_string(), v.clone()))
        })
        .collect();
    let copy_source = rec.header("x-ms-copy-source").map(str::to_string);
    if copy_source.is_some() && st.refuse_copy_source {
        return error(403, "CannotVerifyCopySource");
    }
    let comp = rec.query_param("comp");
    match (method.as_str(), comp.as_deref()) {
        ("HEAD" | "GET", None) if path.starts_with("/src/") => match st.sources.get(&path) {
            Some(b) => reply(
                200,
                &[
                    ("content-length", b.len().to_string()),
                    ("content-type", "application/gzip".into()),
                    etag,
                ],
                if method == Method::GET {
                    b.clone()
                } else {
                    Bytes::new()
                },
            ),
            None => error(404, "BlobNotFound"),
        },
        ("HEAD", None) => head_blob(&mut st, &path),
        ("PUT", Some("block")) => {
            let id = rec.query_param("blockid").unwrap_or_default();
            let len = match rec.header("x-ms-source-range") {
                Some(r) => {
                    let (a, b) = r.trim_start_matches("bytes=").split_once('-').unwrap();
                    b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
                }
                None => body.len() as u64,
            };
            st.blocks.insert((path, id), len);
            reply(201, &[], Bytes::new())
        }
        ("PUT", Some("blocklist")) => {
            let xml = String::from_utf8_lossy(&body).to_string();
            let mut total = 0;
            for part in xml.split("<Latest>").skip(1) {
                let id = part.split("</Latest>").next().unwrap_or("");
                match st.blocks.get(&(path.clone(), id.to_string())) {
                    Some(l) => total += l,
                    None => return error(400, "InvalidBlockList"),
                }
            }
            st.blobs.insert(path, (total, meta));
            reply(201, &[etag], Bytes::new())
        }
        // Copy Blob (async) has a copy source but no blob type.
        ("PUT", None) if copy_source.is_some() && rec.header("x-ms-blob-type").is_none() => {
            start_async_copy(&mut st, path, copy_source.as_deref().unwrap(), meta)
        }
        ("PUT", None) => {
            let len = match &copy_source {
                Some(src) => match source_len(&st, src) {
                    Some(l) => l,
                    None => return error(404, "CannotVerifyCopySource"),
                },
                None => body.len() as u64,
            };
            st.blobs.insert(path, (len, meta));
            reply(201, &[etag], Bytes::new())
        }
        _ => error(400, "UnsupportedByStandIn"),
    }
}

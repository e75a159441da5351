//! Peak memory of the streamed relay: relays a generated ~1 GiB gzip partition from a local
//! source into a block-blob sink that discards what it receives, then prints the process's
//! peak resident set (`VmHWM` in /proc/self/status). Both servers run in this process, so the
//! figure covers them too.
//!
//!     cargo run --release --example relay_peak_memory [size-in-MiB]
//!
//! Not a timed benchmark: the point is that memory stays flat whatever the partition size.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use partner_billing_export::adapters::blob::{
    BlobAccount, BlobDestination, BlobOptions, CopyStrategy,
};
use partner_billing_export::adapters::storage::{Destination, ObjectPath, SourceIdentity};
use partner_billing_export::auth::Secret;
use warp::{Filter, Reply};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One gzip member of about 1 MiB of JSON lines with pseudo-random fields (compresses ~2x, like
/// real billing rows); the partition is this member repeated, which is valid multi-member gzip.
fn gzip_member() -> (Bytes, u64) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut rows = 0;
    let mut raw = 0;
    while raw < 2 * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let line = format!(
            "{{\"customerId\":\"{x:016x}\",\"sku\":\"{:08x}\",\"quantity\":{},\"amount\":{}.{:02}}}\n",
            x >> 32,
            x % 97,
            x % 10_000,
            x % 100
        );
        raw += line.len();
        rows += 1;
        e.write_all(line.as_bytes()).unwrap();
    }
    (Bytes::from(e.finish().unwrap()), rows)
}

/// Counts a request body's bytes without keeping them.
async fn drain<B: warp::Buf>(body: impl futures::Stream<Item = Result<B, warp::Error>>) -> u64 {
    let mut body = std::pin::pin!(body);
    let mut n = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        n += chunk.remaining() as u64;
    }
    n
}

#[derive(Default)]
struct Sink {
    blocks: HashMap<String, u64>,
    committed: Option<u64>,
}

/// Serves the source blob (`count` copies of `member`) and a block-blob sink that counts and
/// discards what it receives, on a loopback port, which it returns.
async fn serve_source_and_sink(member: Bytes, count: u64, sink: Arc<Mutex<Sink>>) -> u16 {
    let total = count * member.len() as u64;
    // Source: HEAD and GET of one blob, streamed from the repeated member.
    let m = member;
    let source = warp::path!("src" / "part.json.gz").and(warp::method()).map(
        move |method: warp::http::Method| {
            let mut r = if method == warp::http::Method::HEAD {
                warp::reply::Response::new(Bytes::new().into())
            } else {
                let m = m.clone();
                warp::reply::stream(
                    futures::stream::iter(0..count)
                        .map(move |_| Ok::<_, std::io::Error>(m.clone())),
                )
                .into_response()
            };
            let h = r.headers_mut();
            h.insert("content-length", total.into());
            h.insert("content-type", "application/gzip".parse().unwrap());
            r
        },
    );

    // Sink: Put Block (counted and discarded as it streams in), Put Block List, HEAD.
    let (s1, s2, s3) = (sink.clone(), sink.clone(), sink.clone());
    let comp = |want: &'static str| {
        warp::query::<HashMap<String, String>>().and_then(
            move |q: HashMap<String, String>| async move {
                if q.get("comp").map(String::as_str) == Some(want) {
                    Ok(q)
                } else {
                    Err(warp::reject::not_found())
                }
            },
        )
    };
    let put_block = warp::put()
        .and(warp::path!("acct" / "sink" / ..))
        .and(comp("block"))
        .and(warp::body::stream())
        .and_then(move |q: HashMap<String, String>, body| {
            let s = s1.clone();
            async move {
                let n = drain(body).await;
                s.lock().unwrap().blocks.insert(q["blockid"].clone(), n);
                Ok::<_, warp::Rejection>(warp::reply::with_status(
                    "",
                    warp::http::StatusCode::CREATED,
                ))
            }
        });
    let commit = warp::put()
        .and(warp::path!("acct" / "sink" / ..))
        .and(comp("blocklist"))
        .and(warp::body::bytes())
        .map(move |_q: HashMap<String, String>, body: Bytes| {
            let xml = String::from_utf8_lossy(&body).to_string();
            let mut st = s2.lock().unwrap();
            let len = xml
                .split("<Latest>")
                .skip(1)
                .map(|p| st.blocks[p.split("</Latest>").next().unwrap()])
                .sum();
            st.committed = Some(len);
            warp::reply::with_status("", warp::http::StatusCode::CREATED)
        });
    let head = warp::head()
        .and(warp::path!("acct" / "sink" / ..))
        .map(move || {
            let committed = s3.lock().unwrap().committed;
            let mut r = warp::reply::Response::new(Bytes::new().into());
            match committed {
                Some(len) => {
                    r.headers_mut().insert("content-length", len.into());
                }
                None => {
                    *r.status_mut() = warp::http::StatusCode::NOT_FOUND;
                    r.headers_mut()
                        .insert("x-ms-error-code", "BlobNotFound".parse().unwrap());
                }
            }
            r
        });
    let routes = source.or(head).or(commit).or(put_block);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    port
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let (member, member_rows) = gzip_member();
    let count = (mib * 1024 * 1024).div_ceil(member.len() as u64);
    let total = count * member.len() as u64;

    let sink = Arc::new(Mutex::new(Sink::default()));
    let port = serve_source_and_sink(member, count, sink.clone()).await;

    let options = BlobOptions {
        strategy: CopyStrategy::Relay,
        ..Default::default()
    };
    let (block, in_flight) = (options.relay_block_size, options.relay_in_flight);
    let account = BlobAccount::with_sas(
        &url::Url::parse(&format!("http://127.0.0.1:{port}/acct")).unwrap(),
        Secret::new("sv=2020-12-06&sig=discarded"),
    )
    .unwrap();
    let dest = BlobDestination::new(account, "sink", options, reqwest::Client::new()).unwrap();
    let src = url::Url::parse(&format!("http://127.0.0.1:{port}/src/part.json.gz?sig=x")).unwrap();
    let before = vm_hwm_kib();
    let started = std::time::Instant::now();
    let out = dest
        .copy_from_url(
            &src,
            &ObjectPath::new("relay/part.json.gz").unwrap(),
            &SourceIdentity {
                manifest_etag: "\"0x1\"".into(),
                blob_name: "part.json.gz".into(),
            },
        )
        .await
        .expect("relay");
    let peak = vm_hwm_kib();
    assert_eq!(out.bytes, total);
    assert_eq!(out.rows, Some(member_rows * count));
    println!(
        "relayed {:.1} MiB ({} rows, {} blocks of {} MiB, {} in flight) in {:.1} s",
        total as f64 / 1048576.0,
        out.rows.unwrap_or(0),
        sink.lock().unwrap().blocks.len(),
        block / (1024 * 1024),
        in_flight,
        started.elapsed().as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM): {:.1} MiB before the relay, {:.1} MiB after (whole process, servers included)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

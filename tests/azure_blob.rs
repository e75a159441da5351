//! The Azure Blob destination and ledger: against Azurite (async Copy Blob, Auto's fallback,
//! relay, ledger) and against a recording stand-in for the From-URL APIs Azurite lacks.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use partner_billing_export::adapters::blob::{
    BlobAccount, BlobDestination, BlobLedger, BlobOptions, CopyStrategy,
};
use partner_billing_export::adapters::storage::{
    CopyMethod, Destination, LedgerStore, ObjectPath, SourceIdentity, StorageError,
};
use partner_billing_export::auth::{Secret, TokenSource};
use test_support::azurite::{Azurite, DEST_ACCOUNT, SOURCE_ACCOUNT};
use test_support::recorder::Recorder;
use time::OffsetDateTime;
use url::Url;

const SRC_CONTAINER: &str = "graph-exports";
const DEST_CONTAINER: &str = "billing-exports";

/// A gzip partition of `rows` JSON lines (random ids, so it does not compress to nothing).
fn partition(rows: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..rows {
        writeln!(
            e,
            "{{\"row\":{i},\"id\":\"{}\",\"amount\":{}.{:02}}}",
            uuid::Uuid::new_v4(),
            i * 7,
            i % 100
        )
        .unwrap();
    }
    e.finish().unwrap()
}

fn identity(etag: &str, blob: &str) -> SourceIdentity {
    SourceIdentity {
        manifest_etag: etag.into(),
        blob_name: blob.into(),
    }
}

fn path(p: &str) -> ObjectPath {
    ObjectPath::new(p).unwrap()
}

struct Bed {
    az: Azurite,
    http: reqwest::Client,
}

impl Bed {
    async fn start() -> Self {
        let az = Azurite::start().await;
        for (acct, c) in [
            (SOURCE_ACCOUNT, SRC_CONTAINER),
            (DEST_ACCOUNT, DEST_CONTAINER),
        ] {
            az.sas_account(acct).ensure_container(c).await.unwrap();
        }
        Self {
            az,
            http: reqwest::Client::new(),
        }
    }

    fn dest(
        &self,
        strategy: CopyStrategy,
        tweak: impl FnOnce(&mut BlobOptions),
    ) -> BlobDestination {
        let mut o = BlobOptions {
            strategy,
            copy_poll_interval: std::time::Duration::from_millis(20),
            ..Default::default()
        };
        tweak(&mut o);
        BlobDestination::new(
            self.az.sas_account(DEST_ACCOUNT),
            DEST_CONTAINER,
            o,
            self.http.clone(),
        )
        .unwrap()
    }

    /// Uploads a source blob and returns its read-only SAS URL (as in a Graph manifest).
    async fn source(&self, name: &str, data: &[u8], expiry: OffsetDateTime) -> Url {
        let src = BlobDestination::new(
            self.az.sas_account(SOURCE_ACCOUNT),
            SRC_CONTAINER,
            BlobOptions::default(),
            self.http.clone(),
        )
        .unwrap();
        src.put_bytes(
            &path(name),
            Bytes::copy_from_slice(data),
            "application/gzip",
        )
        .await
        .unwrap();
        let sas = self.az.account_sas(SOURCE_ACCOUNT, "r", expiry);
        self.az
            .blob_sas_url(SOURCE_ACCOUNT, SRC_CONTAINER, name, &sas)
    }

    /// GETs a destination blob with a SAS: (body, x-ms-meta-* headers).
    async fn fetch(&self, p: &str) -> (Vec<u8>, reqwest::header::HeaderMap) {
        let sas = self.az.account_sas(
            DEST_ACCOUNT,
            "r",
            OffsetDateTime::now_utc() + time::Duration::hours(1),
        );
        let url = self.az.blob_sas_url(DEST_ACCOUNT, DEST_CONTAINER, p, &sas);
        let res = self
            .http
            .get(url)
            .header("x-ms-version", "2025-11-05")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {p}");
        let h = res.headers().clone();
        (res.bytes().await.unwrap().to_vec(), h)
    }
}

fn hour() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::hours(1)
}

#[tokio::test]
async fn azurite_async_copy_auto_fallback_skip_and_expired_sas() {
    let bed = Bed::start().await;
    let data = partition(2000);
    let src = bed.source("exp/part-00001.json.gz", &data, hour()).await;
    let id = identity("\"0x8DCAFE\"", "exp/part-00001.json.gz");

    // Async Copy Blob, cross-account, SAS source.
    let dest = bed.dest(CopyStrategy::AsyncCopy, |_| {});
    let p = path("pb/billedUsage/2026-10/run1/part-00001.json.gz");
    let out = dest.copy_from_url(&src, &p, &id).await.unwrap();
    assert_eq!(out.method, CopyMethod::ServerSide);
    assert_eq!(out.bytes, data.len() as u64);
    let (body, headers) = bed.fetch(p.as_str()).await;
    assert_eq!(body, data, "destination bytes equal source bytes");
    assert_eq!(headers["x-ms-meta-pbe_source_etag"], "\"0x8DCAFE\"");
    assert_eq!(
        headers["x-ms-meta-pbe_source_blob"],
        "exp/part-00001.json.gz"
    );
    assert_eq!(
        headers["x-ms-meta-pbe_source_length"],
        data.len().to_string()
    );

    // A rerun finds the identical copy.
    let again = dest.copy_from_url(&src, &p, &id).await.unwrap();
    assert_eq!(again.method, CopyMethod::Skipped);
    assert_eq!(again.bytes, data.len() as u64);
    // A different source identity is copied again, not skipped.
    let other = dest
        .copy_from_url(
            &src,
            &p,
            &identity("\"0x8DBEEF\"", "exp/part-00001.json.gz"),
        )
        .await
        .unwrap();
    assert_eq!(other.method, CopyMethod::ServerSide);

    // Auto: Azurite refuses Put Blob From URL (500 with SAS), so it falls back to async copy.
    let auto = bed.dest(CopyStrategy::Auto, |_| {});
    let p2 = path("pb/auto/part-00001.json.gz");
    let out = auto.copy_from_url(&src, &p2, &id).await.unwrap();
    assert_eq!(out.method, CopyMethod::ServerSide);
    assert_eq!(bed.fetch(p2.as_str()).await.0, data);
    // ...and large sources (Put Block From URL) fall back the same way.
    let auto_blocks = bed.dest(CopyStrategy::Auto, |o| {
        o.put_blob_from_url_limit = 1024;
        o.block_size = 4096;
    });
    let p3 = path("pb/auto-blocks/part-00001.json.gz");
    auto_blocks.copy_from_url(&src, &p3, &id).await.unwrap();
    assert_eq!(bed.fetch(p3.as_str()).await.0, data);

    // An expired source SAS means "refresh the manifest".
    let expired = bed
        .source(
            "exp/part-00002.json.gz",
            &data,
            OffsetDateTime::now_utc() - time::Duration::minutes(5),
        )
        .await;
    for d in [&dest, &auto] {
        let e = d
            .copy_from_url(&expired, &path("pb/x/part-00002.json.gz"), &id)
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::SourceForbidden { .. }), "{e}");
        assert!(!e.to_string().contains("sig="), "{e}");
    }
}

#[tokio::test]
async fn azurite_relay_multi_block_put_bytes_and_locate() {
    let bed = Bed::start().await;
    let data = partition(3000);
    assert!(data.len() > 10 * 4096, "several relay blocks");
    let src = bed.source("exp/part-00003.json.gz", &data, hour()).await;
    let dest = bed.dest(CopyStrategy::Relay, |o| {
        o.relay_block_size = 4096;
        o.relay_in_flight = 3;
    });
    let p = path("pb/relay/part-00003.json.gz");
    let id = identity("\"0x1\"", "exp/part-00003.json.gz");
    let out = dest.copy_from_url(&src, &p, &id).await.unwrap();
    assert_eq!(out.method, CopyMethod::Relay);
    assert_eq!(out.rows, Some(3000));
    assert_eq!(out.bytes, data.len() as u64);
    let (body, headers) = bed.fetch(p.as_str()).await;
    assert_eq!(body, data);
    assert_eq!(
        headers["x-ms-meta-pbe_source_length"],
        data.len().to_string()
    );
    assert_eq!(headers["content-type"], "application/gzip");
    assert_eq!(
        dest.copy_from_url(&src, &p, &id).await.unwrap().method,
        CopyMethod::Skipped
    );

    let m = path("pb/relay/_manifest.json");
    dest.put_bytes(&m, Bytes::from_static(b"{\"ok\":true}"), "application/json")
        .await
        .unwrap();
    assert_eq!(bed.fetch(m.as_str()).await.0, b"{\"ok\":true}");
    let loc = dest.locate(&m);
    assert_eq!(
        loc,
        format!(
            "http://127.0.0.1:{}/{DEST_ACCOUNT}/{DEST_CONTAINER}/pb/relay/_manifest.json",
            bed.az.port
        )
    );
    assert!(!loc.contains('?'));
}

/// Retention deletes a superseded version folder: everything below it, nothing beside it
/// (`v-1` must not take `v-10` along), and a second delete finds nothing left.
#[tokio::test]
async fn azurite_delete_folder_takes_the_folder_and_nothing_beside_it() {
    let bed = Bed::start().await;
    let dest = bed.dest(CopyStrategy::Auto, |_| {});
    for p in [
        "pb/x/v-1/part-1.json.gz",
        "pb/x/v-1/_manifest.json",
        "pb/x/v-1/parquet/part-1.parquet",
        "pb/x/v-10/part-1.json.gz",
        "pb/x/_current.json",
    ] {
        dest.put_bytes(&path(p), Bytes::from_static(b"{}"), "application/json")
            .await
            .unwrap();
    }
    assert_eq!(dest.delete_folder(&path("pb/x/v-1")).await.unwrap(), 3);
    assert_eq!(dest.delete_folder(&path("pb/x/v-1")).await.unwrap(), 0);
    for kept in ["pb/x/v-10/part-1.json.gz", "pb/x/_current.json"] {
        assert_eq!(bed.fetch(kept).await.0, b"{}", "{kept} survives");
    }
}

#[tokio::test]
async fn azurite_ledger_create_replace_conflicts() {
    let bed = Bed::start().await;
    let l = BlobLedger::new(
        bed.az.sas_account(DEST_ACCOUNT),
        DEST_CONTAINER,
        path("pb/_ledger"),
    )
    .unwrap();
    let k = path("runs/r1.json");
    assert!(l.read(&k).await.unwrap().is_none());
    let t1 = l.create(&k, b"one".to_vec()).await.unwrap().unwrap();
    assert!(
        l.create(&k, b"again".to_vec()).await.unwrap().is_none(),
        "second create must lose"
    );
    let t2 = l.replace(&k, b"two".to_vec(), &t1).await.unwrap().unwrap();
    assert!(
        l.replace(&k, b"stale".to_vec(), &t1)
            .await
            .unwrap()
            .is_none(),
        "stale etag must lose"
    );
    let (body, tag) = l.read(&k).await.unwrap().unwrap();
    assert_eq!(body, b"two");
    assert_eq!(tag, t2);
    l.create(&path("runs2/x.json"), b"{}".to_vec())
        .await
        .unwrap();
    l.create(&path("runs/r0/parts.json"), b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        l.list(&path("runs")).await.unwrap(),
        vec![path("runs/r0/parts.json"), k.clone()]
    );

    // Concurrent compare-and-swap increments never lose an update.
    test_support::ledger::concurrent_increments_never_lose_an_update(
        Arc::new(l),
        path("counter"),
        4,
        5,
    )
    .await;
}

// ---- From-URL APIs against the recording stand-in ----

fn standin_dest(
    rec: &Recorder,
    token: bool,
    tweak: impl FnOnce(&mut BlobOptions),
) -> BlobDestination {
    let url = Url::parse(&format!("{}/partnerdest", rec.base())).unwrap();
    let account = if token {
        let t: Arc<dyn TokenSource> = Arc::new(partner_billing_local::tokens::local_token_source());
        BlobAccount::with_token(&url, t).unwrap()
    } else {
        BlobAccount::with_sas(&url, Secret::new("sv=2020-12-06&sp=racwl&sig=destsig")).unwrap()
    };
    let mut o = BlobOptions::default();
    tweak(&mut o);
    BlobDestination::new(account, "billing-exports", o, reqwest::Client::new()).unwrap()
}

fn source_url(rec: &Recorder, name: &str) -> Url {
    Url::parse(&format!(
        "{}/src/{name}?sv=2020-12-06&sr=b&sp=r&sig=srcsig",
        rec.base()
    ))
    .unwrap()
}

#[tokio::test]
async fn standin_put_blob_from_url_exact_requests() {
    let rec = Recorder::start().await;
    let data = Bytes::from(partition(100));
    rec.add_source("/src/part-1.json.gz", data.clone());
    let src = source_url(&rec, "part-1.json.gz");
    let id = identity("\"0xE1\"", "part-1.json.gz");
    let p = path("pb/run/part-1.json.gz");
    let blob_path = "/partnerdest/billing-exports/pb/run/part-1.json.gz";

    for token in [true, false] {
        rec.clear();
        let dest = standin_dest(&rec, token, |_| {});
        let d2 = path(&format!("pb/run{token}/part-1.json.gz"));
        let p = if token { &p } else { &d2 };
        let out = dest.copy_from_url(&src, p, &id).await.unwrap();
        assert_eq!(out.method, CopyMethod::ServerSide);
        assert_eq!(out.bytes, data.len() as u64);
        let reqs = rec.requests();
        let puts: Vec<_> = reqs.iter().filter(|r| r.method == "PUT").collect();
        assert_eq!(puts.len(), 1, "{reqs:#?}");
        let put = puts[0];
        assert_eq!(put.header("x-ms-copy-source"), Some(src.as_str()));
        assert_eq!(put.header("x-ms-version"), Some("2025-11-05"));
        assert_eq!(put.header("x-ms-blob-type"), Some("BlockBlob"));
        assert_eq!(put.header("x-ms-meta-pbe_source_etag"), Some("\"0xE1\""));
        assert_eq!(
            put.header("x-ms-meta-pbe_source_blob"),
            Some("part-1.json.gz")
        );
        assert_eq!(
            put.header("x-ms-meta-pbe_source_length"),
            Some(data.len().to_string().as_str())
        );
        assert!(
            put.header("if-none-match").is_none(),
            "a mismatched copy is overwritten"
        );
        for r in reqs.iter().filter(|r| r.path.starts_with("/partnerdest/")) {
            if token {
                assert_eq!(
                    r.header("authorization"),
                    Some("Bearer local-storage-token")
                );
                assert!(r.query_param("sig").is_none());
            } else {
                assert!(r.header("authorization").is_none());
                assert_eq!(r.query_param("sig").as_deref(), Some("destsig"));
            }
        }
        // The source HEAD carries the source SAS and never a token.
        let head = reqs.iter().find(|r| r.path.starts_with("/src/")).unwrap();
        assert_eq!(head.method, "HEAD");
        assert!(head.header("authorization").is_none());
        if token {
            assert_eq!(put.path, blob_path);
        }
    }

    // A rerun is skipped after one HEAD of source and destination, no PUT.
    rec.clear();
    let dest = standin_dest(&rec, true, |_| {});
    assert_eq!(
        dest.copy_from_url(&src, &p, &id).await.unwrap().method,
        CopyMethod::Skipped
    );
    assert!(rec.requests().iter().all(|r| r.method == "HEAD"));

    // The source refusing our SAS comes back as CannotVerifyCopySource: refresh the manifest.
    rec.refuse_copy_source(true);
    let e = dest
        .copy_from_url(&src, &path("pb/other/part-1.json.gz"), &id)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::SourceForbidden { status: 403, .. }),
        "{e}"
    );
    assert!(!e.to_string().contains("srcsig"));
}

#[tokio::test]
async fn standin_put_block_from_url_covers_source_in_order() {
    let rec = Recorder::start().await;
    let data = Bytes::from(vec![7u8; 5000]);
    rec.add_source("/src/big.json.gz", data.clone());
    let src = source_url(&rec, "big.json.gz");
    let dest = standin_dest(&rec, true, |o| {
        o.put_blob_from_url_limit = 1000;
        o.block_size = 1024;
        o.block_concurrency = 3;
    });
    let p = path("pb/run/big.json.gz");
    let out = dest
        .copy_from_url(&src, &p, &identity("\"0xB\"", "big.json.gz"))
        .await
        .unwrap();
    assert_eq!(out.bytes, 5000);
    let reqs = rec.requests();
    let blocks: Vec<_> = reqs
        .iter()
        .filter(|r| r.query_param("comp").as_deref() == Some("block"))
        .collect();
    assert_eq!(blocks.len(), 5);
    let mut ranges: Vec<(u64, u64, String)> = blocks
        .iter()
        .map(|r| {
            assert_eq!(r.header("x-ms-copy-source"), Some(src.as_str()));
            assert_eq!(
                r.header("authorization"),
                Some("Bearer local-storage-token")
            );
            assert_eq!(r.header("content-length"), Some("0"));
            let range = r.header("x-ms-source-range").unwrap();
            let (a, b) = range
                .strip_prefix("bytes=")
                .unwrap()
                .split_once('-')
                .unwrap();
            (
                a.parse().unwrap(),
                b.parse().unwrap(),
                r.query_param("blockid").unwrap(),
            )
        })
        .collect();
    ranges.sort();
    let mut next = 0;
    for (a, b, _) in &ranges {
        assert_eq!(*a, next, "no gap or overlap");
        next = b + 1;
    }
    assert_eq!(next, 5000, "covers the whole source");
    let id_len = ranges[0].2.len();
    for (_, _, id) in &ranges {
        assert_eq!(id.len(), id_len, "equal-length block ids");
        base64::engine::general_purpose::STANDARD
            .decode(id)
            .unwrap();
    }
    let list = reqs
        .iter()
        .find(|r| r.query_param("comp").as_deref() == Some("blocklist"))
        .unwrap();
    let xml = String::from_utf8(list.body.to_vec()).unwrap();
    let expected: String = ranges
        .iter()
        .map(|(_, _, id)| format!("<Latest>{id}</Latest>"))
        .collect();
    assert!(
        xml.contains(&format!("<BlockList>{expected}</BlockList>")),
        "blocks committed in source order: {xml}"
    );
    assert_eq!(list.header("x-ms-meta-pbe_source_length"), Some("5000"));
    assert_eq!(
        rec.blob("/partnerdest/billing-exports/pb/run/big.json.gz")
            .unwrap()
            .0,
        5000
    );
}

#[tokio::test]
async fn standin_async_copy_polls_resumes_and_maps_failures() {
    let rec = Recorder::start().await;
    let data = Bytes::from(partition(50));
    rec.add_source("/src/a.json.gz", data.clone());
    let src = source_url(&rec, "a.json.gz");
    let id = identity("\"0xA\"", "a.json.gz");
    let fast = |o: &mut BlobOptions| {
        o.strategy = CopyStrategy::AsyncCopy;
        o.copy_poll_interval = std::time::Duration::from_millis(1);
    };

    // Pending three times, then success.
    rec.async_copy_plan(3, "success", "");
    let dest = standin_dest(&rec, true, fast);
    let p = path("pb/async/a.json.gz");
    let out = dest.copy_from_url(&src, &p, &id).await.unwrap();
    assert_eq!(
        (out.method, out.bytes),
        (CopyMethod::ServerSide, data.len() as u64)
    );
    let reqs = rec.requests();
    let put = reqs.iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.header("x-ms-copy-source"), Some(src.as_str()));
    assert!(
        put.header("x-ms-blob-type").is_none(),
        "Copy Blob, not Put Blob From URL"
    );
    assert_eq!(put.header("x-ms-meta-pbe_source_etag"), Some("\"0xA\""));
    let heads = reqs
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.starts_with("/partnerdest/"));
    assert!(
        heads.count() >= 5,
        "existence check, three pending polls, success, verify"
    );

    // Past the deadline the copy is left running; the next attempt resumes it without a new PUT.
    rec.clear();
    rec.async_copy_plan(1_000_000, "success", "");
    let dest = standin_dest(&rec, true, |o| {
        fast(o);
        o.copy_deadline = std::time::Duration::from_millis(30);
    });
    let p2 = path("pb/async/slow.json.gz");
    let e = dest.copy_from_url(&src, &p2, &id).await.unwrap_err();
    assert!(e.to_string().contains("still pending"), "{e}");
    rec.finish_copies();
    rec.clear();
    let out = dest.copy_from_url(&src, &p2, &id).await.unwrap();
    assert_eq!(out.method, CopyMethod::ServerSide);
    assert!(
        rec.requests().iter().all(|r| r.method == "HEAD"),
        "resumed, not restarted"
    );

    // A copy that fails because the source refused us (SAS expired mid-copy).
    rec.async_copy_plan(
        1,
        "failed",
        "403 AuthenticationFailed: Server failed to authenticate the request.",
    );
    let e = dest
        .copy_from_url(&src, &path("pb/async/denied.json.gz"), &id)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::SourceForbidden { .. }), "{e}");
    rec.async_copy_plan(0, "failed", "500 InternalError");
    let e = dest
        .copy_from_url(&src, &path("pb/async/broken.json.gz"), &id)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Destination(_)), "{e}");
}

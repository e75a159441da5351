//! `cargo bench --bench throughput`: figures for the hot paths, printed, never asserted.
//! - copy verification: MD5 + streaming gunzip row count per byte relayed (MB/s);
//! - envelope decoding: a double-encoded Service Bus invocation to a typed poll job (per second);
//! - ledger fan-in: N concurrent parts marked done on one run record (compare-and-swap), filesystem.

use std::io::Write;
use std::time::Instant;

use functions_runtime::Invocation;
use partner_billing_export::adapters::relay::CopyDigest;
use partner_billing_export::pipeline::PollJob;

fn gzip_lines(rows: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    for i in 0..rows {
        writeln!(
            e,
            r#"{{"PartnerId":"3b4c5d6e-0000-4000-8000-{i:012}","CustomerName":"Contoso {i}","MeterCategory":"Virtual Machines","Quantity":{q},"UnitPrice":0.0123,"BillingPreTaxTotal":{t},"UsageDate":"2026-10-{d:02}T00:00:00Z"}}"#,
            q = i % 97,
            t = (i % 97) as f64 * 0.0123,
            d = i % 28 + 1
        )
        .unwrap();
    }
    e.finish().unwrap()
}

fn bench_digest() {
    let data = gzip_lines(400_000);
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        let mut d = CopyDigest::new();
        for chunk in data.chunks(64 * 1024) {
            d.update(chunk);
        }
        let out = d.finish(Some(data.len() as u64), None).unwrap();
        assert_eq!(out.rows, Some(400_000));
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    println!(
        "copy verification (md5 + gunzip row count): {:.1} MiB compressed in {:.3} s = {:.0} MiB/s",
        data.len() as f64 / 1048576.0,
        secs,
        data.len() as f64 / 1048576.0 / secs
    );
}

fn bench_envelope() {
    let body =
        serde_json::json!({"v": 1, "runId": "20261125t100000-aaaaaaaaaaaa", "seq": 7}).to_string();
    let envelope = serde_json::json!({
        "Data": { "message": serde_json::to_string(&body).unwrap() },
        "Metadata": { "DeliveryCount": "1", "MessageId": "\"20261125t100000-aaaaaaaaaaaa-poll-7\"",
                      "EnqueuedTimeUtc": "2026-11-25T10:00:00", "MessageActions": {}, "Client": {"FullyQualifiedNamespace": "ns"},
                      "sys": {"MethodName": "PollOperation", "UtcNow": "2026-11-25T10:00:00.1234567Z", "RandGuid": "x"} }
    })
    .to_string();
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        let inv: Invocation = serde_json::from_str(&envelope).unwrap();
        let d = inv.service_bus("message").unwrap();
        let job = PollJob::try_from(&d.body).unwrap();
        std::hint::black_box(job);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "envelope decode (double-encoded Service Bus → PollJob): {:.0} invocations/s ({:.2} µs each)",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn bench_fan_in() {
    use partner_billing_export::adapters::filesystem::FilesystemLedger;
    use partner_billing_export::adapters::storage::{LedgerStore, ObjectPath};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let parts = 200u32;
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ledger = FilesystemLedger::new(dir.path());
        let key = ObjectPath::new("runs/bench.json").unwrap();
        ledger.create(&key, serde_json::to_vec(&vec![false; parts as usize]).unwrap()).await.unwrap();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..parts {
            let (l, k) = (ledger.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut tries = 0u32;
                loop {
                    tries += 1;
                    let (b, t) = l.read(&k).await.unwrap().unwrap();
                    let mut v: Vec<bool> = serde_json::from_slice(&b).unwrap();
                    v[p as usize] = true;
                    if l.replace(&k, serde_json::to_vec(&v).unwrap(), &t).await.unwrap().is_some() {
                        return tries;
                    }
                }
            }));
        }
        let mut total_tries = 0;
        for t in tasks {
            total_tries += t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "ledger fan-in: {parts} concurrent parts marked done in {secs:.3} s ({:.0} parts/s, {:.2} attempts per part)",
            parts as f64 / secs,
            total_tries as f64 / parts as f64
        );
    });
}

fn main() {
    bench_digest();
    bench_envelope();
    bench_fan_in();
}

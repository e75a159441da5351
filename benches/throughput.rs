//! `cargo bench --bench throughput`: figures for the hot paths, printed, never asserted.
//! - copy verification: MD5 + streaming gunzip row count per byte relayed (MB/s);
//! - envelope decoding: a double-encoded Service Bus invocation to a typed poll job (per second).
//!
//! (Fan-in of a run's parts has its own bench: `cargo bench -p partner-billing-export --bench fanin`.)

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

fn main() {
    bench_digest();
    bench_envelope();
}

//! An invocation envelope over the handler's limit is answered with 413 and a JSON body that
//! names the limit, after the upload was read: the sender sees our answer, not a reset
//! connection. Real HTTP on loopback, with and without Content-Length.

use functions_runtime::server::{self, FunctionRouter, MAX_ENVELOPE_BYTES};
use functions_runtime::{FunctionSpec, InvocationReply, TriggerBinding};
use serde_json::Value;

static TICK: FunctionSpec = FunctionSpec {
    name: "Tick",
    binding: "timer",
    trigger: TriggerBinding::Timer {
        schedule: "0 * * * * *",
    },
};

struct Running {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start() -> Self {
        let router =
            FunctionRouter::new().timer(&TICK, |_, _| async { Ok(InvocationReply::new()) });
        let (listener, addr) = server::bind(0).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(router, listener, async {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task,
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// A well-formed timer envelope padded with JSON whitespace to `len` bytes.
fn envelope(len: usize) -> Vec<u8> {
    let mut body = br#"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#.to_vec();
    assert!(len >= body.len());
    body.resize(len, b' ');
    body
}

async fn assert_too_large(res: reqwest::Response) {
    assert_eq!(res.status(), 413);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["limitBytes"], MAX_ENVELOPE_BYTES);
    let msg = body["Logs"][0].as_str().unwrap();
    assert!(
        msg.contains("too large") && msg.contains(&MAX_ENVELOPE_BYTES.to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn over_limit_envelope_gets_413_naming_the_limit() {
    let h = Running::start().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/Tick", h.base);

    // At the limit: accepted and dispatched.
    let res = client
        .post(&url)
        .body(envelope(MAX_ENVELOPE_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);

    // One byte over, with Content-Length.
    let res = client
        .post(&url)
        .body(envelope(MAX_ENVELOPE_BYTES + 1))
        .send()
        .await
        .expect("an answer, not a reset connection");
    assert_too_large(res).await;

    // Well over, chunked (no Content-Length).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|_| Ok(vec![b' '; 64 << 10])).collect();
    let res = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("an answer, not a reset connection");
    assert_too_large(res).await;

    // The handler still serves afterwards.
    let res = client.post(&url).body(envelope(64)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}

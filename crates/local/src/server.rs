//! A loopback warp server with graceful shutdown, shared by the local stand-ins.

use std::convert::Infallible;
use std::net::SocketAddr;

use tokio::sync::oneshot;
use warp::Filter;

pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn base_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("socket address URL")
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves `filter` on `127.0.0.1:port` (0 = any free port).
pub async fn spawn<F>(filter: F, port: u16) -> std::io::Result<ServerHandle>
where
    F: Filter<Error = Infallible> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        warp::serve(filter)
            .incoming(listener)
            .graceful(async move {
                let _ = rx.await;
            })
            .run()
            .await;
    });
    Ok(ServerHandle {
        addr,
        stop: Some(tx),
        task: Some(task),
    })
}

/// A JSON response with a status.
pub fn json_response(status: u16, body: &serde_json::Value) -> warp::reply::Response {
    let mut res = warp::reply::Response::new(body.to_string().into());
    *res.status_mut() = warp::http::StatusCode::from_u16(status)
        .unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    res
}

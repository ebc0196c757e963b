//! A plain hyper service: `seamless::hyper::serve` takes any hyper service
//! (a tower service through hyper-util's `TowerToHyperService`), speaks
//! HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on the same port, and
//! drains politely when `seamless::shutdown()` fires.
//!
//! ```text
//! cargo run --example hyper -- 127.0.0.1:8080 /tmp/hyper.pid
//! curl 'http://127.0.0.1:8080/?delay=2000'
//! ```

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};

async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay=")))
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let body = format!("Server pid: {}\n", std::process::id());
    Ok(Response::new(Full::new(Bytes::from(body))))
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/hyper.pid".into()),
    shutdown_timeout = "60s",
)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = seamless::net::tcp("web", addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    seamless::started();
    seamless::hyper::serve(listener, service_fn(hello)).await
}

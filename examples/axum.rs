//! tokio and axum: the listener comes from `seamless::net::tcp` (handed
//! over by the previous generation when there is one), and
//! `seamless::axum::serve` serves the app, HTTP/1.1 and HTTP/2 (cleartext,
//! prior knowledge) on the same port, until `seamless::shutdown()` fires;
//! then it drains without failing a request, keep-alive connections
//! included.
//!
//! `#[seamless::daemon]` stands above `#[tokio::main]`: the launcher split
//! runs before the runtime is built, so the launcher never starts tokio.
//!
//! ```text
//! cargo run --example axum -- 127.0.0.1:8080 /tmp/axum.pid
//! curl 'http://127.0.0.1:8080/?delay=2000'
//! curl --http2-prior-knowledge 'http://127.0.0.1:8080/'
//! ```

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;

async fn hello(Query(params): Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

/// The second argument, `/tmp/axum.pid` without one; an empty one runs
/// the server without seamless, as a plain process (the benchmark's
/// start-up comparison does).
fn pid_file() -> Option<String> {
    match std::env::args().nth(2) {
        None => Some("/tmp/axum.pid".into()),
        Some(path) if path.is_empty() => None,
        Some(path) => Some(path),
    }
}

#[seamless::daemon(
    pid_file = pid_file(),
    shutdown_timeout = "60s",
)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    // Non-blocking already, as tokio wants it.
    let listener = seamless::net::tcp("web", addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    seamless::started();

    let app = Router::new().route("/", get(hello));
    seamless::axum::serve(listener, app).await
}

//! The benchmark's comparison server for actix-web (`--servers
//! plain-actix`): the handler of `examples/actix.rs` under plain actix-web,
//! without seamless. It binds its address itself, and a TERM begins
//! actix's own graceful stop (`HttpServer`'s signal handling: stop
//! accepting, finish the requests in progress, close the connections), as
//! an actix-web service does by default; the supervisor starts the next
//! one once it has exited.
//!
//! It belongs to the root package, behind its feature `actix`, because
//! actix-web turns on tracing's `log` feature, which would slow the
//! benchmark's other comparison servers (hyper's HTTP/2) if the benchmark
//! depended on it.
//!
//! ```text
//! cargo run --release --bin plain-actix -- 127.0.0.1:8080
//! ```

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, App, HttpServer};

async fn hello(params: web::Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        actix_web::rt::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().route("/", web::get().to(hello)))
            .bind(addr)?
            .run()
            .await
    })
}

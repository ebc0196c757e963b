//! actix-web: the listener comes from `seamless::net::tcp` (handed over by
//! the previous generation when there is one), actix-web serves it, and
//! `seamless::actix::serve` stops it when `seamless::shutdown()` fires:
//! no more accepting, `Connection: close` on every response from then on
//! (the `CloseOnShutdown` middleware), and actix's graceful stop a linger
//! later, for the idle connections left.
//!
//! actix runs its own runtime (a `System`, one thread per worker), started
//! inside `main`, after the launcher split: the launcher never starts it.
//! Signals are seamless's: `disable_signals()`.
//!
//! ```text
//! cargo run --example actix -- 127.0.0.1:8080 /tmp/actix.pid
//! curl 'http://127.0.0.1:8080/?delay=2000'
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

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/actix.pid".into()),
    shutdown_timeout = "60s",
)]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = seamless::net::tcp("web", addr)?;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .wrap(seamless::actix::CloseOnShutdown)
                .route("/", web::get().to(hello))
        })
        .disable_signals()
        .listen(listener)?
        .run();
        seamless::started();
        seamless::actix::serve(server).await
    })
}

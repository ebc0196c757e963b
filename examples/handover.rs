//! A std HTTP server with a blocking-style accept loop whose listener is
//! handed from each generation to the next: not one connection is refused
//! or reset across a restart.
//!
//! ```text
//! cargo run --example handover -- 127.0.0.1:8080 /tmp/handover.pid
//! ```
//!
//! `seamless::net::tcp` returns the listener the previous generation handed
//! over, else one from systemd socket activation, else binds afresh.

mod support;

#[seamless::on_shutdown]
fn shutting_down() {
    log::info!("graceful shutdown of {}", std::process::id());
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/handover.pid".into()),
    handover_timeout = "10s",
    shutdown_timeout = "60s",
)]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = seamless::net::tcp("web", addr)?;
    seamless::started();
    support::serve_until_shutdown(listener)
}

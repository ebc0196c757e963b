//! The original's `reuseport` example, ported: an HTTP server whose every
//! generation binds afresh with SO_REUSEPORT, so old and new listen on the
//! same port while they overlap.
//!
//! This is the original's strategy, kept for comparison. Connections still
//! queued on the old generation's listener when it closes are reset by the
//! kernel; `examples/handover.rs` hands the listener itself over and drops
//! none.
//!
//! ```text
//! cargo build --example reuseport
//! supervise ./service    # service/run: exec .../reuseport 127.0.0.1:8080 /tmp/reuseport.pid
//! curl 'http://127.0.0.1:8080/?delay=2000'
//! svc -t ./service
//! ```

mod support;

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[seamless::on_shutdown]
fn shutting_down() {
    eprintln!("reuseport[{}]: graceful shutdown", std::process::id());
}

#[seamless::daemon(pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/reuseport.pid".into()))]
fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = listen(addr)?;
    listener.set_nonblocking(true)?;
    // The socket is bound: the previous generation may go.
    seamless::started();

    support::serve_until_shutdown(listener)
}

//! The original's `unixsocket` example, ported: an HTTP server on a unix
//! socket.
//!
//! The original made each generation remove the socket file and bind again,
//! a window in which clients get ENOENT or ECONNREFUSED. Here the listening
//! socket itself is handed over; when there is none to take over, it is
//! bound at a temporary path and renamed over the target, so a socket is at
//! the path at every moment.
//!
//! ```text
//! cargo run --example unixsocket -- /tmp/unixsocket.sock /tmp/unixsocket.pid
//! curl --unix-socket /tmp/unixsocket.sock 'http://x/?delay=2000'
//! ```

mod support;

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/unixsocket.pid".into()),
)]
fn main() -> std::io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/unixsocket.sock".into());
    let listener = seamless::net::unix("http", path)?;
    seamless::started();
    support::serve_until_shutdown(listener)
}

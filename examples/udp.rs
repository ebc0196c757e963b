//! A UDP echo service whose socket is handed to the next generation:
//! datagrams queued on it are read by the new generation, not dropped.
//!
//! ```text
//! cargo run --example udp -- 127.0.0.1:5353 /tmp/udp.pid
//! ```

use std::time::Duration;

#[seamless::daemon(pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/udp.pid".into()))]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into());
    let socket = seamless::net::udp("echo", addr)?;
    seamless::started();

    let shutdown = seamless::shutdown();
    let mut buf = [0u8; 1500];
    while !shutdown.is_triggered() {
        // The socket is non-blocking: wait for a datagram, waking up now and
        // then to see whether the shutdown has begun.
        if !seamless::net::readable(&socket, Duration::from_millis(50))? {
            continue;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let reply = format!(
                    "{} {}",
                    std::process::id(),
                    String::from_utf8_lossy(&buf[..n])
                );
                socket.send_to(reply.as_bytes(), peer)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! A UDP echo service whose socket is handed to the next generation:
//! datagrams queued on it are read by the new generation, not dropped.
//!
//! ```text
//! cargo run --example udp -- 127.0.0.1:5353 /tmp/udp.pid
//! ```

#[seamless::daemon(pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/udp.pid".into()))]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5353".into());
    let socket = seamless::net::udp("echo", addr)?;
    seamless::started();

    let mut buf = [0u8; 1500];
    // The socket is non-blocking: sleep until a datagram or the shutdown.
    while seamless::net::readable_before_shutdown(&socket)? {
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

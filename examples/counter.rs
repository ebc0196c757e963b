//! State handed to the next generation: a generation counter that survives
//! every restart, and is checked before the new generation serves.
//!
//! ```text
//! cargo run --example counter -- 127.0.0.1:8080 /tmp/counter.pid
//! curl 127.0.0.1:8080/            # generation 1 (and the pid)
//! seamless restart /tmp/counter.pid
//! curl 127.0.0.1:8080/            # generation 2
//! ```
//!
//! The old generation offers its number in an `on_shutdown_request`
//! handler (stage 1); the new one takes it before `started()`. State it
//! cannot decode is refused: the new generation exits with status 1 before
//! `started()`, the old one serves on, and `seamless restart` says so.
//! (`COUNTER_OFFER=garbage` makes a generation offer 3 bytes, to show
//! that.)

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

#[seamless::on_shutdown_request]
fn offer_the_counter() {
    let number = GENERATION.load(Ordering::SeqCst);
    let bytes = match std::env::var("COUNTER_OFFER").as_deref() {
        Ok("garbage") => b"???".to_vec(),
        _ => number.to_le_bytes().to_vec(),
    };
    if let Err(e) = seamless::state::offer("generation", bytes, &[]) {
        log::error!("cannot offer the counter: {e}");
    }
}

/// The previous generation's number, or 0 on a first start.
fn previous() -> std::io::Result<u64> {
    let Some(state) = seamless::state::take("generation")? else {
        return Ok(0);
    };
    let bytes: [u8; 8] = state.bytes.as_slice().try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the previous generation's counter is {} bytes, not 8: refused",
                state.bytes.len()
            ),
        )
    })?;
    Ok(u64::from_le_bytes(bytes))
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/counter.pid".into()),
    handover_timeout = "10s",
    shutdown_timeout = "30s",
)]
fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    // Before started(): an error here fails the restart cleanly.
    let number = previous()? + 1;
    GENERATION.store(number, Ordering::SeqCst);
    let listener = seamless::net::tcp("web", addr)?;
    seamless::started();
    let mut workers = Vec::new();
    while let Some((stream, _)) = seamless::net::accept(&listener)? {
        workers.push(std::thread::spawn(move || answer(stream, number)));
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn answer(stream: std::net::TcpStream, number: u64) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 2) {
        line.clear();
    }
    let body = format!("generation {number}\npid {}\n", std::process::id());
    let _ = write!(
        reader.into_inner(),
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

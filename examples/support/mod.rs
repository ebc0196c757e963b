//! What the example servers share: a minimal HTTP/1.1 answer and an accept
//! loop that stops when seamless says so.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// Reads one request, honours `?delay=<ms>`, answers with our pid, closes.
pub(crate) fn answer<S: Read + Write>(stream: S) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    if let Some(ms) = request
        .split_once("delay=")
        .and_then(|(_, v)| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms.min(60_000)));
    }
    let body = format!("Server pid: {}\n", std::process::id());
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Accepts from `listener` until the shutdown begins, answering each
/// connection on its own thread; then takes what is already queued, closes
/// the listener at once, and waits for the answers in flight.
///
/// `seamless::net::accept` sleeps until a connection or the shutdown comes:
/// an idle server never wakes.
///
/// Closing the listener the moment the shutdown begins matters: a listener
/// left open while slow requests finish goes on queueing connections that
/// nobody accepts, and the kernel resets them when the process exits. A
/// handed-over socket lives on in the next generation, which accepts from
/// the same queue; a socket of our own (`SO_REUSEPORT`) has a queue of its
/// own, emptied just before it closes.
pub(crate) fn serve_until_shutdown<L>(listener: L) -> std::io::Result<()>
where
    L: seamless::net::Accept,
    L::Stream: Read + Write + Send + 'static,
{
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let spawn = |stream: L::Stream| {
        std::thread::spawn(move || {
            let _ = answer(stream);
        })
    };
    while let Some((stream, _)) = seamless::net::accept(&listener)? {
        workers.push(spawn(stream));
        workers.retain(|w| !w.is_finished());
    }
    // What is queued already was meant for us: serve it, then close.
    while let Ok((stream, _)) = listener.accept_now() {
        workers.push(spawn(stream));
    }
    drop(listener);
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

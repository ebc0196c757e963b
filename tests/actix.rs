//! The actix-web example (`seamless::actix::serve` and its
//! `CloseOnShutdown` middleware) restarted 20 times under HTTP/1.1 load:
//! keep-alive clients (back to back, and with pauses that leave their
//! connection idle), new-connection loops and slow requests. Not one
//! request may fail: a keep-alive client may see its connection closed
//! only after a response marked `Connection: close`, never under a request
//! it sent.
//!
//! The clients are the test's own (no tool to install): each keep-alive
//! client sends a request, reads the answer, and opens a new connection
//! only when the server said `Connection: close`.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::read_response;
use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);
const RESTARTS: u32 = 20;
const INTERVAL: Duration = Duration::from_millis(1000);

#[derive(Default)]
struct Tally {
    keepalive_ok: AtomicUsize,
    /// Keep-alive connections the server closed politely (after a
    /// response marked `Connection: close`).
    closed_politely: AtomicUsize,
    newconn_ok: AtomicUsize,
    slow_ok: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
}

/// A keep-alive client: requests back to back on one connection, `pause`
/// between them, and a new connection only after `Connection: close` (or
/// after a failure, which is counted).
fn keepalive_client(port: u16, pause: Duration, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    'connections: for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(e) => return tally.fail(format!("keep-alive connect: {e}")),
        };
        stream.set_read_timeout(Some(T)).unwrap();
        let mut reader = BufReader::new(stream);
        for _ in 0..1_000_000 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let sent = reader
                .get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let answer = sent.and_then(|()| read_response(&mut reader));
            match answer {
                Ok(r) if r.status == 200 && r.pid != 0 => {
                    tally.keepalive_ok.fetch_add(1, Ordering::SeqCst);
                    if r.close {
                        tally.closed_politely.fetch_add(1, Ordering::SeqCst);
                        continue 'connections;
                    }
                }
                Ok(r) => {
                    tally.fail(format!("keep-alive: status {} pid {}", r.status, r.pid));
                    continue 'connections;
                }
                Err(e) => {
                    tally.fail(format!("keep-alive: {e}"));
                    continue 'connections;
                }
            }
            std::thread::sleep(pause);
        }
    }
}

/// `GET path` on a new connection each time.
fn newconn_loop(port: u16, path: &'static str, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match get_pid(port, path) {
            Ok(_) if path.contains("delay") => tally.slow_ok.fetch_add(1, Ordering::SeqCst),
            Ok(_) => tally.newconn_ok.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                tally.fail(format!("{path}: {e}"));
                0
            }
        };
    }
}

/// `GET path` on a new connection; the pid named in the answer.
fn get_pid(port: u16, path: &str) -> std::io::Result<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(T))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let r = read_response(&mut BufReader::new(stream))?;
    if r.status != 200 || r.pid == 0 {
        return Err(std::io::Error::other(format!(
            "status {} pid {}",
            r.status, r.pid
        )));
    }
    Ok(r.pid)
}

#[test]
fn actix_drops_nothing_across_20_restarts() {
    let actix = example("actix");
    let sb = Sandbox::new("actix");
    let port = sb.port;
    let start = || sb.start_example(&actix);
    let wait_generation = |except: &[i32]| {
        sb.wait_generation(except, T, |p| {
            get_pid(port, "/").is_ok_and(|answered| answered == p as u32)
        })
    };

    let mut launcher = start();
    let mut served = vec![wait_generation(&[])];

    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    // Back to back (wrk's way), 1 ms apart, and 50 ms apart: the last
    // leave their connection idle when the shutdown comes.
    for pause in [0, 0, 1, 50] {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            keepalive_client(port, Duration::from_millis(pause), stop, tally)
        }));
    }
    for path in ["/", "/", "/?delay=500", "/?delay=500"] {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            newconn_loop(port, path, stop, tally)
        }));
    }

    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..RESTARTS {
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        launcher = start();
        served.push(wait_generation(&served));
        std::thread::sleep(INTERVAL.saturating_sub(Duration::from_millis(100)));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }

    let errors = tally.errors.lock().unwrap().clone();
    let count = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    let (keepalive, polite, newconn, slow) = (
        count(&tally.keepalive_ok),
        count(&tally.closed_politely),
        count(&tally.newconn_ok),
        count(&tally.slow_ok),
    );
    eprintln!(
        "actix, {RESTARTS} restarts: keep-alive {keepalive} ok ({polite} connections closed \
         with Connection: close), new connections {newconn} ok, slow {slow} ok, {} failed",
        errors.len()
    );
    // Every older generation is gone; the last one serves.
    let last = *served.last().unwrap();
    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
    assert_eq!(get_pid(port, "/").unwrap(), last as u32);
    assert!(
        keepalive > 1000 && newconn > 100 && slow > 20,
        "the load ran: keep-alive {keepalive}, new connections {newconn}, slow {slow}"
    );
    // Each restart moved the keep-alive clients with a `Connection: close`.
    assert!(
        polite >= RESTARTS as usize,
        "only {polite} keep-alive connections were closed politely"
    );
    assert!(errors.is_empty(), "failed requests: {errors:?}");
}

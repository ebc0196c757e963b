//! The test daemon driven by the integration tests and the benchmark
//! (`bench/`): a small HTTP/1.1 server on std threads, run by seamless.
//!
//! Configured through the environment (the launcher passes it on to each
//! generation unchanged):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TESTD_PID_FILE` | pid file; unset or empty disables seamless |
//! | `TESTD_ADDR` | listen address, e.g. `127.0.0.1:18080` |
//! | `TESTD_EVENTS` | file to which events are appended, one line each |
//! | `TESTD_START_DELAY_MS` | sleep before `started()` (a slow new version) |
//! | `TESTD_CRASH` | `panic`, `exit3` or `abort` on start, before listening |
//! | `TESTD_HANG_HANDLER` | a shutdown handler that never returns |
//! | `TESTD_EXIT_CODE` | exit code `main` returns after a clean shutdown |
//! | `TESTD_LISTEN` | `reuseport`: bind afresh with SO_REUSEPORT, no handover |
//! | `TESTD_NEVER_STARTED` | serve without ever calling `started()` (a broken new version) |
//!
//! Requests: `GET /` answers `pid <pid>`; `GET /?delay=<ms>` waits first;
//! `GET /exit?code=N` makes main return N at once (a crash-like exit).
//! During the drain, the next request on each keep-alive connection is
//! answered with `Connection: close`; idle connections are closed after a
//! short grace period; main returns once no connection is left.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use std::time::{Duration, Instant};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static EXIT_NOW: AtomicI32 = AtomicI32::new(-1);
static STOP: AtomicBool = AtomicBool::new(false);

fn event(what: &str) {
    if let Some(path) = std::env::var_os("TESTD_EVENTS") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line: appends from several processes interleave
            // by whole lines.
            let _ = f.write_all(format!("{} {}\n", what, std::process::id()).as_bytes());
        }
    }
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

#[seamless::on_shutdown]
fn drain_handler() {
    event("shutdown-handler");
    if std::env::var_os("TESTD_HANG_HANDLER").is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[seamless::on_shutdown_request]
fn restart_requested() {
    event("shutdown-request-handler");
}

#[seamless::on_child_launch]
fn child_launched() {
    event("child-launch-handler");
}

#[seamless::daemon(
    pid_file = std::env::var("TESTD_PID_FILE").ok(),
    prepare_timeout = "3s",
    handover_timeout = "3s",
    shutdown_timeout = "8s",
)]
fn main() -> ExitCode {
    event("start");
    match std::env::var("TESTD_CRASH").as_deref() {
        Ok("panic") => panic!("TESTD_CRASH=panic"),
        Ok("exit3") => return ExitCode::from(3),
        Ok("abort") => std::process::abort(),
        _ => {}
    }
    let addr = std::env::var("TESTD_ADDR").unwrap_or_else(|_| "127.0.0.1:18080".into());
    let listener = match listen(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testd: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(delay) = env_ms("TESTD_START_DELAY_MS") {
        std::thread::sleep(delay);
    }
    if std::env::var_os("TESTD_NEVER_STARTED").is_none() {
        seamless::started();
        event("ready");
    }

    serve(&listener);

    // Drain: wait for the connections in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ACTIVE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let code = EXIT_NOW.load(Ordering::SeqCst);
    event("main-returns");
    if code >= 0 {
        return ExitCode::from(code as u8);
    }
    std::env::var("TESTD_EXIT_CODE")
        .ok()
        .and_then(|c| c.parse::<u8>().ok())
        .map(ExitCode::from)
        .unwrap_or(ExitCode::SUCCESS)
}

fn listen(addr: &str) -> std::io::Result<TcpListener> {
    if std::env::var("TESTD_LISTEN").as_deref() != Ok("reuseport") {
        return seamless::net::tcp("web", addr);
    }
    let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst) || seamless::shutdown().is_triggered()
}

/// Accepts until the shutdown begins; each connection on its own thread.
fn serve(listener: &TcpListener) {
    let fd = listener.as_raw_fd();
    while !stopping() {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 20) };
        if n <= 0 || stopping() {
            continue;
        }
        // The listener may be shared with another generation: the
        // connection may have been taken already; it is non-blocking.
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).ok();
                ACTIVE.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = connection(stream);
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(_) => continue,
        }
    }
}

fn connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let fd = stream.as_raw_fd();
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        if reader.buffer().is_empty() && !wait_readable(fd) {
            return Ok(()); // idle past the grace period of the drain
        }
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        if !handle(&mut reader, &mut writer, &request_line)? {
            return Ok(());
        }
    }
}

/// Waits for the next request on an idle keep-alive connection; false when
/// the drain has begun and the connection stayed idle for 250 ms.
fn wait_readable(fd: i32) -> bool {
    let mut idle_since_stop: Option<Instant> = None;
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
            return true;
        }
        if stopping() {
            let since = *idle_since_stop.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(250) {
                return false;
            }
        }
    }
}

/// Answers one request; returns whether the connection stays open.
fn handle(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request_line: &str,
) -> std::io::Result<bool> {
    let mut client_close = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(false);
        }
        let h = header.trim_end();
        if h.is_empty() {
            break;
        }
        if h.to_ascii_lowercase().starts_with("connection:")
            && h.to_ascii_lowercase().contains("close")
        {
            client_close = true;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    if let Some(ms) = param("delay") {
        std::thread::sleep(Duration::from_millis(ms.min(60_000)));
    }
    if path == "/exit" {
        EXIT_NOW.store(param("code").unwrap_or(1) as i32, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
    }
    let close = client_close || stopping();
    let body = format!("pid {}\n", std::process::id());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{}",
        body.len(),
        if close { "close" } else { "keep-alive" },
        body
    );
    writer.write_all(response.as_bytes())?;
    Ok(!close)
}

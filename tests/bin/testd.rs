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
//! | `TESTD_PANIC_AFTER_STARTED_MS` | panic on a thread this long after `started()`, and exit 101 as a panicking `main` would (a new version that fails on its first real work) |
//!
//! `testd-probation` (`tests/bin/testd_probation.rs`) is this program with
//! `probation = "2s"`.
//!
//! Requests: `GET /` answers `pid <pid>`; `GET /?delay=<ms>` waits first;
//! `GET /exit?code=N` makes main return N at once (a crash-like exit).
//! During the drain, the next request on each keep-alive connection is
//! answered with `Connection: close`; idle connections are closed after a
//! short grace period; main returns once no connection is left.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static EXIT_NOW: AtomicI32 = AtomicI32::new(-1);
static STOP: AtomicBool = AtomicBool::new(false);
/// An eventfd made readable with `STOP`, so that waits in `poll` end.
static STOP_FD: OnceLock<OwnedFd> = OnceLock::new();

fn stop_fd() -> RawFd {
    STOP_FD
        .get_or_init(|| {
            // SAFETY: eventfd(2) takes no pointers; the fd it returns is
            // checked and owned from here on.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh fd of ours, owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .as_raw_fd()
}

fn stop() {
    STOP.store(true, Ordering::SeqCst);
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to our eventfd.
    unsafe { libc::write(stop_fd(), one.as_ptr().cast(), one.len()) };
}

fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Waits on `fds` with no timeout (`-1`) or at most `ms`; the number ready.
fn poll(fds: &mut [libc::pollfd], ms: i32) -> i32 {
    // SAFETY: `fds` is a live slice of pollfd for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
}

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
    pid_file = std::env::var("TESTD_PID_FILE").ok().filter(|p| !p.is_empty()),
    prepare_timeout = "3s",
    handover_timeout = "3s",
    shutdown_timeout = "8s",
)]
#[allow(dead_code)] // unused where this file is a module (testd-probation)
fn main() -> ExitCode {
    run()
}

/// Everything but the attribute's settings.
pub(crate) fn run() -> ExitCode {
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
    if let Some(after) = env_ms("TESTD_PANIC_AFTER_STARTED_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            event("panics");
            let _ = std::panic::catch_unwind(|| panic!("TESTD_PANIC_AFTER_STARTED_MS"));
            std::process::exit(101);
        });
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
/// It sleeps in `poll` on the listener, the shutdown's fd and the stop fd,
/// with no timeout: an idle testd never wakes.
fn serve(listener: &TcpListener) {
    let mut fds = [
        pollin(listener.as_raw_fd()),
        pollin(seamless::shutdown().as_raw_fd()),
        pollin(stop_fd()),
    ];
    while !stopping() {
        if poll(&mut fds, -1) <= 0 || stopping() {
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
/// the drain has begun and the connection stayed idle for 250 ms. Until
/// the drain, it waits on the connection and the shutdown, with no timer.
fn wait_readable(fd: RawFd) -> bool {
    let mut fds = [
        pollin(fd),
        pollin(seamless::shutdown().as_raw_fd()),
        pollin(stop_fd()),
    ];
    while !stopping() {
        poll(&mut fds, -1);
        if fds[0].revents != 0 {
            return true;
        }
    }
    poll(&mut fds[..1], 250) > 0
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
        stop();
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

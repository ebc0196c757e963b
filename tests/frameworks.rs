//! The axum example (`seamless::axum::serve`, HTTP/1.1 and HTTP/2 on one
//! port) restarted 20 times under load from independent clients: wrk
//! (HTTP/1.1 keep-alive), h2load (HTTP/2, prior knowledge; run 1 s at a
//! time, since it does not reconnect after a GOAWAY), and loops of
//! new-connection and slow requests, and an HTTP/2 client of the test's own
//! (hyper's, 4 connections with 10 streams in flight each). Not one request
//! may fail: no socket error and no non-2xx answer in wrk's report, no
//! failed stream for the HTTP/2 client, no error in the loops.
//!
//! h2load's "errored" count is not asserted to be zero, but to hold only
//! requests h2load never sent: when a GOAWAY arrives in the same read as
//! the end of a response, h2load has already queued its next request,
//! which nghttp2 then refuses to send (no stream may be opened after a
//! GOAWAY); h2load counts it failed and does not retry it (nor reconnect:
//! it reconnects only on an HTTP/1.1 `Connection: close`). Its
//! per-request log gives such a request a start time of 0, since the frame
//! that would have started it was never written. So every errored stream
//! of its summary must be in its log, unanswered, with start time 0; a
//! request it sent and lost would be missing from the log or logged with
//! its start time. Such a request never reached the server, and a client
//! may always retry it (RFC 9113, 8.7); the HTTP/2 client here tells those
//! apart (hyper returns the unsent request) and fails on everything else.
//!
//! wrk and h2load (Debian: `wrk`, `nghttp2-client`) are required in CI
//! (`CI` set); elsewhere the test prints `NOT RUN` and passes.

mod common;
#[path = "common/h2.rs"]
mod h2_rules;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);
const RESTARTS: u32 = 20;
const INTERVAL: Duration = Duration::from_millis(1000);

/// The path of a tool, or `None` (said loudly) when it is missing outside
/// CI.
#[track_caller]
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        common::not_run(&format!("{name} not installed (apt-get install {package})"));
    }
    found
}

/// `GET path` on a new connection; the pid named in the answer.
fn get_pid(port: u16, path: &str) -> std::io::Result<i32> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(T))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad answer: {answer:?}")));
    }
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Server pid: "))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no pid in {answer:?}")))
}

#[derive(Default)]
struct Loops {
    ok: AtomicUsize,
    slow_ok: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

fn request_loop(port: u16, path: &'static str, stop: Arc<AtomicBool>, tally: Arc<Loops>) {
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match get_pid(port, path) {
            Ok(_) if path.contains("delay") => tally.slow_ok.fetch_add(1, Ordering::SeqCst),
            Ok(_) => tally.ok.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                tally.errors.lock().unwrap().push(format!("{path}: {e}"));
                0
            }
        };
    }
}

/// What the HTTP/2 client of this test saw.
#[derive(Default)]
struct H2Tally {
    ok: AtomicUsize,
    /// Requests the client could not send because the connection had
    /// received a GOAWAY, or that the server refused (see `h2_rules::unprocessed`):
    /// retried on a new connection, as RFC 9113 (6.8) allows, not failures.
    retried: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// An HTTP/2 client that behaves like a real one (hyper's, in this test
/// process): 4 connections, 10 streams in flight on each, a new connection
/// after a GOAWAY, and a request retried only when it is provably
/// unprocessed: never sent, or refused. Any other error (a stream reset,
/// a connection lost under a request, a truncated body, a status other
/// than 200) is a failure.
fn h2_client(port: u16, stop: Arc<AtomicBool>, tally: Arc<H2Tally>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connections: Vec<_> = (0..4)
            .map(|_| tokio::spawn(h2_connection_loop(port, stop.clone(), tally.clone())))
            .collect();
        for c in connections {
            c.await.unwrap();
        }
    });
}

async fn h2_connection_loop(port: u16, stop: Arc<AtomicBool>, tally: Arc<H2Tally>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let fail = |e: String| tally.errors.lock().unwrap().push(e);
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(e) => return fail(format!("h2 connect: {e}")),
        };
        let (sender, connection) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(e) => return fail(format!("h2 handshake: {e}")),
            };
        tokio::spawn(connection);
        let streams: Vec<_> = (0..10)
            .map(|_| {
                let (mut sender, stop, tally) = (sender.clone(), stop.clone(), tally.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        if sender.ready().await.is_err() {
                            return; // the connection is closing: a new one
                        }
                        let request = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
                            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                            .unwrap();
                        match sender.try_send_request(request).await {
                            Ok(response) => {
                                use http_body_util::BodyExt;
                                let status = response.status();
                                match response.into_body().collect().await {
                                    Ok(body) if status == 200 => {
                                        let body = body.to_bytes();
                                        if body.starts_with(b"Server pid: ") {
                                            tally.ok.fetch_add(1, Ordering::SeqCst);
                                        } else {
                                            let e = format!("h2: bad body {body:?}");
                                            tally.errors.lock().unwrap().push(e);
                                        }
                                    }
                                    Ok(_) => {
                                        tally.errors.lock().unwrap().push(format!("h2: {status}"))
                                    }
                                    Err(e) => {
                                        tally.errors.lock().unwrap().push(format!("h2 body: {e}"))
                                    }
                                }
                            }
                            Err(e) if e.message().is_some() || h2_rules::unprocessed(e.error()) => {
                                tally.retried.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => {
                                let e = format!("h2 request: {:?}", e.into_error());
                                tally.errors.lock().unwrap().push(e);
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        for s in streams {
            s.await.unwrap();
        }
    }
}

/// wrk's report: requests, and every error it counted (socket errors,
/// non-2xx answers).
fn wrk_summary(out: &str) -> (u64, Vec<String>) {
    let requests = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.to_owned())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"));
    let errors = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors:") || l.starts_with("Non-2xx or 3xx responses:"))
        .map(str::to_owned)
        .collect();
    (requests, errors)
}

/// The `errored` count of h2load's summary.
fn h2load_errored(out: &str) -> u64 {
    out.lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|line| {
            line.split(',')
                .find_map(|part| part.trim().strip_suffix("errored"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no errored count in h2load's output:\n{out}"))
}

/// The requests h2load's per-request log shows it never sent.
fn h2load_never_sent(log: &str) -> u64 {
    log.lines()
        .filter(|l| h2_rules::h2load_never_sent(l))
        .count() as u64
}

/// h2load's report: requests succeeded, and the counts that must be 0.
fn h2load_summary(out: &str) -> (u64, Vec<String>) {
    let line = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no summary in h2load's output:\n{out}"));
    // requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
    let count = |what: &str| -> u64 {
        line.split(',')
            .find_map(|part| part.trim().strip_suffix(what))
            .map(|n| n.trim().trim_start_matches("requests:").trim())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what:?} in {line:?}"))
    };
    let mut errors = Vec::new();
    for what in ["failed", "errored", "timeout"] {
        if count(what) != 0 {
            errors.push(line.to_owned());
            break;
        }
    }
    if let Some(codes) = out.lines().find(|l| l.starts_with("status codes:")) {
        // status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx
        let bad = codes
            .split(',')
            .skip(1)
            .any(|part| !part.trim().starts_with("0 "));
        if bad {
            errors.push(codes.to_owned());
        }
    }
    (count("succeeded"), errors)
}

#[test]
fn summaries_are_parsed() {
    let wrk = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 4 connections\n  \
               12345 requests in 1.00s, 1.2MB read\n  Socket errors: connect 0, read 4, write 0, timeout 0\n\
               Requests/sec:  12345.00\n";
    assert_eq!(
        wrk_summary(wrk),
        (
            12345,
            vec!["Socket errors: connect 0, read 4, write 0, timeout 0".to_owned()]
        )
    );
    let h2 = "requests: 100 total, 100 started, 100 done, 99 succeeded, 1 failed, 1 errored, 0 timeout\n\
              status codes: 99 2xx, 0 3xx, 0 4xx, 0 5xx\n";
    let (ok, errors) = h2load_summary(h2);
    assert_eq!((ok, errors.len()), (99, 1));
    let h2 = "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout\n\
              status codes: 99 2xx, 0 3xx, 0 4xx, 1 5xx\n";
    assert_eq!(h2load_summary(h2).1.len(), 1);
    assert_eq!(h2load_errored(h2), 0);
    // From a real log: two answers, then the request queued after the
    // GOAWAY, never sent.
    let log = "1795694405141855\t200\t212\n1795694405141870\t200\t250\n0\t-1\t9869452306\n";
    assert_eq!(h2load_never_sent(log), 1);
    assert_eq!(h2load_never_sent("1795694405141855\t-1\t212\n"), 0);
}

#[test]
fn axum_drops_nothing_across_20_restarts_under_wrk_and_h2load() {
    let (Some(wrk), Some(h2load)) = (tool("wrk", "wrk"), tool("h2load", "nghttp2-client")) else {
        return;
    };
    let axum = example("axum");
    let sb = Sandbox::new("axum");
    let port = sb.port;
    let url = format!("http://127.0.0.1:{port}/");
    let start = || {
        let mut c = Command::new(&axum);
        c.arg(format!("127.0.0.1:{port}"))
            .arg(sb.pid_file())
            .stdin(Stdio::null())
            .current_dir(&sb.dir);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        sb.start_with(c)
    };
    // A generation is up once the pid file names it and it answers.
    let wait_generation = |except: &[i32]| -> i32 {
        let mut pid = None;
        wait_until(T, || {
            pid = sb
                .pid_in_file()
                .filter(|p| !except.contains(p))
                .filter(|p| get_pid(port, "/").is_ok_and(|answered| answered == *p));
            pid.is_some()
        });
        pid.unwrap_or_else(|| panic!("no new generation; output: {}", sb.output()))
    };

    let mut launcher = start();
    let mut served = vec![wait_generation(&[])];

    let stop = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(Loops::default());
    let mut threads = Vec::new();
    for i in 0..6 {
        let (stop, loops) = (stop.clone(), loops.clone());
        let path = if i < 2 { "/" } else { "/?delay=500" };
        threads.push(std::thread::spawn(move || {
            request_loop(port, path, stop, loops)
        }));
    }
    let seconds = (INTERVAL * RESTARTS).as_secs() + 3;
    let wrk = Command::new(wrk)
        .args(["-t1", "-c4", &format!("-d{seconds}s"), &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk");
    // h2load does not reconnect an HTTP/2 client whose connection the
    // server closed after a GOAWAY (its clients reconnect only on an
    // HTTP/1.1 `Connection: close`): a single run would test the first
    // restart alone. So it runs 1 s at a time, back to back, and each run
    // meets the restarts that fall in it with 10 streams in flight on each
    // of its 4 connections.
    let h2load = {
        let (stop, url, log) = (stop.clone(), url.clone(), sb.dir.join("h2load-log"));
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::SeqCst) && runs.len() < 1000 {
                // h2load appends to its log: one log per run.
                let _ = std::fs::remove_file(&log);
                let out = Command::new(&h2load)
                    .args(["-c4", "-m10", "-D", "1", &url])
                    .arg(format!("--log-file={}", log.display()))
                    .output()
                    .expect("h2load");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                runs.push((text, log));
            }
            runs
        })
    };
    let h2_tally = Arc::new(H2Tally::default());
    let h2_client = {
        let (stop, tally) = (stop.clone(), h2_tally.clone());
        std::thread::spawn(move || h2_client(port, stop, tally))
    };
    let _stop = StopOnDrop(stop.clone());
    let wrk = ChildGuard(Some(wrk));

    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..RESTARTS {
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        launcher = start();
        served.push(wait_generation(&served));
        std::thread::sleep(INTERVAL.saturating_sub(Duration::from_millis(100)));
    }
    let wrk_out = wrk.output();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let h2load_runs = h2load.join().unwrap();
    h2_client.join().unwrap();

    let (wrk_requests, wrk_errors) = wrk_summary(&wrk_out);
    let (mut h2_requests, mut h2_errors) = (0, Vec::new());
    let (mut h2_errored, mut h2_never_sent) = (0, 0);
    for (out, log) in &h2load_runs {
        let (ok, errors) = h2load_summary(out);
        h2_requests += ok;
        h2_errors.extend(errors);
        let (errored, never_sent) = (h2load_errored(out), h2load_never_sent(log));
        assert_eq!(
            errored, never_sent,
            "h2load counted {errored} stream(s) errored, but only {never_sent} of them \
             were requests it never sent:\n{out}\n{log}"
        );
        h2_errored += errored;
        h2_never_sent += never_sent;
    }
    let h2_client_errors = h2_tally.errors.lock().unwrap().clone();
    let (h2_ok, h2_retried) = (
        h2_tally.ok.load(Ordering::SeqCst),
        h2_tally.retried.load(Ordering::SeqCst),
    );
    let loop_errors = loops.errors.lock().unwrap().clone();
    let (ok, slow) = (
        loops.ok.load(Ordering::SeqCst),
        loops.slow_ok.load(Ordering::SeqCst),
    );
    eprintln!(
        "axum, {RESTARTS} restarts: wrk {wrk_requests} requests {wrk_errors:?}; \
         h2load {h2_requests} succeeded in {} runs, {h2_errored} errored, \
         {h2_never_sent} of them never sent {h2_errors:?}; \
         HTTP/2 client {h2_ok} ok, {h2_retried} unsent and retried, {} failed; \
         loops {ok} + {slow} slow ok, {} failed",
        h2load_runs.len(),
        h2_client_errors.len(),
        loop_errors.len()
    );
    // Every older generation is gone; the last one serves.
    let last = *served.last().unwrap();
    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
    assert_eq!(get_pid(port, "/").unwrap(), last);
    assert!(
        wrk_requests > 1000 && h2_requests > 1000 && h2_ok > 1000 && ok > 100 && slow > 20,
        "the load ran: wrk {wrk_requests}, h2load {h2_requests}, HTTP/2 client {h2_ok}, \
         loops {ok} / {slow}"
    );
    assert!(wrk_errors.is_empty(), "wrk: {wrk_errors:?}\n{wrk_out}");
    assert!(
        h2_client_errors.is_empty(),
        "HTTP/2 requests failed: {h2_client_errors:?}"
    );
    // h2load's errored streams were all never sent (asserted above, run
    // by run): see the module documentation. What it must never see is an
    // answer other than 2xx.
    assert!(
        h2_errors.iter().all(|e| e.starts_with("requests:")),
        "h2load: {h2_errors:?}"
    );
    assert!(loop_errors.is_empty(), "failed requests: {loop_errors:?}");
}

/// Stops the load loops if the test fails before it is done.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A load tool, killed if the test fails before it is done.
struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    /// Waits for the tool to finish; its standard output and error.
    fn output(mut self) -> String {
        let out = self.0.take().unwrap().wait_with_output().expect("wait");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! The TLS example (`examples/tls.rs`, `seamless::axum::serve(..).tls(..)`
//! with `seamless::tls::Ticketer`) across restarts, seen by a rustls client
//! that keeps the sessions it is given and counts how each handshake went:
//!
//! - a session saved before a restart resumes on the new generation;
//! - keys the previous generation offers that cannot be read (it offers
//!   garbage) do not fail the restart: the new generation says so, makes
//!   new keys and serves; the saved session makes one full handshake, and
//!   the handover works again at the next restart;
//! - every answer ends with the server's `close_notify` (a read that ends
//!   without it is an error here);
//! - keep-alive clients over TLS lose no request across the restarts.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use seamless::tls::rustls;
use seamless::tls::rustls::pki_types::{CertificateDer, ServerName};
use seamless::tls::rustls::HandshakeKind;

const T: Duration = Duration::from_secs(20);

/// A rustls client trusting the sandbox's certificate; with `resume`, it
/// keeps the tickets it is given and offers them.
fn client(cert: &CertificateDer<'static>, resume: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(config: &Arc<rustls::ClientConfig>, port: u16) -> std::io::Result<Tls> {
    let name = ServerName::try_from("localhost").unwrap();
    let connection =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(T))?;
    let mut tls = rustls::StreamOwned::new(connection, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET /` over TLS on a new connection, `Connection: close`: the pid that
/// answered and how the handshake went. The answer must end with the
/// server's `close_notify`.
fn get(config: &Arc<rustls::ClientConfig>, port: u16) -> std::io::Result<(i32, HandshakeKind)> {
    let mut tls = connect(config, port)?;
    let kind = tls.conn.handshake_kind().expect("handshake done");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)?;
    Ok((pid_of(&answer)?, kind))
}

fn pid_of(answer: &str) -> std::io::Result<i32> {
    example_pid(answer)
}

/// The sandbox's certificate and key, as the example reads them
/// (`TLS_CERT_FILE`, `TLS_KEY_FILE`), so that every generation shows the
/// client the same certificate.
fn certificate(sb: &Sandbox) -> (CertificateDer<'static>, PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (sb.dir.join("cert.pem"), sb.dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (made.cert.der().clone(), cert, key)
}

/// The TLS example in a sandbox, and the way to start and find its
/// generations.
struct Server {
    sb: Sandbox,
    program: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    probe: Arc<rustls::ClientConfig>,
    der: CertificateDer<'static>,
}

impl Server {
    fn new(name: &str) -> Server {
        let sb = Sandbox::new(name);
        let (der, cert, key) = certificate(&sb);
        Server {
            program: example("tls"),
            probe: client(&der, false),
            sb,
            cert,
            key,
            der,
        }
    }

    /// Starts a launcher, as a supervisor would; `garbage` makes its
    /// generation offer garbage for keys when its restart begins.
    fn start(&self, garbage: bool) -> Launcher {
        let program = self.program.to_str().unwrap();
        let mut c = self.sb.command_of(program);
        c.arg(format!("127.0.0.1:{}", self.sb.port))
            .arg(self.sb.pid_file())
            .env("TLS_CERT_FILE", &self.cert)
            .env("TLS_KEY_FILE", &self.key);
        if garbage {
            c.env("TLS_TICKETS_OFFER", "garbage");
        }
        self.sb.start_with(c)
    }

    /// Waits for a generation not in `except` to be named by the pid file
    /// and to answer; its pid.
    fn wait_generation(&self, except: &[i32]) -> i32 {
        self.sb.wait_generation(except, T, |p| {
            get(&self.probe, self.sb.port).is_ok_and(|(answered, _)| answered == p)
        })
    }

    /// TERM to `launcher`, a new one started; the new generation's pid.
    fn restart(&self, launcher: &mut Launcher, served: &mut Vec<i32>, garbage: bool) {
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        *launcher = self.start(garbage);
        served.push(self.wait_generation(served));
    }
}

#[test]
fn sessions_resume_across_restarts_and_unreadable_keys_fall_back_to_new_ones() {
    let server = Server::new("tls-resume");
    let port = server.sb.port;
    let resuming = client(&server.der, true);
    let mut launcher = server.start(false);
    let mut served = vec![server.wait_generation(&[])];

    let (pid, kind) = get(&resuming, port).unwrap();
    assert_eq!((pid, kind), (served[0], HandshakeKind::Full));
    assert_eq!(get(&resuming, port).unwrap().1, HandshakeKind::Resumed);

    // Each restart: the session saved on the old generation resumes on the
    // new one. The third generation is told to offer garbage at its
    // restart.
    for n in 0..3 {
        server.restart(&mut launcher, &mut served, n == 2);
        let (pid, kind) = get(&resuming, port).unwrap();
        assert_eq!(pid, *served.last().unwrap());
        assert_eq!(
            kind,
            HandshakeKind::Resumed,
            "restart {n}: a saved session must resume on the new generation"
        );
    }

    // The garbage: the restart succeeds, the new generation warns and
    // serves with keys of its own.
    server.restart(&mut launcher, &mut served, false);
    let (pid, kind) = get(&resuming, port).unwrap();
    assert_eq!(pid, *served.last().unwrap());
    assert_eq!(
        kind,
        HandshakeKind::Full,
        "a ticket of unreadable keys cannot resume"
    );
    let output = server.sb.output();
    assert!(
        output.contains(
            "TLS ticket keys \"tls-tickets\" from the previous generation are not readable"
        ),
        "no warning about the unreadable keys; output: {output}"
    );
    assert_eq!(get(&resuming, port).unwrap().1, HandshakeKind::Resumed);

    // And the new keys are handed on.
    server.restart(&mut launcher, &mut served, false);
    let (pid, kind) = get(&resuming, port).unwrap();
    assert_eq!(
        (pid, kind),
        (*served.last().unwrap(), HandshakeKind::Resumed)
    );

    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    resumed: AtomicUsize,
    reconnects: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// A keep-alive HTTP/1.1 client over TLS: requests on one connection until
/// the server says `Connection: close`, then a new connection (which
/// offers the saved session). Anything else (an error, a connection
/// closed without `close_notify` or under a request) is a failure.
fn keep_alive_loop(
    config: Arc<rustls::ClientConfig>,
    port: u16,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let fail = |e: String| tally.errors.lock().unwrap().push(e);
    for _ in 0..100_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let tls = match connect(&config, port) {
            Ok(tls) => tls,
            Err(e) => return fail(format!("connect: {e}")),
        };
        tally.reconnects.fetch_add(1, Ordering::SeqCst);
        if tls.conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            tally.resumed.fetch_add(1, Ordering::SeqCst);
        }
        let mut reader = BufReader::new(tls);
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let sent = reader
                .get_mut()
                .write_all(b"GET /?delay=5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .and_then(|()| reader.get_mut().flush());
            if let Err(e) = sent {
                return fail(format!("send: {e}"));
            }
            match read_response(&mut reader) {
                Ok((200, close)) => {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                    if close {
                        // The server's close_notify must follow.
                        let mut rest = Vec::new();
                        if let Err(e) = reader.read_to_end(&mut rest) {
                            return fail(format!("after Connection: close: {e}"));
                        }
                        break;
                    }
                }
                Ok((status, _)) => return fail(format!("status {status}")),
                Err(e) => return fail(format!("read: {e}")),
            }
        }
    }
}

/// One response: its status and whether it said `Connection: close`.
fn read_response(reader: &mut BufReader<Tls>) -> std::io::Result<(u16, bool)> {
    common::http::read_response(reader).map(|r| (r.status, r.close))
}

#[test]
fn keep_alive_clients_over_tls_lose_nothing_across_restarts() {
    const RESTARTS: usize = 10;
    let server = Server::new("tls-load");
    let port = server.sb.port;
    let mut launcher = server.start(false);
    let mut served = vec![server.wait_generation(&[])];

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (config, stop, tally) = (client(&server.der, true), stop.clone(), tally.clone());
            std::thread::spawn(move || keep_alive_loop(config, port, stop, tally))
        })
        .collect();
    let _stop = StopOnDrop(stop.clone());

    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..RESTARTS {
        server.restart(&mut launcher, &mut served, false);
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let errors = tally.errors.lock().unwrap().clone();
    let (ok, reconnects, resumed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.reconnects.load(Ordering::SeqCst),
        tally.resumed.load(Ordering::SeqCst),
    );
    eprintln!(
        "TLS keep-alive, {RESTARTS} restarts: {ok} requests, {reconnects} connections \
         ({resumed} resumed), {} failed",
        errors.len()
    );
    assert!(errors.is_empty(), "failed: {errors:?}");
    assert!(ok > 100, "the load ran: {ok} requests");
    // Every connection but each client's first offered a session.
    assert_eq!(resumed, reconnects - 4, "every offered session resumes");
}

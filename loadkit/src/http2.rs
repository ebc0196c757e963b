//! An HTTP/2 load client that handles a server's graceful shutdown as
//! RFC 9113 asks of clients: hyper's HTTP/2 client (the `hyper` crate,
//! independent of the servers' code), cleartext with prior knowledge, in a
//! thread of its own.
//!
//! A few connections carry several request loops (streams) each. After a
//! GOAWAY a connection finishes its streams and a new one is opened. A
//! request is sent again only when it is provably unprocessed
//! ([`unprocessed`]); everything else is a failure: a refused connection,
//! a stream reset, a connection lost under a request, a truncated body, a
//! status other than 200, a body without the expected prefix.
//!
//! h2load (nghttp2 1.52) does neither: it counts as failed the request it
//! queued after the GOAWAY, which its own log shows was never sent, and
//! then leaves the connection idle until its run ends (see
//! [`crate::h2load`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Whether a failed request is one the server did not process, which a
/// client may send again (RFC 9113, 6.8 and 8.7): refused with
/// `REFUSED_STREAM`, or failed by h2 with the server's GOAWAY itself,
/// which it gives to the streams numbered above the GOAWAY's last stream
/// and to requests made after it arrived (never sent). A stream the server
/// accepted and left unanswered when the connection closed fails otherwise
/// (a broken pipe, a reset): a failure.
///
/// A request that hyper hands back unsent (`TrySendError::message`) is
/// unprocessed too; [`Load`] counts both as resent.
///
/// ```no_run
/// # async fn send(mut sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
/// #               request: hyper::Request<http_body_util::Empty<hyper::body::Bytes>>) {
/// match sender.try_send_request(request).await {
///     Ok(_answer) => {}
///     Err(e) if e.message().is_some() || seamless_loadkit::http2::unprocessed(e.error()) => {
///         // Send it again on a new connection.
///     }
///     Err(e) => panic!("failed: {:?}", e.into_error()),
/// }
/// # }
/// ```
pub fn unprocessed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = err.source();
    }
    false
}

/// The shape of the load.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The server, on 127.0.0.1.
    pub port: u16,
    /// Connections open at once.
    pub connections: usize,
    /// Request loops (streams in flight) per connection.
    pub streams: usize,
    /// What an answer's body must begin with to count as answered (the
    /// examples answer `Server pid: N`); empty to accept any body.
    pub body_prefix: &'static [u8],
    /// Keep each answer's start and latency in [`Tally::answers`]
    /// (16 bytes an answer), rather than only counting them.
    pub keep_answers: bool,
}

/// One answered request.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// When it was sent, µs after [`Tally::started`].
    pub began_us: u64,
    /// From sending it to the end of its answer's body, µs.
    pub latency_us: u32,
}

/// What the client saw.
#[derive(Debug)]
pub struct Tally {
    /// When the load began.
    pub started: Instant,
    /// Requests answered with 200 and the expected body.
    pub answered: u64,
    /// Each answer, when [`Options::keep_answers`].
    pub answers: Vec<Answer>,
    /// Failed requests by kind (`hyper h2 connect`, `hyper h2 stream
    /// lost`, ...).
    pub failures: BTreeMap<&'static str, u64>,
    /// The first failures, described, for a message.
    pub errors: Vec<String>,
    /// Requests sent again because the server provably did not process
    /// them: not failures, this is what the protocol provides for.
    pub resent: u64,
}

/// How many failures [`Tally::errors`] describes.
const DESCRIBED: usize = 20;

impl Tally {
    fn new(started: Instant) -> Tally {
        Tally {
            started,
            answered: 0,
            answers: Vec::new(),
            failures: BTreeMap::new(),
            errors: Vec::new(),
            resent: 0,
        }
    }

    /// Every failed request.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn fail(&mut self, kind: &'static str, detail: impl std::fmt::Display) {
        *self.failures.entry(kind).or_default() += 1;
        if self.errors.len() < DESCRIBED {
            self.errors.push(format!("{kind}: {detail}"));
        }
    }
}

/// A running load: started by [`Load::start`], ended by [`Load::finish`]
/// or [`Load::stop`]. Dropping it stops it.
///
/// ```no_run
/// use seamless_loadkit::http2::{Load, Options};
/// use std::time::{Duration, Instant};
///
/// let options = Options { port: 8080, connections: 4, streams: 8, body_prefix: b"Server pid: ", keep_answers: false };
/// let load = Load::start(options, Instant::now() + Duration::from_secs(2));
/// let tally = load.finish();
/// assert_eq!(tally.failed(), 0, "{:?}", tally.errors);
/// ```
pub struct Load {
    thread: Option<JoinHandle<Tally>>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

/// Everything the connections share.
struct Shared {
    options: Options,
    until: Instant,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    tally: Mutex<Tally>,
}

impl Shared {
    fn running(&self) -> bool {
        Instant::now() < self.until && !self.stop.load(Ordering::Relaxed)
    }

    fn note(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Load {
    /// Starts the load, which runs until `until` or until stopped.
    pub fn start(options: Options, until: Instant) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            options,
            until,
            stop: stop.clone(),
            answered: answered.clone(),
            tally: Mutex::new(Tally::new(Instant::now())),
        });
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let tasks: Vec<_> = (0..options.connections)
                    .map(|_| tokio::spawn(connection_loop(shared.clone())))
                    .collect();
                for t in tasks {
                    if let Err(e) = t.await {
                        shared.note(|t| t.fail("hyper h2 client task", e));
                    }
                }
            });
            let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *tally, Tally::new(Instant::now()))
        });
        Load {
            thread: Some(thread),
            stop,
            answered,
        }
    }

    /// Answers so far.
    pub fn answered_so_far(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits for the load to end at its deadline; what it saw.
    pub fn finish(mut self) -> Tally {
        let thread = self.thread.take().expect("not finished yet");
        thread.join().expect("the load's thread panicked")
    }

    /// Ends the load now (each stream finishes the request it has in
    /// flight); what it saw.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.finish()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The most connections one loop opens: a bound, not a limit a run meets
/// (one per restart of the server is the usual count).
const MAX_CONNECTIONS: usize = 100_000;

/// One connection after another until the end: each carries its request
/// loops until a GOAWAY (or the end) stops them.
async fn connection_loop(shared: Arc<Shared>) {
    let port = shared.options.port;
    for _ in 0..MAX_CONNECTIONS {
        if !shared.running() {
            return;
        }
        let stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(e) => {
                shared.note(|t| t.fail("hyper h2 connect", e));
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(e) => {
                    shared.note(|t| t.fail("hyper h2 handshake", e));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            };
        tokio::spawn(connection);
        let loops: Vec<_> = (0..shared.options.streams)
            .map(|_| tokio::spawn(request_loop(sender.clone(), shared.clone())))
            .collect();
        for l in loops {
            if let Err(e) = l.await {
                shared.note(|t| t.fail("hyper h2 client task", e));
            }
        }
    }
}

/// Requests one after another on one connection, until it closes (a
/// GOAWAY) or the end.
async fn request_loop(
    mut sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    shared: Arc<Shared>,
) {
    let uri = format!("http://127.0.0.1:{}/", shared.options.port);
    while shared.running() {
        if sender.ready().await.is_err() {
            return; // the connection is closing: a new one
        }
        let request = hyper::Request::get(&uri)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let began = Instant::now();
        match sender.try_send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await;
                let latency_us = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                match body.map(|b| b.to_bytes()) {
                    Ok(b) if status == 200 && b.starts_with(shared.options.body_prefix) => {
                        shared.answered.fetch_add(1, Ordering::Relaxed);
                        let keep = shared.options.keep_answers;
                        shared.note(|t| {
                            t.answered += 1;
                            if keep {
                                let began_us =
                                    began.saturating_duration_since(t.started).as_micros() as u64;
                                t.answers.push(Answer {
                                    began_us,
                                    latency_us,
                                });
                            }
                        });
                    }
                    Ok(b) => {
                        shared.note(|t| t.fail("hyper h2 bad answer", format!("{status} {b:?}")))
                    }
                    Err(e) => shared.note(|t| t.fail("hyper h2 body cut", e)),
                }
            }
            Err(e) if e.message().is_some() || unprocessed(e.error()) => {
                shared.note(|t| t.resent += 1);
                return;
            }
            Err(e) => {
                let e = format!("{:?}", e.into_error());
                shared.note(|t| t.fail("hyper h2 stream lost", e));
                return;
            }
        }
    }
}

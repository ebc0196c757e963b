//! A second HTTP/2 load, from a client that handles a graceful shutdown as
//! RFC 9113 asks of clients: hyper's HTTP/2 client (the `hyper` crate,
//! independent of the server's code), in a thread of this process, run
//! once per restart cycle like h2load. A few connections with several
//! streams each; after a GOAWAY a connection finishes its streams and a
//! new one is opened; a request is sent again only when it is provably
//! unprocessed (RFC 9113, 8.7): never sent because the GOAWAY had come,
//! or numbered above the GOAWAY's last stream, or refused with
//! `REFUSED_STREAM`. Everything else is a failure: a stream reset, a
//! connection lost under a request, a truncated body, a status other than
//! 200, a refused connection.
//!
//! h2load (nghttp2 1.52) does neither: it counts as failed the request it
//! queued after the GOAWAY, which its own log shows was never sent, and
//! then leaves the connection idle until its run ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::h2_rules::unprocessed;
use super::{per_10ms, Clock, Slice};

/// What the client saw in one run.
#[derive(Default)]
struct Tally {
    /// (start of the request in ms, latency in µs) of each answer.
    answers: Vec<(f32, u32)>,
    failures: BTreeMap<&'static str, u64>,
    /// Requests sent again because the server provably did not process
    /// them (not failures: this is what the protocol provides for).
    resent: u64,
}

impl Tally {
    fn fail(&mut self, kind: &'static str) {
        *self.failures.entry(kind).or_default() += 1;
    }
}

/// Writes to the tally that the connections share.
fn note(tally: &Mutex<Tally>, f: impl FnOnce(&mut Tally)) {
    f(&mut tally.lock().unwrap_or_else(|e| e.into_inner()))
}

pub(crate) struct Running {
    thread: JoinHandle<Tally>,
    started_ms: f64,
    seconds: u64,
    /// Answers so far, for a reading while the client runs.
    answered: Arc<AtomicU64>,
}

/// Starts the client: `connections` connections of `streams` streams each,
/// for `seconds`.
pub(crate) fn start(
    port: u16,
    connections: usize,
    streams: usize,
    seconds: u64,
    clock: &Clock,
) -> Running {
    let started_ms = clock.now_ms();
    let clock = *clock;
    let until = Instant::now() + Duration::from_secs(seconds);
    let answered = Arc::new(AtomicU64::new(0));
    let counter = answered.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let tally = Arc::new(Mutex::new(Tally::default()));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..connections)
                .map(|_| {
                    let (tally, counter) = (tally.clone(), counter.clone());
                    tokio::spawn(connection_loop(port, streams, until, clock, tally, counter))
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        });
        Arc::try_unwrap(tally)
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default()
    });
    Running {
        thread,
        started_ms,
        seconds,
        answered,
    }
}

impl Running {
    pub(crate) fn answered_so_far(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(self, _clock: &Clock) -> Slice {
        let tally = self.thread.join().unwrap_or_default();
        let done_ms = tally
            .answers
            .iter()
            .map(|(at, us)| *at as f64 + *us as f64 / 1000.0)
            .collect();
        Slice {
            source: "hyper's HTTP/2 client",
            latency_source: "hyper's HTTP/2 client",
            started_ms: self.started_ms,
            seconds: self.seconds,
            answered: tally.answers.len() as u64,
            failures: tally.failures.into_iter().collect(),
            per_10ms: per_10ms(done_ms),
            latencies: tally.answers,
            unfinished: 0,
            resent: tally.resent,
        }
    }
}

/// One connection after another until `until`: each carries `streams`
/// request loops until a GOAWAY (or the end) stops them.
async fn connection_loop(
    port: u16,
    streams: usize,
    until: Instant,
    clock: Clock,
    tally: Arc<Mutex<Tally>>,
    answered: Arc<AtomicU64>,
) {
    while Instant::now() < until {
        let stream = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(_) => {
                note(&tally, |t| t.fail("hyper h2 connect"));
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
                Err(_) => {
                    note(&tally, |t| t.fail("hyper h2 handshake"));
                    continue;
                }
            };
        tokio::spawn(connection);
        let loops: Vec<_> = (0..streams)
            .map(|_| {
                let (mut sender, tally) = (sender.clone(), tally.clone());
                let answered = answered.clone();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        if sender.ready().await.is_err() {
                            return; // the connection is closing: a new one
                        }
                        let request = hyper::Request::get(format!("http://127.0.0.1:{port}/"))
                            .body(Empty::<Bytes>::new())
                            .expect("request");
                        let began = Instant::now();
                        match sender.try_send_request(request).await {
                            Ok(response) => {
                                let status = response.status();
                                let body = response.into_body().collect().await;
                                let took = began.elapsed().as_micros().min(u32::MAX as u128);
                                match body.map(|b| b.to_bytes()) {
                                    Ok(b) if status == 200 && b.starts_with(b"Server pid: ") => {
                                        let at = clock.ms(began) as f32;
                                        note(&tally, |t| t.answers.push((at, took as u32)));
                                        answered.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(_) => note(&tally, |t| t.fail("hyper h2 bad answer")),
                                    Err(_) => note(&tally, |t| t.fail("hyper h2 body cut")),
                                }
                            }
                            Err(e) if e.message().is_some() || unprocessed(e.error()) => {
                                note(&tally, |t| t.resent += 1);
                                return;
                            }
                            Err(_) => {
                                note(&tally, |t| t.fail("hyper h2 stream lost"));
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        for l in loops {
            let _ = l.await;
        }
    }
}

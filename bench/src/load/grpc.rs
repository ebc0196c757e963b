//! The gRPC load: tonic's client over hyper's HTTP/2 client connection,
//! as `tests/grpc.rs` drives the gRPC example. Per restart cycle, a few
//! connections carry several loops of unary `SayHello` calls each, and a
//! few callers hold server streams of 2 s (`Count`, 20 ticks 100 ms
//! apart), begun at the start of the cycle so that a restart finds them in
//! flight. A call that failed is sent again, not counted, only when the
//! server provably never processed it (`seamless_loadkit::http2::
//! unprocessed`: refused, failed by the server's GOAWAY, or handed back
//! unsent by hyper); every other failure counts. A stream must end where
//! it began: every tick from one pid, all 20 of them.
//!
//! The built-in probes (`load::builtin`) call `SayHello` through
//! [`probe`] when the server speaks gRPC.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hyper::http::uri::PathAndQuery;
use seamless_loadkit::grpc::{connect, unprocessed, ConnectError, H2};
use tonic::client::Grpc;
use tonic::Status;
use tonic_prost::ProstCodec;

use super::builtin::{Client, Load, Outcome, Sample};
use super::{per_10ms, Clock, Slice};

#[path = "../../../examples/support/hello.rs"]
mod hello;
use hello::{CountRequest, HelloReply, HelloRequest, Tick};

/// Ticks of a stream, and the time between two.
const TICKS: u32 = 20;
const TICK_MS: u64 = 100;
/// The longest a call may take before it counts as timed out.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a call went wrong.
enum Failed {
    /// Provably never processed: send it again.
    Unprocessed,
    /// Anything else: a failure.
    Other,
    Timeout,
}

fn failed(status: Status) -> Failed {
    if unprocessed(&status) {
        Failed::Unprocessed
    } else {
        Failed::Other
    }
}

/// One `SayHello` on `client`: the pid that answered.
async fn say_hello(client: &mut Grpc<H2>, delay_ms: u64) -> Result<u32, Failed> {
    let call = async {
        client.ready().await.map_err(|_| Failed::Unprocessed)?;
        let request = HelloRequest {
            name: "bench".into(),
            delay_ms,
        };
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(hello::SAY_HELLO);
        let reply = client
            .unary(tonic::Request::new(request), path, codec)
            .await
            .map_err(failed)?
            .into_inner();
        match reply.message == "Hello bench" && reply.pid != 0 {
            true => Ok(reply.pid),
            false => Err(Failed::Other),
        }
    };
    tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(delay_ms), call)
        .await
        .unwrap_or(Err(Failed::Timeout))
}

/// One `Count` stream on `client`, to its end.
async fn count(client: &mut Grpc<H2>) -> Result<(), Failed> {
    let call = async {
        client.ready().await.map_err(|_| Failed::Unprocessed)?;
        let request = CountRequest {
            count: TICKS,
            interval_ms: TICK_MS,
        };
        let codec = ProstCodec::<CountRequest, Tick>::default();
        let path = PathAndQuery::from_static(hello::COUNT);
        let mut ticks = client
            .server_streaming(tonic::Request::new(request), path, codec)
            .await
            .map_err(failed)?
            .into_inner();
        let (mut pid, mut seen) = (None, 0);
        // Once the server answered, the call was processed: any failure
        // from here on is one.
        while let Some(tick) = ticks.message().await.map_err(|_| Failed::Other)? {
            seen += 1;
            if tick.n != seen || *pid.get_or_insert(tick.pid) != tick.pid {
                return Err(Failed::Other);
            }
        }
        if seen == TICKS {
            Ok(())
        } else {
            Err(Failed::Other)
        }
    };
    let longest = CALL_TIMEOUT + Duration::from_millis(TICKS as u64 * TICK_MS);
    tokio::time::timeout(longest, call)
        .await
        .unwrap_or(Err(Failed::Timeout))
}

/// A built-in probe over gRPC: `SayHello` calls until `load.stop`, on one
/// connection (`KeepAlive`, `pause` apart) or a new one each (the
/// others); a call never processed is sent again, unrecorded.
pub(crate) fn probe(
    load: &Load,
    client: Client,
    delay_ms: u64,
    pause: Option<Duration>,
) -> Vec<Sample> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut out = Vec::new();
        let mut conn: Option<Grpc<H2>> = None;
        while !load.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let grpc = match &mut conn {
                Some(c) => c,
                None => match connect(load.port).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        let outcome = match e {
                            ConnectError::Tcp(e)
                                if e.kind() == std::io::ErrorKind::ConnectionRefused =>
                            {
                                Outcome::Refused
                            }
                            _ => Outcome::Reset,
                        };
                        load.record(&mut out, began, outcome, 0, client);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                },
            };
            let result = say_hello(grpc, delay_ms).await;
            if client != Client::KeepAlive || result.is_err() {
                conn = None;
            }
            match result {
                Ok(pid) => load.record(&mut out, began, Outcome::Ok, pid, client),
                Err(Failed::Unprocessed) => continue,
                Err(Failed::Timeout) => load.record(&mut out, began, Outcome::Timeout, 0, client),
                Err(Failed::Other) => load.record(&mut out, began, Outcome::Reset, 0, client),
            }
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
        out
    })
}

/// One `SayHello` on a new connection: the pid that answered.
pub(crate) fn answering_pid(port: u16) -> Option<u32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let mut client = connect(port).await.ok()?;
        tokio::time::timeout(Duration::from_secs(2), say_hello(&mut client, 0))
            .await
            .ok()?
            .ok()
    })
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// (sent, µs after the load began; latency, µs) of each answered
    /// unary call.
    answers: Vec<(u64, u32)>,
    streams: u64,
    resent: u64,
    failures: std::collections::BTreeMap<&'static str, u64>,
}

struct Shared {
    port: u16,
    started: Instant,
    until: Instant,
    tally: Mutex<Tally>,
}

impl Shared {
    fn note(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn fail(&self, kind: &'static str) {
        self.note(|t| *t.failures.entry(kind).or_default() += 1)
    }
}

/// A running gRPC load, started by [`start`].
pub(crate) struct Running {
    thread: JoinHandle<Tally>,
    started_ms: f64,
    seconds: u64,
}

/// Starts the load for `seconds`: `connections` connections of `streams`
/// unary loops each, and `stream_callers` callers of 2 s streams (a
/// stream begun runs to its end, past `seconds` if need be; none begins
/// that could not end within half a second of it).
pub(crate) fn start(
    port: u16,
    connections: usize,
    streams: usize,
    stream_callers: usize,
    seconds: u64,
    clock: &Clock,
) -> Running {
    let started_ms = clock.now_ms();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        port,
        started,
        until: started + Duration::from_secs(seconds),
        tally: Mutex::new(Tally::default()),
    });
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..connections {
                tasks.push(tokio::spawn(unary_connection(shared.clone(), streams)));
            }
            for _ in 0..stream_callers {
                tasks.push(tokio::spawn(stream_caller(shared.clone())));
            }
            for t in tasks {
                if t.await.is_err() {
                    shared.fail("grpc client task");
                }
            }
        });
        let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *tally)
    });
    Running {
        thread,
        started_ms,
        seconds,
    }
}

/// One connection after another, each carrying `loops` unary loops until
/// its GOAWAY (or the end).
async fn unary_connection(shared: Arc<Shared>, loops: usize) {
    while Instant::now() < shared.until {
        let client = match connect(shared.port).await {
            Ok(c) => c,
            Err(_) => {
                shared.fail("grpc connect");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let loops: Vec<_> = (0..loops)
            .map(|_| tokio::spawn(unary_loop(client.clone(), shared.clone())))
            .collect();
        for l in loops {
            if l.await.is_err() {
                shared.fail("grpc client task");
            }
        }
    }
}

/// Unary calls back to back on one connection until it closes or the end.
async fn unary_loop(mut client: Grpc<H2>, shared: Arc<Shared>) {
    while Instant::now() < shared.until {
        let began = Instant::now();
        match say_hello(&mut client, 0).await {
            Ok(_) => {
                let latency = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let at = began.duration_since(shared.started).as_micros() as u64;
                shared.note(|t| t.answers.push((at, latency)));
            }
            Err(Failed::Unprocessed) => {
                shared.note(|t| t.resent += 1);
                return; // a new connection
            }
            Err(Failed::Timeout) => return shared.fail("grpc unary timeout"),
            Err(Failed::Other) => return shared.fail("grpc unary failed"),
        }
    }
}

/// 2 s streams, one after another, each on a new connection.
async fn stream_caller(shared: Arc<Shared>) {
    let length = Duration::from_millis(TICKS as u64 * TICK_MS);
    while Instant::now() + length < shared.until + Duration::from_millis(500) {
        let mut client = match connect(shared.port).await {
            Ok(c) => c,
            Err(_) => {
                shared.fail("grpc connect");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        match count(&mut client).await {
            Ok(()) => shared.note(|t| t.streams += 1),
            Err(Failed::Unprocessed) => shared.note(|t| t.resent += 1),
            Err(Failed::Timeout) => shared.fail("grpc stream timeout"),
            Err(Failed::Other) => shared.fail("grpc stream failed"),
        }
    }
}

impl Running {
    pub(crate) fn finish(self) -> Slice {
        let tally = self.thread.join().unwrap_or_default();
        let latencies: Vec<(f32, u32)> = tally
            .answers
            .iter()
            .map(|(at, us)| ((self.started_ms + *at as f64 / 1000.0) as f32, *us))
            .collect();
        let done_ms = latencies
            .iter()
            .map(|(at, us)| *at as f64 + *us as f64 / 1000.0)
            .collect();
        Slice {
            source: "tonic's client",
            latency_source: "tonic's client (unary calls)",
            started_ms: self.started_ms,
            seconds: self.seconds,
            answered: tally.answers.len() as u64 + tally.streams,
            failures: tally.failures.into_iter().collect(),
            per_10ms: per_10ms(done_ms),
            latencies,
            unfinished: 0,
            resent: tally.resent,
            streams: tally.streams,
        }
    }
}

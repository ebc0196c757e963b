//! The gRPC example (a tonic service served by `seamless::hyper::serve`)
//! restarted 20 times under a load of tonic clients: unary calls back to
//! back, slow unary calls (500 ms), and server streams of 2 s (20 ticks,
//! 100 ms apart). Every call must complete, or have been provably never
//! processed by the server (the HTTP/2 rule of `seamless_loadkit::http2::unprocessed`: a
//! stream refused, or failed by the server's GOAWAY; or a request hyper
//! gave back unsent because its connection closed first) and then be sent
//! again on a new connection. A stream must finish where it began: every
//! tick of a stream names the same pid, all 20 come, and streams in
//! flight at a restart end on the old generation after the new one
//! answers.
//!
//! The clients are tonic's `client::Grpc` over hyper's HTTP/2 client
//! connection (`seamless_loadkit::grpc`), one connection per caller, a new
//! one after a GOAWAY.

mod common;
#[path = "../examples/support/hello.rs"]
mod hello;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hello::{CountRequest, HelloReply, HelloRequest, Tick};
use hyper::http::uri::PathAndQuery;
use nix::sys::signal::Signal;
use seamless_loadkit::grpc::{connect, unprocessed, H2};
use tonic::client::Grpc;
use tonic::Status;
use tonic_prost::ProstCodec;

const T: Duration = Duration::from_secs(20);
const RESTARTS: u32 = 20;
const INTERVAL: Duration = Duration::from_millis(1000);
const TICKS: u32 = 20;
const TICK_MS: u64 = 100;

#[derive(Default)]
struct Tally {
    unary_ok: AtomicUsize,
    slow_ok: AtomicUsize,
    streams_ok: AtomicUsize,
    /// Streams that ended on a generation already replaced.
    streams_across_restarts: AtomicUsize,
    /// Calls the server never processed, sent again.
    retried: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
}

/// What one caller does, again and again, on its connection.
#[derive(Clone, Copy)]
enum Call {
    Unary { delay_ms: u64 },
    Stream,
}

/// Makes calls until `stop`, each to completion or, if the server never
/// processed it, sent again on a new connection. `current` is the pid of
/// the newest generation.
async fn caller(
    port: u16,
    call: Call,
    stop: Arc<AtomicBool>,
    current: Arc<AtomicI32>,
    tally: Arc<Tally>,
) {
    let mut grpc: Option<Grpc<H2>> = None;
    let mut n = 0u64;
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match &mut grpc {
            Some(client) => client,
            None => match connect(port).await {
                Ok(client) => grpc.insert(client),
                Err(e) => return tally.fail(e.to_string()),
            },
        };
        if client.ready().await.is_err() {
            // The connection is closing: nothing was sent on it.
            grpc = None;
            continue;
        }
        let outcome = match call {
            Call::Unary { delay_ms } => unary(client, n, delay_ms).await,
            Call::Stream => stream(client, &current).await,
        };
        match outcome {
            Ok(Done::Unary) if matches!(call, Call::Unary { delay_ms: 0 }) => {
                tally.unary_ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Done::Unary) => {
                tally.slow_ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Done::Stream { across_restart }) => {
                tally.streams_ok.fetch_add(1, Ordering::SeqCst);
                if across_restart {
                    tally.streams_across_restarts.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(Failed::Unprocessed) => {
                tally.retried.fetch_add(1, Ordering::SeqCst);
                grpc = None;
                continue; // the same call again
            }
            Err(Failed::Other(e)) => {
                tally.fail(e);
                grpc = None;
            }
        }
        n += 1;
    }
}

enum Done {
    Unary,
    Stream { across_restart: bool },
}

enum Failed {
    Unprocessed,
    Other(String),
}

fn failed(what: &str, status: Status) -> Failed {
    if unprocessed(&status) {
        Failed::Unprocessed
    } else {
        Failed::Other(format!("{what}: {status:?}"))
    }
}

async fn unary(client: &mut Grpc<H2>, n: u64, delay_ms: u64) -> Result<Done, Failed> {
    let request = HelloRequest {
        name: format!("call {n}"),
        delay_ms,
    };
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let path = PathAndQuery::from_static(hello::SAY_HELLO);
    let reply = client
        .unary(tonic::Request::new(request), path, codec)
        .await
        .map_err(|s| failed("SayHello", s))?
        .into_inner();
    if reply.message != format!("Hello call {n}") || reply.pid == 0 {
        return Err(Failed::Other(format!("SayHello: bad reply {reply:?}")));
    }
    Ok(Done::Unary)
}

async fn stream(client: &mut Grpc<H2>, current: &AtomicI32) -> Result<Done, Failed> {
    let request = CountRequest {
        count: TICKS,
        interval_ms: TICK_MS,
    };
    let codec = ProstCodec::<CountRequest, Tick>::default();
    let path = PathAndQuery::from_static(hello::COUNT);
    let mut ticks = client
        .server_streaming(tonic::Request::new(request), path, codec)
        .await
        .map_err(|s| failed("Count", s))?
        .into_inner();
    let mut pid = None;
    let mut seen = 0;
    loop {
        // Once the server answered the call it was processed: a failure
        // from here on is a failure, whatever the error says.
        let tick = ticks
            .message()
            .await
            .map_err(|s| Failed::Other(format!("Count, after {seen} ticks: {s:?}")))?;
        let Some(tick) = tick else { break };
        seen += 1;
        if tick.n != seen || *pid.get_or_insert(tick.pid) != tick.pid {
            return Err(Failed::Other(format!(
                "Count: tick {seen} was {tick:?}, first pid {pid:?}"
            )));
        }
    }
    if seen != TICKS {
        return Err(Failed::Other(format!("Count: {seen} ticks of {TICKS}")));
    }
    let across_restart = pid.is_some_and(|p| p as i32 != current.load(Ordering::SeqCst));
    Ok(Done::Stream { across_restart })
}

/// One `SayHello` on a new connection: the pid that answered.
async fn answering_pid(port: u16) -> Result<u32, String> {
    let mut client = connect(port).await.map_err(|e| e.to_string())?;
    client.ready().await.map_err(|e| e.to_string())?;
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let path = PathAndQuery::from_static(hello::SAY_HELLO);
    let request = HelloRequest {
        name: "probe".into(),
        delay_ms: 0,
    };
    client
        .unary(tonic::Request::new(request), path, codec)
        .await
        .map(|r| r.into_inner().pid)
        .map_err(|s| format!("{s:?}"))
}

#[test]
fn grpc_loses_no_call_across_20_restarts() {
    let grpc = example("grpc");
    let sb = Sandbox::new("grpc");
    let port = sb.port;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start = || sb.start_example(&grpc);
    let wait_generation = |except: &[i32]| {
        sb.wait_generation(except, T, |p| {
            runtime
                .block_on(answering_pid(port))
                .is_ok_and(|answered| answered as i32 == p)
        })
    };

    let mut launcher = start();
    let mut served = vec![wait_generation(&[])];

    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let current = Arc::new(AtomicI32::new(served[0]));
    let tally = Arc::new(Tally::default());
    let calls = [Call::Unary { delay_ms: 0 }; 6]
        .into_iter()
        .chain([Call::Unary { delay_ms: 500 }; 2])
        .chain([Call::Stream; 4]);
    let callers: Vec<_> = calls
        .map(|call| {
            let (stop, current, tally) = (stop.clone(), current.clone(), tally.clone());
            runtime.spawn(caller(port, call, stop, current, tally))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..RESTARTS {
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        launcher = start();
        let pid = wait_generation(&served);
        current.store(pid, Ordering::SeqCst);
        served.push(pid);
        std::thread::sleep(INTERVAL.saturating_sub(Duration::from_millis(100)));
    }
    stop.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for c in callers {
            tokio::time::timeout(T, c)
                .await
                .expect("a caller did not stop")
                .unwrap();
        }
    });

    let errors = tally.errors.lock().unwrap().clone();
    let count = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    let (unary, slow, streams, across, retried) = (
        count(&tally.unary_ok),
        count(&tally.slow_ok),
        count(&tally.streams_ok),
        count(&tally.streams_across_restarts),
        count(&tally.retried),
    );
    eprintln!(
        "gRPC, {RESTARTS} restarts: unary {unary} ok, slow unary {slow} ok, streams {streams} \
         complete ({across} ended on a replaced generation), {retried} calls never processed \
         and sent again, {} failed",
        errors.len()
    );
    // Every older generation is gone; the last one serves.
    let last = *served.last().unwrap();
    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
    assert_eq!(runtime.block_on(answering_pid(port)), Ok(last as u32));
    assert!(
        unary > 200 && slow > 20 && streams > 20,
        "the load ran: unary {unary}, slow {slow}, streams {streams}"
    );
    assert!(
        across >= RESTARTS as usize,
        "only {across} streams were in flight at a restart"
    );
    assert!(errors.is_empty(), "failed calls: {errors:?}");
}

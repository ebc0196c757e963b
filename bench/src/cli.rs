//! The command line: what to run, how hard, how often, and where to write
//! the results.

use std::path::PathBuf;
use std::time::Duration;

use crate::servers::{Protocol, Server};

pub(crate) struct Args {
    pub(crate) servers: Vec<Server>,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) restarts: usize,
    /// Length of one restart cycle in whole seconds (wrk's `-d` has no
    /// finer unit): each cycle is one run of the load tool with one
    /// restart inside it.
    pub(crate) interval_s: u64,
    /// How long after a cycle begins the restart is sent.
    pub(crate) lead: Duration,
    /// Keep-alive connections of wrk, h2load or the built-in clients.
    pub(crate) connections: usize,
    /// Concurrent streams per h2load connection.
    pub(crate) streams: usize,
    /// Built-in keep-alive clients that run next to wrk or h2load; they
    /// read which generation answered and time each request.
    pub(crate) probes: usize,
    pub(crate) newconn: usize,
    pub(crate) slow: usize,
    pub(crate) slow_ms: u64,
    pub(crate) builtin_supervisor: bool,
    pub(crate) builtin_load: bool,
    pub(crate) compare_rounds: usize,
    pub(crate) compare_s: u64,
    pub(crate) startup_samples: usize,
    /// Measure the start-up time only: no restarts, no comparison.
    pub(crate) startup_only: bool,
    /// Watch `/proc` after each restart to time its steps.
    pub(crate) trace: bool,
    pub(crate) json: Option<PathBuf>,
    pub(crate) svg: Option<PathBuf>,
}

const USAGE: &str = "usage: demo [--servers axum,testd,testd-reuseport,testd-naive,plain-axum] \
[--protocols h1,h2,h2-hyper] [--restarts N] [--interval-s S] [--lead-ms MS] [--connections N] \
[--streams N] [--probes N] [--newconn N] [--slow N] [--slow-ms MS] [--builtin-supervisor] \
[--builtin-load] [--compare-rounds N] [--compare-s S] [--startup-samples N] [--startup-only] [--no-trace] \
[--json FILE] [--svg FILE]";

pub(crate) fn parse() -> Args {
    let mut a = Args {
        servers: vec![Server::Axum],
        protocols: vec![Protocol::Http1, Protocol::Http2, Protocol::Http2Hyper],
        restarts: 20,
        // daemontools' supervise naps one second after each start and
        // reads no command meanwhile: cycles shorter than that would
        // measure its nap.
        interval_s: 2,
        lead: Duration::from_millis(500),
        connections: 4,
        streams: 8,
        probes: 2,
        newconn: 2,
        slow: 4,
        slow_ms: 1500,
        builtin_supervisor: false,
        builtin_load: false,
        compare_rounds: 5,
        compare_s: 2,
        startup_samples: 30,
        startup_only: false,
        trace: true,
        json: None,
        svg: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--servers" => {
                a.servers = value()
                    .split(',')
                    .map(|s| {
                        Server::parse(s).unwrap_or_else(|| usage(&format!("unknown server {s}")))
                    })
                    .collect()
            }
            "--protocols" => {
                a.protocols = value()
                    .split(',')
                    .map(|s| {
                        Protocol::parse(s)
                            .unwrap_or_else(|| usage(&format!("unknown protocol {s}")))
                    })
                    .collect()
            }
            "--restarts" => a.restarts = number(&value()),
            "--interval-s" => a.interval_s = number::<u64>(&value()).max(2),
            "--lead-ms" => a.lead = Duration::from_millis(number(&value())),
            "--connections" => a.connections = number::<usize>(&value()).max(1),
            "--streams" => a.streams = number::<usize>(&value()).max(1),
            "--probes" => a.probes = number(&value()),
            "--newconn" => a.newconn = number(&value()),
            "--slow" => a.slow = number(&value()),
            "--slow-ms" => a.slow_ms = number(&value()),
            "--builtin-supervisor" => a.builtin_supervisor = true,
            "--builtin-load" => a.builtin_load = true,
            "--compare-rounds" => a.compare_rounds = number(&value()),
            "--compare-s" => a.compare_s = number::<u64>(&value()).max(1),
            "--startup-samples" => a.startup_samples = number(&value()),
            "--startup-only" => a.startup_only = true,
            "--no-trace" => a.trace = false,
            "--json" => a.json = Some(value().into()),
            "--svg" => a.svg = Some(value().into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn number<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\n{USAGE}");
    std::process::exit(2)
}

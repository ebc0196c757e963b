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
    /// Soak mode: the axum example under wrk and hyper's HTTP/2 client at
    /// once for this long, restarted every `restart_every`.
    pub(crate) soak: Option<Duration>,
    /// In soak mode, how long each generation serves before its restart,
    /// counted from its first answer.
    pub(crate) restart_every: Duration,
    /// In soak mode, the first generation serves this many requests before
    /// its first restart (0: no longer than the others).
    pub(crate) first_generation_requests: u64,
    /// Scale mode: this many keep-alive HTTP/1.1 connections (wrk, two
    /// threads) held through the restarts.
    pub(crate) conns: Option<usize>,
    /// wrk's threads.
    pub(crate) wrk_threads: usize,
    /// wrk's `--timeout` (wrk's own default, 2 s, if None; 10 s in scale
    /// mode unless given): with 10,000 connections on a 2-core machine
    /// that also runs wrk, steady-state latency has a tail past 2 s with
    /// no restart at all, and wrk counts such a slow answer as a timeout.
    pub(crate) wrk_timeout_s: Option<u64>,
    /// One run of the load tool for the whole run rather than one per
    /// restart cycle, so that its connections are held throughout.
    pub(crate) hold: bool,
    /// Where soak and scale runs write their files.
    pub(crate) out: Option<PathBuf>,
}

const USAGE: &str = "usage: demo [--servers axum,actix,testd,testd-reuseport,testd-naive,plain-axum] \
[--protocols h1,h2,h2-hyper] [--restarts N] [--interval-s S] [--lead-ms MS] [--connections N] \
[--streams N] [--probes N] [--newconn N] [--slow N] [--slow-ms MS] [--builtin-supervisor] \
[--builtin-load] [--compare-rounds N] [--compare-s S] [--startup-samples N] [--startup-only] [--no-trace] \
[--json FILE] [--svg FILE]
       demo --soak 10m [--restart-every 5s] [--first-generation-requests N] [--servers plain-axum] \
[--connections N] [--streams N] [--out DIR]
       demo --conns 10000 [--restarts 20] [--interval-s S] [--wrk-timeout-s S] [--out DIR]";

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
        soak: None,
        restart_every: Duration::from_secs(5),
        first_generation_requests: 1_000_000,
        conns: None,
        wrk_threads: 1,
        wrk_timeout_s: None,
        hold: false,
        out: None,
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
            "--soak" => a.soak = Some(duration_or_usage(&value())),
            "--restart-every" => a.restart_every = duration_or_usage(&value()),
            "--first-generation-requests" => a.first_generation_requests = number(&value()),
            "--conns" => a.conns = Some(number::<usize>(&value()).max(1)),
            "--wrk-timeout-s" => a.wrk_timeout_s = Some(number::<u64>(&value()).max(1)),
            "--out" => a.out = Some(value().into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if let Some(n) = a.conns {
        // Scale: the example over HTTP/1.1, wrk's connections held
        // throughout; nothing else measured.
        a.servers = vec![Server::Axum];
        a.protocols = vec![Protocol::Http1];
        a.connections = n;
        a.wrk_threads = 2;
        a.hold = true;
        a.compare_rounds = 0;
        a.startup_samples = 0;
        a.wrk_timeout_s.get_or_insert(10);
    }
    a
}

/// `10m`, `90s`, `1500ms`, `1h` or a bare number of seconds.
fn duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    if split == 0 {
        return None;
    }
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn duration_or_usage(s: &str) -> Duration {
    duration(s)
        .or_else(|| s.parse::<u64>().ok().map(Duration::from_secs))
        .unwrap_or_else(|| usage(&format!("not a duration: {s}")))
}

fn number<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\n{USAGE}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(duration("5"), None);
        assert_eq!(duration("s"), None);
        assert_eq!(duration("5d"), None);
        assert_eq!(duration_or_usage("7"), Duration::from_secs(7));
    }
}

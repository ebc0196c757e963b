//! The command line (clap): what to run, how hard, how often, and where to
//! write the results.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::servers::{Protocol, Server};

/// The settings of one run, the command line's flags resolved.
pub(crate) struct Args {
    pub(crate) servers: Vec<Server>,
    pub(crate) protocols: Vec<Protocol>,
    /// `--protocols` was given: every server runs each of them it speaks;
    /// else each runs its own default loads ([`Server::default_loads`]).
    pub(crate) protocols_given: bool,
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
    /// Print the full Markdown report and the project's targets, met or
    /// not, rather than the one-screen summary.
    pub(crate) targets: bool,
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

/// What this program was asked to do.
pub(crate) enum Command {
    /// Run the benchmark.
    Bench(Box<Args>),
    /// Serve the comparison server on this address (the benchmark starts
    /// itself so).
    ServePlainAxum(String),
}

/// The axum example restarted under load with seamless and without it
/// (the same handler under plain `axum::serve`), side by side, under a
/// real supervisor; all traffic on 127.0.0.1.
///
/// By default: the axum example and plain axum::serve, HTTP/1.1 (wrk) and
/// HTTP/2 (hyper's client), 15 restarts each, about two minutes. `--targets` adds the throughput comparison and the start-up
/// time and prints the full report with the project's targets.
#[derive(Parser, Debug)]
#[command(name = "demo", version, args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:
  demo                                              with and without seamless, side by side
  demo --targets --protocols h1,h2,h2-hyper         the full report and the targets
  demo --servers axum,testd,plain-axum --restarts 100 --json bench.json --svg bench.svg
  demo --servers axum,testd --startup-only          the start-up time alone
  demo --servers tls,plain-tls --compare-rounds 3   HTTPS: wrk, h2load, sessions resumed
  demo --servers grpc,plain-grpc --compare-rounds 3 gRPC: tonic unary calls and streams
  demo --servers actix,plain-actix                  actix-web with and without seamless
  demo --soak 10m --restart-every 1s                growth over hundreds of restarts
  demo --conns 10000 --restarts 20                  held connections")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,

    /// Servers to restart: axum (the example, seamless), plain-axum (its
    /// handler under plain axum::serve), tls (the TLS example; loads over
    /// HTTPS and TLS, and the share of sessions resumed across restarts),
    /// plain-tls (its handler under axum and tokio-rustls), grpc (the
    /// tonic example; a gRPC load), plain-grpc (its service under plain
    /// hyper), actix (the actix-web example, HTTP/1.1), plain-actix (its
    /// handler under plain actix-web), testd,
    /// testd-reuseport, testd-naive. Default: axum,plain-axum (in soak
    /// mode, axum)
    #[arg(long, value_delimiter = ',', value_parser = server, value_name = "LIST")]
    servers: Vec<Server>,

    /// Loads: h1 (wrk, or the built-in clients; over HTTPS for tls), h2
    /// (h2load; over TLS with ALPN h2 for tls), h2-hyper (hyper's HTTP/2
    /// client, cleartext), grpc (tonic's client). Each server runs those
    /// it speaks. Default: each server's own: h1,h2-hyper for axum, h1,h2
    /// for tls, grpc for grpc, h1 for the others
    #[arg(long, value_delimiter = ',', value_parser = protocol, value_name = "LIST")]
    protocols: Vec<Protocol>,

    /// Restarts per server and load
    #[arg(long, value_name = "N", default_value_t = 15)]
    restarts: usize,

    /// Seconds per restart cycle (at least 2: daemontools' supervise naps
    /// one second after each start and reads no command meanwhile)
    #[arg(long, value_name = "S", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(2..))]
    interval_s: u64,

    /// Milliseconds into each cycle at which the restart is sent
    #[arg(long, value_name = "MS", default_value_t = 500)]
    lead_ms: u64,

    /// Connections of wrk, h2load, hyper's client or tonic's client
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,

    /// Streams in flight per HTTP/2 connection (gRPC: loops of unary
    /// calls per connection)
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..))]
    streams: u64,

    /// Built-in keep-alive probes (1 ms apart) next to the load; like the
    /// loops below, over TLS to a TLS server, gRPC calls to a gRPC one
    #[arg(long, value_name = "N", default_value_t = 2)]
    probes: usize,

    /// Built-in loops of a new connection per request
    #[arg(long, value_name = "N", default_value_t = 2)]
    newconn: usize,

    /// Built-in loops of slow requests
    #[arg(long, value_name = "N", default_value_t = 4)]
    slow: usize,

    /// How long a slow request takes, ms
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    slow_ms: u64,

    /// Use the built-in respawn loop even when daemontools is installed
    #[arg(long)]
    builtin_supervisor: bool,

    /// Use the built-in clients even when wrk and h2load are installed
    #[arg(long)]
    builtin_load: bool,

    /// Print the full report and the project's targets, met or not; also
    /// measures steady throughput against plain axum::serve (5 rounds)
    /// and the start-up time (30 samples) unless given below
    #[arg(long)]
    targets: bool,

    /// Rounds of steady throughput, each example among --servers (axum,
    /// tls, grpc) against its handler without seamless (default 0, or 5
    /// with --targets)
    #[arg(long, value_name = "N")]
    compare_rounds: Option<usize>,

    /// Seconds per throughput round
    #[arg(long, value_name = "S", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    compare_s: u64,

    /// Start-up samples, seamless on and off (default 0, or 30 with
    /// --targets or --startup-only)
    #[arg(long, value_name = "N")]
    startup_samples: Option<usize>,

    /// Measure the start-up time only: no restarts, no comparison
    #[arg(long)]
    startup_only: bool,

    /// Do not watch /proc to time each restart's steps
    #[arg(long)]
    no_trace: bool,

    /// Write the figures as JSON
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Draw throughput and failures over time as SVG
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,

    /// Soak mode: the axum example under wrk and hyper's HTTP/2 client for
    /// this long (10m, 90s, 1500ms, 1h, or seconds)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    soak: Option<Duration>,

    /// In soak mode, how long each generation serves before its restart
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s")]
    restart_every: Duration,

    /// In soak mode, requests the first generation serves before its first
    /// restart (0: no longer than the others)
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    first_generation_requests: u64,

    /// Scale mode: this many keep-alive HTTP/1.1 connections (wrk, two
    /// threads) held through the restarts
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    conns: Option<u64>,

    /// wrk's --timeout, seconds (wrk's default 2 s; 10 s in scale mode)
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    wrk_timeout_s: Option<u64>,

    /// Where soak and scale runs write their files (default: a new
    /// directory under target/seamless-bench)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// The comparison server: the example's handler under plain
    /// axum::serve (the benchmark starts itself so)
    #[command(name = "serve-plain-axum", hide = true)]
    ServePlainAxum {
        #[arg(default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

/// Parses the command line; exits with clap's message (status 2) on a bad
/// one, and after `--help` or `--version`.
pub(crate) fn parse() -> Command {
    resolve(Cli::parse())
}

fn resolve(cli: Cli) -> Command {
    if let Some(Mode::ServePlainAxum { addr }) = cli.mode {
        return Command::ServePlainAxum(addr);
    }
    let mut a = Args {
        servers: if !cli.servers.is_empty() {
            cli.servers
        } else if cli.soak.is_some() {
            vec![Server::Axum]
        } else {
            vec![Server::Axum, Server::PlainAxum]
        },
        protocols: Vec::new(),
        protocols_given: !cli.protocols.is_empty(),
        restarts: cli.restarts,
        interval_s: cli.interval_s,
        lead: Duration::from_millis(cli.lead_ms),
        connections: cli.connections as usize,
        streams: cli.streams as usize,
        probes: cli.probes,
        newconn: cli.newconn,
        slow: cli.slow,
        slow_ms: cli.slow_ms,
        builtin_supervisor: cli.builtin_supervisor,
        builtin_load: cli.builtin_load,
        compare_rounds: cli
            .compare_rounds
            .unwrap_or(if cli.targets { 5 } else { 0 }),
        compare_s: cli.compare_s,
        startup_samples: cli
            .startup_samples
            .unwrap_or(if cli.targets || cli.startup_only {
                30
            } else {
                0
            }),
        startup_only: cli.startup_only,
        targets: cli.targets,
        trace: !cli.no_trace,
        json: cli.json,
        svg: cli.svg,
        soak: cli.soak,
        restart_every: cli.restart_every,
        first_generation_requests: cli.first_generation_requests,
        conns: cli.conns.map(|n| n as usize),
        wrk_threads: 1,
        wrk_timeout_s: cli.wrk_timeout_s,
        hold: false,
        out: cli.out,
    };
    a.protocols = if a.protocols_given {
        cli.protocols
    } else {
        // The servers' own loads, in the order h1, h2, h2-hyper, gRPC.
        [
            Protocol::Http1,
            Protocol::Http2,
            Protocol::Http2Hyper,
            Protocol::Grpc,
        ]
        .into_iter()
        .filter(|p| a.servers.iter().any(|s| s.default_loads().contains(p)))
        .collect()
    };
    if let Some(n) = a.conns {
        // Scale: the example over HTTP/1.1, wrk's connections held
        // throughout; nothing else measured.
        a.servers = vec![Server::Axum];
        a.protocols = vec![Protocol::Http1];
        a.protocols_given = true;
        a.connections = n;
        a.wrk_threads = 2;
        a.hold = true;
        a.compare_rounds = 0;
        a.startup_samples = 0;
        a.wrk_timeout_s.get_or_insert(10);
    }
    Command::Bench(Box::new(a))
}

fn server(s: &str) -> Result<Server, String> {
    Server::parse(s)
        .ok_or_else(|| format!("unknown server {s:?} ({})", crate::servers::SERVER_NAMES))
}

fn protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s).ok_or_else(|| format!("unknown protocol {s:?} (h1, h2, h2-hyper, grpc)"))
}

impl Args {
    /// Whether `server` runs under `protocol`'s load.
    pub(crate) fn runs(&self, server: Server, protocol: Protocol) -> bool {
        server.speaks(protocol)
            && (self.protocols_given || server.default_loads().contains(&protocol))
    }
}

/// `10m`, `90s`, `1500ms`, `1h` or a bare number of seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let not = || format!("not a duration: {s:?} (10m, 90s, 1500ms, 1h, or seconds)");
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .filter(|&i| i > 0)
        .ok_or_else(not)?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| not())?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(not()),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("demo").chain(argv.iter().copied()))?;
        match resolve(cli) {
            Command::Bench(a) => Ok(*a),
            Command::ServePlainAxum(_) => panic!("not a benchmark run"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert!(duration("s").is_err());
        assert!(duration("5d").is_err());
    }

    #[test]
    fn by_default_the_example_and_plain_axum_side_by_side() {
        let a = args(&[]).unwrap();
        assert_eq!(a.servers, [Server::Axum, Server::PlainAxum]);
        assert_eq!(a.protocols, [Protocol::Http1, Protocol::Http2Hyper]);
        assert_eq!(
            (a.compare_rounds, a.startup_samples, a.targets),
            (0, 0, false)
        );
        let t = args(&["--targets"]).unwrap();
        assert_eq!(
            (t.compare_rounds, t.startup_samples, t.targets),
            (5, 30, true)
        );
    }

    #[test]
    fn every_flag_is_read() {
        let a = args(&[
            "--servers=axum,testd,testd-reuseport,testd-naive,plain-axum",
            "--protocols=h1,h2,h2-hyper",
            "--restarts=3",
            "--interval-s=4",
            "--lead-ms=700",
            "--connections=5",
            "--streams=6",
            "--probes=1",
            "--newconn=0",
            "--slow=1",
            "--slow-ms=300",
            "--builtin-supervisor",
            "--builtin-load",
            "--compare-rounds=2",
            "--compare-s=3",
            "--startup-samples=7",
            "--no-trace",
            "--json=x.json",
            "--svg=x.svg",
            "--wrk-timeout-s=9",
            "--out=dir",
        ])
        .unwrap();
        assert_eq!(a.servers.len(), 5);
        assert_eq!(a.protocols.len(), 3);
        assert!(a.protocols_given);
        assert_eq!(
            (a.restarts, a.interval_s, a.lead),
            (3, 4, Duration::from_millis(700))
        );
        assert_eq!(
            (a.connections, a.streams, a.probes, a.newconn),
            (5, 6, 1, 0)
        );
        assert_eq!((a.slow, a.slow_ms), (1, 300));
        assert!(a.builtin_supervisor && a.builtin_load && !a.trace);
        assert_eq!(
            (a.compare_rounds, a.compare_s, a.startup_samples),
            (2, 3, 7)
        );
        assert_eq!(a.wrk_timeout_s, Some(9));
        assert!(a.json.is_some() && a.svg.is_some() && a.out.is_some());
        let soak = args(&["--soak", "10m", "--restart-every", "1s"]).unwrap();
        assert_eq!(soak.soak, Some(Duration::from_secs(600)));
        assert_eq!(soak.restart_every, Duration::from_secs(1));
        assert_eq!(soak.servers, [Server::Axum]);
        let scale = args(&["--conns", "10000"]).unwrap();
        assert_eq!(
            (scale.connections, scale.wrk_threads, scale.hold),
            (10000, 2, true)
        );
        assert_eq!(scale.wrk_timeout_s, Some(10));
        assert!(args(&["--startup-only"]).unwrap().startup_samples == 30);
    }

    #[test]
    fn each_server_runs_its_own_loads_unless_told() {
        let a = args(&[
            "--servers",
            "tls,grpc,actix,plain-tls,plain-grpc,plain-actix",
        ])
        .unwrap();
        assert_eq!(
            a.protocols,
            [Protocol::Http1, Protocol::Http2, Protocol::Grpc]
        );
        assert!(a.runs(Server::Tls, Protocol::Http1) && a.runs(Server::Tls, Protocol::Http2));
        assert!(!a.runs(Server::Tls, Protocol::Grpc) && !a.runs(Server::Actix, Protocol::Http2));
        assert!(a.runs(Server::Grpc, Protocol::Grpc) && !a.runs(Server::Grpc, Protocol::Http1));
        assert!(a.runs(Server::PlainTls, Protocol::Http2));
        assert!(a.runs(Server::PlainActix, Protocol::Http1));
        assert!(!a.runs(Server::PlainActix, Protocol::Http2));
        let told = args(&["--servers", "axum,tls", "--protocols", "h2,h2-hyper"]).unwrap();
        assert!(
            told.runs(Server::Axum, Protocol::Http2) && told.runs(Server::Tls, Protocol::Http2)
        );
        assert!(
            !told.runs(Server::Tls, Protocol::Http2Hyper),
            "hyper's client is cleartext"
        );
        assert!(args(&["--servers", "grpc,tls"]).is_ok());
        let unknown = args(&["--servers", "nginx"])
            .err()
            .expect("refused")
            .to_string();
        for name in [
            "tls",
            "plain-tls",
            "grpc",
            "plain-grpc",
            "actix",
            "plain-actix",
        ] {
            assert!(unknown.contains(name), "{unknown}");
        }
    }

    #[test]
    fn errors_name_the_bad_argument() {
        for (argv, named) in [
            (&["--servers", "nginx"][..], "nginx"),
            (&["--protocols", "h3"][..], "h3"),
            (&["--restarts", "many"][..], "--restarts"),
            (&["--interval-s", "1"][..], "--interval-s"),
            (&["--soak", "5d"][..], "5d"),
            (&["--frobnicate"][..], "--frobnicate"),
        ] {
            let e = args(argv).err().expect("refused");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(named), "{argv:?}: {e}");
        }
    }

    #[test]
    fn the_comparison_server_mode_is_the_name_the_benchmark_starts() {
        let cli = Cli::try_parse_from(["demo", crate::servers::PLAIN_AXUM, "127.0.0.1:1"]).unwrap();
        assert!(matches!(resolve(cli), Command::ServePlainAxum(addr) if addr == "127.0.0.1:1"));
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

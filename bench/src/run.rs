//! The three experiments: a server restarted under load (for a TLS
//! server, with the share of sessions saved before each restart that
//! resume after it), its steady throughput against the same handler
//! without seamless, and its start-up time with and without the launcher
//! split.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Args;
use crate::load::builtin::{get_pid_over, tls_get, Client, Load, Sample, Wire, PROBE_PAUSE};
use crate::load::{grpc, h2load, hyper_h2, url, wrk, Clock, Slice, Tools};
use crate::measure::{self, Held, Labels, Recorded, Restart, Resumption, RunFigures};
use crate::progress;
use crate::servers::{speaks_h2c, Binaries, Protocol, Server};
use crate::supervision::{
    alive, children, cpu_us, exe, fds, free_port, listen_counters, memory, temp_dir, Group,
    Supervisor,
};

/// Why a run was not made.
pub(crate) type Skip = String;

enum Tool {
    Wrk(wrk::Running),
    H2load(h2load::Running),
    Hyper(hyper_h2::Running),
    Grpc(grpc::Running),
}

/// Callers of 2 s gRPC server streams in the gRPC load.
const GRPC_STREAM_CALLERS: usize = 2;

/// What the built-in clients speak to `server`.
pub(crate) fn wire(bins: &Binaries, server: Server) -> Wire {
    if server.tls() {
        Wire::Tls(bins.certificate().client(false))
    } else if server.grpc() {
        Wire::Grpc
    } else {
        Wire::Http
    }
}

impl Tool {
    fn finish(self, clock: &Clock) -> Slice {
        match self {
            Tool::Wrk(t) => t.finish(clock),
            Tool::H2load(t) => t.finish(clock),
            Tool::Hyper(t) => t.finish(clock),
            Tool::Grpc(t) => t.finish(),
        }
    }
}

/// Runs `server` under a supervisor, restarts it `args.restarts` times
/// under load, and measures.
pub(crate) fn restarts(
    args: &Args,
    bins: &Binaries,
    tools: Tools,
    server: Server,
    protocol: Protocol,
) -> Result<RunFigures, Skip> {
    if protocol == Protocol::Http2 && !tools.h2load {
        return Err("h2load is not installed, and there is no built-in HTTP/2 client".into());
    }
    let label: String = format!("{}-{}", server.name(), protocol.name())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = temp_dir(&label);
    let port = free_port();
    let launch = server.launch(
        bins,
        &format!("127.0.0.1:{port}"),
        Some(&dir.join("server.pid")),
    );
    let program = std::fs::canonicalize(&launch.program).unwrap_or(launch.program.clone());
    let wire = wire(bins, server);
    let target = url(port, server.tls());
    let sup = Supervisor::start(args.builtin_supervisor, &launch, &dir);
    let (sup, first_pid) = first_answer(sup, server, port, &wire, &dir)?;
    if protocol.is_h2() && !server.tls() && !speaks_h2c(port) {
        sup.stop(&[first_pid]);
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "{} does not speak HTTP/2 with prior knowledge",
            server.name()
        ));
    }
    std::thread::sleep(Duration::from_millis(200));
    let launcher_mem = if server.seamless() {
        sup.child_pid().and_then(memory)
    } else {
        None
    };
    let daemon_mem = memory(first_pid);

    let clock = Clock::new();
    let script = (protocol == Protocol::Http1 && tools.wrk).then(|| wrk::script(&dir));

    // Held connections: one wrk for the whole run, stopped after the last
    // restart; the restarts begin once the daemon holds them all.
    let mut held = None;
    let mut held_wrk = None;
    let mut up_ms = 0.0;
    if args.hold && protocol == Protocol::Http1 && tools.wrk {
        let seconds = args.restarts as u64 * args.interval_s + 600;
        let started = Instant::now();
        let shape = wrk::Shape {
            threads: args.wrk_threads,
            timeout_s: args.wrk_timeout_s,
        };
        held_wrk = Some(wrk::start_shaped(
            shape,
            &target,
            args.connections,
            seconds,
            script.as_deref(),
            &dir,
            &clock,
        ));
        let mut up_after_s = None;
        while started.elapsed() < Duration::from_secs(120) {
            if fds(first_pid).unwrap_or(0) >= args.connections as u64 {
                up_after_s = Some(started.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Past the connections' own handshakes.
        std::thread::sleep(Duration::from_secs(1));
        progress::note(&format!(
            "{} connections up after {}",
            args.connections,
            up_after_s.map_or("- (not within 120 s)".into(), |s| format!("{s:.1} s"))
        ));
        up_ms = clock.now_ms();
        held = Some(Held {
            connections: args.connections,
            up_after_s,
            listen_once_up: listen_counters(),
            listen_after: None,
        });
    }

    // The built-in clients, for the whole run.
    let load = Arc::new(Load {
        port,
        wire,
        clock,
        stop: Arc::new(AtomicBool::new(false)),
    });
    let builtin_is_load = protocol == Protocol::Http1 && !tools.wrk;
    let keepalive = if builtin_is_load {
        args.connections
    } else {
        args.probes
    };
    let mut threads = Vec::new();
    let pause = (!builtin_is_load).then_some(PROBE_PAUSE);
    for _ in 0..keepalive {
        let l = load.clone();
        threads.push(std::thread::spawn(move || l.keepalive(pause)));
    }
    for _ in 0..args.newconn {
        let l = load.clone();
        threads.push(std::thread::spawn(move || {
            l.oneshot(0, Client::NewConnection)
        }));
    }
    for _ in 0..args.slow {
        let (l, delay_ms) = (load.clone(), args.slow_ms);
        threads.push(std::thread::spawn(move || {
            l.oneshot(delay_ms, Client::Slow)
        }));
    }
    // One cycle per restart: the load tool runs for the cycle, the restart
    // comes `lead` into it.
    let mut slices = Vec::new();
    let mut restarts = Vec::new();
    let mut launchers = HashSet::new();
    let mut resumption = server.tls().then(Resumption::default);
    let cycle = Duration::from_secs(args.interval_s);
    for i in 0..args.restarts {
        let cycle_began = Instant::now();
        let tool = match protocol {
            _ if held_wrk.is_some() => None,
            Protocol::Http1 if tools.wrk => Some(Tool::Wrk(wrk::start(
                &target,
                args.connections,
                args.interval_s,
                script.as_deref(),
                &dir,
                &clock,
            ))),
            Protocol::Http2 => Some(Tool::H2load(h2load::start(
                &target,
                args.connections,
                args.streams,
                args.interval_s,
                true,
                &dir,
                &clock,
            ))),
            Protocol::Http2Hyper => Some(Tool::Hyper(hyper_h2::start(
                port,
                args.connections,
                args.streams,
                args.interval_s,
                &clock,
            ))),
            Protocol::Grpc => Some(Tool::Grpc(grpc::start(
                port,
                args.connections,
                args.streams,
                GRPC_STREAM_CALLERS,
                args.interval_s,
                &clock,
            ))),
            Protocol::Http1 => None,
        };
        std::thread::sleep(args.lead);
        // A client that saves its session on the generation about to be
        // replaced, and offers it to the next one at the end of the cycle.
        let saved = resumption.as_ref().and_then(|_| {
            let client = bins.certificate().client(true);
            let (pid, _) = tls_get(&client, port).ok()?;
            Some((client, pid))
        });
        let old_launcher = sup.child_pid();
        launchers.extend(old_launcher);
        let old: Vec<u32> = match old_launcher {
            Some(l) if server.seamless() => children(l),
            Some(l) => vec![l],
            None => Vec::new(),
        };
        let at = Instant::now();
        sup.restart();
        let mut restart = if args.trace {
            trace(
                &sup,
                server,
                old_launcher,
                &program,
                &old,
                at,
                cycle_began + cycle,
            )
        } else {
            Restart::default()
        };
        restart.at_ms = clock.ms(at);
        restarts.push(restart);
        match tool {
            Some(t) => slices.push(t.finish(&clock)),
            None => {
                std::thread::sleep((cycle_began + cycle).saturating_duration_since(Instant::now()))
            }
        }
        if let (Some(r), Some((client, old_pid))) = (resumption.as_mut(), saved) {
            r.offer(&client, port, old_pid);
        }
        progress::update(&format!("restart {} of {}", i + 1, args.restarts));
    }
    if let (Some(h), Some(running)) = (held.as_mut(), held_wrk) {
        h.listen_after = listen_counters();
        let mut slice = running.stop(&clock);
        // Steady state begins once the connections are up.
        slice.seconds = ((clock.now_ms() - up_ms) / 1000.0).floor() as u64;
        slice.started_ms = up_ms;
        slices.push(slice);
    }
    std::thread::sleep(Duration::from_millis(300));
    load.stop.store(true, Ordering::SeqCst);
    let samples: Vec<Sample> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    let end_ms = clock.now_ms();

    let mut known: HashSet<u32> = samples.iter().map(|s| s.pid).filter(|p| *p != 0).collect();
    known.extend(launchers);
    let supervisor = sup.describe();
    sup.stop(&known.into_iter().collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);

    let load_desc = match protocol {
        Protocol::Http1 if server.tls() && tools.wrk => format!(
            "wrk -t1 -c{} over HTTPS once per restart, {} built-in keep-alive probes over TLS (1 ms apart)",
            args.connections, args.probes
        ),
        Protocol::Http1 if server.tls() => {
            format!("{} built-in keep-alive clients over TLS", args.connections)
        }
        Protocol::Http2 if server.tls() => format!(
            "h2load -t1 -c{} -m{} over TLS (ALPN h2) once per restart, {} built-in HTTP/1.1 keep-alive probes over TLS (1 ms apart)",
            args.connections, args.streams, args.probes
        ),
        Protocol::Grpc => format!(
            "tonic's client, {} connections of {} unary-call loops and {} callers of 2 s server streams, once per restart ({} streams complete; {} calls sent again as never processed, not failures), {} built-in gRPC keep-alive probes (1 ms apart)",
            args.connections,
            args.streams,
            GRPC_STREAM_CALLERS,
            slices.iter().map(|s| s.streams).sum::<u64>(),
            slices.iter().map(|s| s.resent).sum::<u64>(),
            args.probes
        ),
        Protocol::Http1 if held.is_some() => format!(
            "wrk -t{} -c{}{}, one run held through every restart, {} built-in keep-alive probes (1 ms apart)",
            args.wrk_threads,
            args.connections,
            args.wrk_timeout_s.map_or(String::new(), |t| format!(" --timeout={t}s")),
            args.probes
        ),
        Protocol::Http1 if tools.wrk => format!(
            "wrk -t1 -c{} once per restart, {} built-in keep-alive probes (1 ms apart)",
            args.connections, args.probes
        ),
        Protocol::Http1 => format!("{} built-in keep-alive clients", args.connections),
        Protocol::Http2 => format!(
            "h2load -t1 -c{} -m{} once per restart, {} built-in HTTP/1.1 keep-alive probes (1 ms apart)",
            args.connections, args.streams, args.probes
        ),
        Protocol::Http2Hyper => format!(
            "hyper's HTTP/2 client, {} connections of {} streams, once per restart ({} requests sent again as unprocessed after a GOAWAY, as RFC 9113 provides; not failures), {} built-in HTTP/1.1 keep-alive probes (1 ms apart)",
            args.connections,
            args.streams,
            slices.iter().map(|s| s.resent).sum::<u64>(),
            args.probes
        ),
    };
    let load_desc = format!(
        "{load_desc}, {} new-connection, {} slow ({} ms) loops{}",
        args.newconn,
        args.slow,
        args.slow_ms,
        if server.grpc() {
            " (SayHello calls)"
        } else {
            ""
        }
    );
    Ok(measure::figures(
        Labels {
            server: server.name(),
            seamless: server.seamless(),
            protocol: protocol.name(),
            supervisor,
            load: load_desc,
            launcher: launcher_mem,
            daemon: daemon_mem,
            held,
            resumption,
        },
        Recorded {
            samples,
            slices,
            restarts,
            builtin_is_load,
            end_ms,
        },
    ))
}

/// Watches `/proc` after a restart command until `until`: when the old
/// launcher went, the supervisor's new child appeared, it ran the server's
/// program, its daemon appeared, and the old generation exited. Polls
/// every 250 µs until the new daemon is seen, every 2 ms after.
#[allow(clippy::too_many_arguments)]
/// Waits, 20 s at most, for the server `sup` started on `port` to answer;
/// the supervisor back, and the pid that answered. Past that, stops the
/// supervisor and says where the server's output is.
pub(crate) fn first_answer(
    sup: Supervisor,
    server: Server,
    port: u16,
    wire: &Wire,
    dir: &Path,
) -> Result<(Supervisor, u32), String> {
    let began = Instant::now();
    loop {
        if let Some(pid) = get_pid_over(port, wire) {
            return Ok((sup, pid));
        }
        if began.elapsed() > Duration::from_secs(20) {
            sup.stop(&[]);
            return Err(format!(
                "{} did not answer within 20 s; see {}",
                server.name(),
                dir.join("stderr").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn trace(
    sup: &Supervisor,
    server: Server,
    old_launcher: Option<u32>,
    program: &Path,
    old: &[u32],
    at: Instant,
    until: Instant,
) -> Restart {
    let ms = || at.elapsed().as_secs_f64() * 1000.0;
    let mut r = Restart::default();
    let mut child: Option<u32> = None;
    let limit = until.min(at + Duration::from_secs(10));
    while Instant::now() < limit {
        if r.launcher_exit.is_none() && old_launcher.is_none_or(|l| !alive(l)) {
            r.launcher_exit = Some(ms());
        }
        if child.is_none() {
            child = sup.child_pid().filter(|p| Some(*p) != old_launcher);
            if child.is_some() {
                r.new_child = Some(ms());
            }
        }
        if let (Some(c), None) = (child, r.exec) {
            if exe(c).as_deref() == Some(program) {
                r.exec = Some(ms());
            }
        }
        if let (Some(c), Some(_), None) = (child, r.exec, r.daemon) {
            if !server.seamless() {
                r.daemon = r.exec;
            } else if children(c)
                .iter()
                .any(|d| exe(*d).as_deref() == Some(program))
            {
                r.daemon = Some(ms());
            }
        }
        if r.old_exit.is_none() && old.iter().all(|p| !alive(*p)) {
            r.old_exit = Some(ms());
        }
        if r.daemon.is_some() && r.old_exit.is_some() {
            break;
        }
        std::thread::sleep(if r.daemon.is_none() {
            Duration::from_micros(250)
        } else {
            Duration::from_millis(2)
        });
    }
    r
}

#[derive(Serialize)]
pub(crate) struct Comparison {
    /// The server under seamless, and the same handler without it.
    pub(crate) server: &'static str,
    pub(crate) plain: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) tool: String,
    pub(crate) seconds_per_round: u64,
    /// The axum example under seamless (launcher and daemon), requests/s.
    pub(crate) example_rps: Vec<f64>,
    /// The same handler under plain `axum::serve`, requests/s.
    pub(crate) plain_rps: Vec<f64>,
    pub(crate) example_median: Option<f64>,
    pub(crate) plain_median: Option<f64>,
    /// example / plain: the median of the rounds' ratios.
    pub(crate) ratio: Option<f64>,
    /// CPU time the serving process (the daemon, or the plain server)
    /// spent per answered request, µs, each round.
    pub(crate) example_cpu_us: Vec<f64>,
    pub(crate) plain_cpu_us: Vec<f64>,
    pub(crate) example_cpu_median: Option<f64>,
    pub(crate) plain_cpu_median: Option<f64>,
    /// plain's CPU per request / the example's: the median of the rounds'
    /// ratios. Unlike requests/s it does not depend on how the scheduler
    /// shares two cores between the server and the load tools.
    pub(crate) cost_ratio: Option<f64>,
    pub(crate) failed: u64,
}

/// Steady throughput of `server` (seamless on, no restarts: the axum, TLS,
/// gRPC or actix example) and of the same handler without seamless (plain
/// `axum::serve`, `plain-tls`, `plain-grpc`, `plain-actix`), in alternating rounds with
/// the same load, one server at a time.
pub(crate) fn compare(
    args: &Args,
    bins: &Binaries,
    tools: Tools,
    server: Server,
    protocol: Protocol,
) -> Result<Comparison, Skip> {
    let plain = server
        .plain()
        .ok_or_else(|| format!("{} has no plain twin", server.name()))?;
    if protocol == Protocol::Http2 && !tools.h2load {
        return Err("h2load is not installed".into());
    }
    let dir = temp_dir(&format!("compare-{}", protocol.name().replace('/', "")));
    let tool = match protocol {
        Protocol::Http1 if tools.wrk => format!("wrk -t1 -c{}", args.connections),
        Protocol::Http1 => format!("{} built-in keep-alive clients", args.connections),
        Protocol::Http2 => format!("h2load -t1 -c{} -m{}", args.connections, args.streams),
        Protocol::Http2Hyper => format!(
            "hyper's HTTP/2 client, {} connections of {} streams",
            args.connections, args.streams
        ),
        Protocol::Grpc => format!(
            "tonic's client, {} connections of {} unary-call loops, {} stream callers",
            args.connections, args.streams, GRPC_STREAM_CALLERS
        ),
    };
    let tool = if server.tls() {
        format!("{tool} over TLS")
    } else {
        tool
    };
    let wire = wire(bins, server);
    let target_of = |port| url(port, server.tls());
    let mut c = Comparison {
        server: server.name(),
        plain: plain.name(),
        protocol: protocol.name(),
        tool,
        seconds_per_round: args.compare_s,
        example_rps: Vec::new(),
        plain_rps: Vec::new(),
        example_median: None,
        plain_median: None,
        ratio: None,
        example_cpu_us: Vec::new(),
        plain_cpu_us: Vec::new(),
        example_cpu_median: None,
        plain_cpu_median: None,
        cost_ratio: None,
        failed: 0,
    };
    for round in 0..args.compare_rounds {
        for example in [true, false] {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let launch = if example {
                server.launch(bins, &addr, Some(&dir.join("server.pid")))
            } else {
                plain.launch(bins, &addr, None)
            };
            let _server = Group::spawn(&launch);
            let began = Instant::now();
            // The process that serves: the daemon, or the plain server.
            let serving = loop {
                if let Some(pid) = get_pid_over(port, &wire) {
                    break pid;
                }
                if began.elapsed() > Duration::from_secs(10) {
                    return Err(format!("{} did not answer", launch.program.display()));
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if protocol.is_h2() && !server.tls() && !speaks_h2c(port) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "{} does not speak HTTP/2 with prior knowledge",
                    if example { server.name() } else { plain.name() }
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
            let clock = Clock::new();
            let cpu_before = cpu_us(serving);
            let (answered, failed) = match protocol {
                Protocol::Http1 if tools.wrk => {
                    let s = wrk::start(
                        &target_of(port),
                        args.connections,
                        args.compare_s,
                        None,
                        &dir,
                        &clock,
                    )
                    .finish(&clock);
                    (s.answered, s.failed())
                }
                Protocol::Http2 => {
                    let s = h2load::start(
                        &target_of(port),
                        args.connections,
                        args.streams,
                        args.compare_s,
                        false,
                        &dir,
                        &clock,
                    )
                    .finish(&clock);
                    (s.answered, s.failed())
                }
                Protocol::Http2Hyper => {
                    let s = hyper_h2::start(
                        port,
                        args.connections,
                        args.streams,
                        args.compare_s,
                        &clock,
                    )
                    .finish(&clock);
                    (s.answered, s.failed())
                }
                Protocol::Grpc => {
                    let s = grpc::start(
                        port,
                        args.connections,
                        args.streams,
                        GRPC_STREAM_CALLERS,
                        args.compare_s,
                        &clock,
                    )
                    .finish();
                    (s.answered, s.failed())
                }
                Protocol::Http1 => builtin_keepalive(port, &wire, args.connections, args.compare_s),
            };
            let cpu_per_request = cpu_before
                .zip(cpu_us(serving))
                .filter(|_| answered > 0)
                .map(|(before, after)| (after - before) / answered as f64);
            c.failed += failed;
            let rps = answered as f64 / args.compare_s as f64;
            let (rps_list, cpu_list) = if example {
                (&mut c.example_rps, &mut c.example_cpu_us)
            } else {
                (&mut c.plain_rps, &mut c.plain_cpu_us)
            };
            rps_list.push(rps);
            cpu_list.extend(cpu_per_request);
            progress::update(&format!("round {} of {}", round + 1, args.compare_rounds));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    c.example_median = measure::median(c.example_rps.clone());
    c.plain_median = measure::median(c.plain_rps.clone());
    // Rounds are pairs, one right after the other: the median of the
    // pairs' ratios is steadier than the ratio of the medians when the
    // machine's other load drifts.
    c.ratio = median_ratio(&c.example_rps, &c.plain_rps);
    c.example_cpu_median = measure::median(c.example_cpu_us.clone());
    c.plain_cpu_median = measure::median(c.plain_cpu_us.clone());
    c.cost_ratio = median_ratio(&c.plain_cpu_us, &c.example_cpu_us);
    Ok(c)
}

/// The median of the rounds' ratios `a[i] / b[i]`.
fn median_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    measure::median(
        a.iter()
            .zip(b)
            .filter(|(_, d)| **d > 0.0)
            .map(|(n, d)| n / d)
            .collect(),
    )
}

/// (answered, failed) by `connections` built-in keep-alive clients in
/// `seconds`.
fn builtin_keepalive(port: u16, wire: &Wire, connections: usize, seconds: u64) -> (u64, u64) {
    let load = Arc::new(Load {
        port,
        wire: wire.clone(),
        clock: Clock::new(),
        stop: Arc::new(AtomicBool::new(false)),
    });
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let l = load.clone();
            std::thread::spawn(move || l.keepalive(None))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    load.stop.store(true, Ordering::SeqCst);
    let samples: Vec<Sample> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    let failed = samples.iter().filter(|s| s.failure().is_some()).count() as u64;
    (samples.len() as u64 - failed, failed)
}

#[derive(Serialize)]
pub(crate) struct Startup {
    pub(crate) server: &'static str,
    pub(crate) samples: usize,
    /// Spawn to the first answer, seamless off (a plain process), ms.
    pub(crate) off_ms_median: Option<f64>,
    /// The same with the launcher split, ms.
    pub(crate) on_ms_median: Option<f64>,
}

/// Median time from spawning `server` to its first answered request,
/// seamless off and on.
pub(crate) fn startup(bins: &Binaries, server: Server, samples: usize) -> Startup {
    let dir = temp_dir("startup");
    let mut medians = [None, None];
    for (i, seamless) in [false, true].into_iter().enumerate() {
        let mut times = Vec::new();
        for n in 0..samples {
            let port = free_port();
            // A pid file of its own each time: a first start, not a restart.
            let pid_file: Option<PathBuf> = seamless.then(|| dir.join(format!("{n}.pid")));
            let launch = server.launch(bins, &format!("127.0.0.1:{port}"), pid_file.as_deref());
            let began = Instant::now();
            let _server = Group::spawn(&launch);
            while began.elapsed() < Duration::from_secs(10) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut buf = [0u8; 12];
                    if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                        times.push(began.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        medians[i] = measure::median(times);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Startup {
        server: server.name(),
        samples,
        off_ms_median: medians[0],
        on_ms_median: medians[1],
    }
}

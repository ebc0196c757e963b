//! The restart-under-load benchmark, and the README's first command.
//!
//! By default it runs the axum example (`examples/axum.rs`, seamless) and
//! the same handler under plain `axum::serve` (no seamless) under the same
//! supervisor (daemontools' `supervise` when it is installed, else a
//! minimal built-in respawn loop, and it says so), loads each over
//! 127.0.0.1 only with the same load, restarts each N times the
//! supervisor's way, and ends with one screen: per server and load the
//! requests, the failures (every failure any client saw), the restarts
//! with a failure and the restart command to the new process's first
//! answer, then a verdict with and without seamless.
//!
//! `--targets` prints instead the full Markdown report (throughput and p99
//! latency in steady state and inside restart windows, where a restart's
//! time goes, the launcher's memory, the example's steady throughput
//! against plain `axum::serve`, the start-up time the launcher split adds)
//! and the project's targets, met or not. Optionally writes JSON and an
//! SVG plot. Every loop is bounded; it stops by itself.
//!
//! The load is wrk (HTTP/1.1 keep-alive) and hyper's HTTP/2 client, h2load
//! (HTTP/2 with prior knowledge) on request, the built-in clients when wrk
//! is missing (it says so), plus the built-in probes, new-connection and
//! slow-request loops. `--servers tls` (the TLS example, beside
//! `plain-tls`) is loaded over HTTPS and TLS and counts the sessions saved
//! before a restart that resume after it; `--servers grpc` (beside
//! `plain-grpc`) with tonic's client; `--servers actix` (beside
//! `plain-actix`) with the HTTP/1.1 load.
//!
//! ```text
//! cargo run --release -p seamless-bench      # with and without seamless, side by side
//! cargo run --release -p seamless-bench -- --targets --protocols h1,h2,h2-hyper
//! cargo run --release -p seamless-bench -- --servers axum,testd --restarts 100 \
//!     --json docs/bench.json --svg docs/bench.svg --targets
//! cargo run --release -p seamless-bench -- --servers axum,testd --startup-only
//! cargo run --release -p seamless-bench -- --soak 10m --restart-every 1s   # growth over restarts
//! cargo run --release -p seamless-bench -- --conns 10000 --restarts 20    # held connections
//! ```
//!
//! Modules: `cli` (flags), `servers` (what runs, and the comparison
//! server), `supervision` (supervise or the respawn loop; `/proc`,
//! `RLIMIT_NOFILE`), `load` (built-in clients, wrk, h2load, hyper's
//! client; the readers and the HTTP/2 client come from `seamless-loadkit`),
//! `run` (the experiments), `soak` (the soak and its growth figures),
//! `measure` (windows, rates, percentiles, slopes), `progress` (the
//! progress line), `summary` (the one screen and its verdict), `report`
//! (the full table and the targets, JSON, SVG; the soak's text, CSV and
//! plot).

mod cli;
mod load;
mod measure;
mod progress;
mod report;
mod run;
mod servers;
mod soak;
mod summary;
mod supervision;

use report::{Report, Settings, Skipped};
use servers::{Protocol, Server};

fn main() {
    let args = match cli::parse() {
        cli::Command::Bench(args) => args,
        // The comparison server is this program in another mode, so that
        // `cargo run --bin demo` has nothing else to build for it.
        cli::Command::ServePlainAxum(addr) => {
            if let Err(e) = servers::serve_plain_axum(&addr) {
                eprintln!("demo: plain axum on {addr}: {e}");
                std::process::exit(1);
            }
            return;
        }
    };
    if let Some(n) = args.conns {
        // Every process started from here on inherits the limit.
        let want = n as u64 * 2 + 1024;
        match supervision::raise_nofile(want) {
            Ok(((soft, hard), (new_soft, new_hard))) => eprintln!(
                "RLIMIT_NOFILE for this program and all it starts: soft {new_soft}, hard {new_hard} (was {soft} / {hard}; {want} wanted{})",
                // SAFETY: geteuid(2) has no preconditions.
                match (unsafe { libc::geteuid() } == 0, new_hard > hard) {
                    (_, true) => ", root: hard raised",
                    _ if hard >= want => ", the hard limit was enough",
                    (true, false) => ", root, but the hard limit could not be raised (no CAP_SYS_RESOURCE)",
                    (false, false) => ", not root: hard kept",
                }
            ),
            Err(e) => eprintln!("demo: cannot raise RLIMIT_NOFILE: {e}"),
        }
    }
    let bins = servers::build();
    if args.startup_only {
        let startup: Vec<_> = args
            .servers
            .iter()
            .filter(|s| matches!(s, Server::Axum | Server::Testd))
            .map(|&server| run::startup(&bins, server, args.startup_samples))
            .collect();
        print!("{}", report::startup(&startup));
        return;
    }
    let tools = load::Tools::detect(args.builtin_load);
    if let Some(total) = args.soak {
        soak(&args, &bins, tools, total);
        return;
    }
    if args.conns.is_some() && !tools.wrk {
        eprintln!("demo: --conns needs wrk (the built-in clients are a thread per connection)");
        std::process::exit(1);
    }
    if !tools.wrk {
        progress::note(if args.builtin_load {
            "HTTP/1.1 load from the built-in keep-alive clients (--builtin-load)"
        } else {
            "HTTP/1.1 load from the built-in keep-alive clients: wrk is not installed (apt-get install wrk)"
        });
    }
    if args.protocols.contains(&Protocol::Http2) && !tools.h2load {
        progress::note("no h2load run: h2load is not installed (apt-get install nghttp2-client), or --builtin-load");
    }
    let supervise =
        !args.builtin_supervisor && supervision::which("supervise") && supervision::which("svc");
    if !supervise {
        progress::note(if args.builtin_supervisor {
            "supervisor: the built-in respawn loop (--builtin-supervisor)"
        } else {
            "supervisor: the built-in respawn loop: daemontools is not installed (apt-get install daemontools)"
        });
    }

    // Server by server within each load, so that with and without
    // seamless stand side by side.
    let plan: Vec<(Server, Protocol)> = args
        .protocols
        .iter()
        .flat_map(|&p| args.servers.iter().map(move |&s| (s, p)))
        .filter(|(s, p)| args.runs(*s, *p))
        .collect();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for (i, &(server, protocol)) in plan.iter().enumerate() {
        progress::phase(format!(
            "run {} of {}: {}, {}",
            i + 1,
            plan.len(),
            server.name(),
            protocol.name()
        ));
        match run::restarts(&args, &bins, tools, server, protocol) {
            Ok(figures) => runs.push(figures),
            Err(reason) => {
                progress::note(&format!(
                    "skipped {} {}: {reason}",
                    server.name(),
                    protocol.name()
                ));
                skipped.push(Skipped {
                    server: server.name(),
                    protocol: protocol.name(),
                    reason,
                });
            }
        }
    }
    let mut comparisons = Vec::new();
    if args.compare_rounds > 0 {
        for &server in &args.servers {
            let Some(plain) = server.plain() else {
                continue;
            };
            for &protocol in &args.protocols {
                if !args.runs(server, protocol) {
                    continue;
                }
                progress::phase(format!(
                    "steady throughput, {} {}, against {}",
                    server.name(),
                    protocol.name(),
                    plain.name()
                ));
                match run::compare(&args, &bins, tools, server, protocol) {
                    Ok(c) => comparisons.push(c),
                    Err(reason) => progress::note(&format!(
                        "no throughput comparison for {} {}: {reason}",
                        server.name(),
                        protocol.name()
                    )),
                }
            }
        }
    }
    let mut startup = Vec::new();
    if args.startup_samples > 0 {
        for &server in &args.servers {
            if matches!(server, Server::Axum | Server::Testd) {
                progress::phase(format!("start-up time, {}", server.name()));
                startup.push(run::startup(&bins, server, args.startup_samples));
            }
        }
    }

    let report = Report {
        settings: Settings {
            supervisor: if supervise {
                "daemontools supervise"
            } else {
                "built-in respawn loop"
            },
            restart_command: if supervise { "svc -t" } else { "kill -TERM" },
            restarts: args.restarts,
            cycle_s: args.interval_s,
            restart_after_ms: args.lead.as_millis() as u64,
            window: format!(
                "from the restart command to {} ms after the new generation's first answer",
                measure::WINDOW_TAIL_MS
            ),
        },
        runs,
        skipped,
        throughput_against_plain: comparisons,
        startup,
    };
    progress::clear();
    if args.targets || args.conns.is_some() {
        print!("{}", report::text(&report));
    } else {
        print!(
            "{}",
            summary::text(&report, &load_description(&args, tools))
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report::json(&report)).expect("write json");
    }
    if let Some(path) = &args.svg {
        if let Err(e) = report::plot(&report.runs, path) {
            eprintln!("demo: cannot draw {}: {e}", path.display());
        }
    }
    if args.conns.is_some() {
        let dir = out_dir(&args, "scale");
        let text = format!(
            "{}\n{}",
            report::text(&report),
            report::scale_text(&report.runs)
        );
        print!("\n{}", report::scale_text(&report.runs));
        write(&dir.join("report.md"), &text);
        write(&dir.join("report.json"), &report::json(&report));
        if let Err(e) = report::plot(&report.runs, &dir.join("throughput.svg")) {
            eprintln!("demo: cannot draw: {e}");
        }
        eprintln!("scale: report, JSON and plot in {}", dir.display());
    }
    if args.targets || args.conns.is_some() {
        println!("\n{}", summary::verdict(&report.runs));
    }
}

/// The soak mode: run it, print its figures, write them with the readings
/// and the plot into the output directory.
fn soak(
    args: &cli::Args,
    bins: &servers::Binaries,
    tools: load::Tools,
    total: std::time::Duration,
) {
    let s = match soak::run(args, bins, tools, total) {
        Ok(s) => s,
        Err(reason) => {
            eprintln!("demo: no soak: {reason}");
            std::process::exit(1)
        }
    };
    let dir = out_dir(args, "soak");
    let text = report::soak_text(&s);
    print!("{text}");
    write(&dir.join("report.md"), &text);
    write(&dir.join("readings.csv"), &report::soak_csv(&s));
    let plot = dir.join("readings.svg");
    if let Err(e) = report::soak_plot(&s, &plot) {
        eprintln!("demo: cannot draw {}: {e}", plot.display());
    }
    println!(
        "\nreport, readings (CSV) and plot (SVG) in {}",
        dir.display()
    );
}

/// `--out`, else a new directory under `target/seamless-bench`.
fn out_dir(args: &cli::Args, mode: &str) -> std::path::PathBuf {
    let dir = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/seamless-bench"
        ))
        .join(format!("{mode}-{secs}"))
    });
    std::fs::create_dir_all(&dir).expect("output directory");
    dir
}

fn write(path: &std::path::Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("demo: cannot write {}: {e}", path.display());
    }
}

/// The load of a restart run, in words, for the summary.
fn load_description(args: &cli::Args, tools: load::Tools) -> String {
    let mut parts = Vec::new();
    for protocol in &args.protocols {
        parts.push(match protocol {
            Protocol::Http1 if tools.wrk => {
                format!("HTTP/1.1 from wrk, {} connections", args.connections)
            }
            Protocol::Http1 => format!(
                "HTTP/1.1 from {} built-in keep-alive clients",
                args.connections
            ),
            Protocol::Http2 => format!(
                "HTTP/2 from h2load, {} connections of {} streams",
                args.connections, args.streams
            ),
            Protocol::Http2Hyper => format!(
                "HTTP/2 from hyper's client, {} connections of {} streams",
                args.connections, args.streams
            ),
            Protocol::Grpc => format!(
                "gRPC from tonic's client, {} connections of {} unary-call loops and 2 callers of 2 s streams",
                args.connections, args.streams
            ),
        });
    }
    let (tls, grpc) = (
        args.servers.iter().any(|s| s.tls()),
        args.servers.iter().any(|s| s.grpc()),
    );
    let speaking = match (tls, grpc) {
        (true, true) => " (over TLS to a TLS server, gRPC calls to a gRPC one)",
        (true, false) => " (over TLS to a TLS server)",
        (false, true) => " (gRPC calls to a gRPC server)",
        (false, false) => "",
    };
    format!(
        "{}{}; with each, {} keep-alive probes, {} new-connection loops and {} loops of slow ({} ms) requests{speaking}",
        parts.join("; "),
        if tls {
            " (wrk over HTTPS and h2load over TLS with ALPN h2 to a TLS server)"
        } else {
            ""
        },
        args.probes,
        args.newconn,
        args.slow,
        args.slow_ms
    )
}

//! The restart-under-load benchmark, and the README's first command.
//!
//! Runs a real server, by default the axum example (`examples/axum.rs`),
//! under a supervisor (daemontools' `supervise` when it is installed, else
//! a minimal built-in respawn loop, and it says which), loads it over
//! 127.0.0.1 only, restarts it N times the supervisor's way, and reports
//! per server and protocol: requests, failures by kind (every failure any
//! client saw, in one total), restarts with a failure, throughput and p99
//! latency in steady state and inside restart windows, the restart command
//! to the new generation's first answer and where that time goes, the
//! launcher's memory, and the start-up time the launcher split adds. It
//! also compares the example's steady throughput with its handler under
//! plain `axum::serve`. Prints Markdown; optionally writes JSON and an SVG
//! plot. Every loop is bounded; it stops by itself.
//!
//! The load is wrk (HTTP/1.1 keep-alive) and h2load (HTTP/2 with prior
//! knowledge) when they are installed, the built-in clients otherwise (it
//! says which), plus the built-in new-connection and slow-request loops.
//!
//! ```text
//! cargo run --release --bin demo        # the axum example, HTTP/1.1 and HTTP/2, 20 restarts
//! cargo run --release --bin demo -- --servers axum,testd --restarts 100 \
//!     --json docs/bench.json --svg docs/bench.svg --startup-samples 60
//! cargo run --release --bin demo -- --servers axum,testd --startup-only
//! cargo run --release --bin demo -- --soak 10m --restart-every 1s   # growth over restarts
//! cargo run --release --bin demo -- --conns 10000 --restarts 20    # held connections
//! ```
//!
//! Modules: `cli` (flags), `servers` (what runs, and the comparison
//! server), `supervision` (supervise or the respawn loop; `/proc`,
//! `RLIMIT_NOFILE`), `load` (built-in clients, wrk, h2load, hyper's
//! client), `run` (the experiments), `soak` (the soak and its growth
//! figures), `measure` (windows, rates, percentiles, slopes), `report`
//! (table, JSON, SVG; the soak's text, CSV and plot).

mod cli;
mod load;
mod measure;
mod report;
mod run;
mod servers;
mod soak;
mod supervision;

use report::{Report, Settings, Skipped};
use servers::Server;

fn main() {
    // The comparison server is this program in another mode, so that
    // `cargo run --bin demo` has nothing else to build for it.
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some(servers::PLAIN_AXUM) {
        let addr = argv.next().unwrap_or_else(|| "127.0.0.1:8080".into());
        if let Err(e) = servers::serve_plain_axum(&addr) {
            eprintln!("demo: plain axum on {addr}: {e}");
            std::process::exit(1);
        }
        return;
    }

    let args = cli::parse();
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
    eprintln!(
        "load: HTTP/1.1 from {}, HTTP/2 from {}; plus built-in new-connection and slow-request loops",
        if tools.wrk {
            "wrk"
        } else if args.builtin_load {
            "the built-in keep-alive clients (--builtin-load)"
        } else {
            "the built-in keep-alive clients (wrk is not installed)"
        },
        if tools.h2load {
            "h2load"
        } else {
            "nobody (h2load is not installed, or --builtin-load)"
        },
    );
    let supervise =
        !args.builtin_supervisor && supervision::which("supervise") && supervision::which("svc");
    eprintln!(
        "supervisor: {}",
        if supervise {
            "daemontools supervise"
        } else {
            "built-in respawn loop"
        }
    );

    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for &server in &args.servers {
        for &protocol in &args.protocols {
            if !server.speaks(protocol) {
                continue;
            }
            match run::restarts(&args, &bins, tools, server, protocol) {
                Ok(figures) => runs.push(figures),
                Err(reason) => {
                    eprintln!("skipped {} {}: {reason}", server.name(), protocol.name());
                    skipped.push(Skipped {
                        server: server.name(),
                        protocol: protocol.name(),
                        reason,
                    });
                }
            }
        }
    }
    let mut comparisons = Vec::new();
    if args.compare_rounds > 0 && args.servers.contains(&Server::Axum) {
        for &protocol in &args.protocols {
            match run::compare(&args, &bins, tools, protocol) {
                Ok(c) => comparisons.push(c),
                Err(reason) => {
                    eprintln!("no throughput comparison for {}: {reason}", protocol.name())
                }
            }
        }
    }
    let mut startup = Vec::new();
    if args.startup_samples > 0 {
        for &server in &args.servers {
            if matches!(server, Server::Axum | Server::Testd) {
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
        throughput_against_plain_axum: comparisons,
        startup,
    };
    print!("{}", report::text(&report));
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
    println!("\n{}", verdict(&report.runs));
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

/// The last line: whether any client saw a failure of a seamless server.
/// h2load's errored streams that its own log shows it never sent are named
/// apart: h2load counts as errored the request it queues after a server's
/// GOAWAY and may then not send (docs/benchmarks.md, Results), so that
/// count is h2load's, not the server's. Any other failure, an errored
/// stream h2load did send included, is a failure.
fn verdict(runs: &[measure::RunFigures]) -> String {
    const NEVER_SENT: &str = "h2load errored, never sent";
    let ours = runs.iter().filter(|r| {
        [Server::Axum, Server::Testd]
            .iter()
            .any(|s| s.name() == r.server)
    });
    let (mut failed, mut never_sent) = (0, 0);
    for run in ours {
        let n = run.failures.get(NEVER_SENT).copied().unwrap_or(0);
        never_sent += n;
        failed += run.failed - n;
    }
    match (runs.is_empty(), failed, never_sent) {
        (true, _, _) => "nothing measured".to_owned(),
        (false, 0, 0) => "nothing dropped".to_owned(),
        (false, 0, n) => format!(
            "nothing dropped that any client but h2load saw; h2load counted {n} HTTP/2 \
             stream(s) errored that its own log shows it never sent (the requests it \
             queues after a server's GOAWAY: see docs/benchmarks.md)"
        ),
        (false, _, _) => "FAILURES (see the table)".to_owned(),
    }
}

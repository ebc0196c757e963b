//! The results, three ways: a Markdown table on stdout, JSON (serde) and an
//! SVG plot (plotters) of throughput and failures over time.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::measure::{Percentiles, RunFigures};
use crate::run::{Comparison, Startup};
use crate::soak::Soak;

#[derive(Serialize)]
pub(crate) struct Settings {
    pub(crate) supervisor: &'static str,
    pub(crate) restart_command: &'static str,
    pub(crate) restarts: usize,
    pub(crate) cycle_s: u64,
    pub(crate) restart_after_ms: u64,
    pub(crate) window: String,
}

#[derive(Serialize)]
pub(crate) struct Skipped {
    pub(crate) server: &'static str,
    pub(crate) protocol: &'static str,
    pub(crate) reason: String,
}

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) settings: Settings,
    pub(crate) runs: Vec<RunFigures>,
    pub(crate) skipped: Vec<Skipped>,
    pub(crate) throughput_against_plain: Vec<Comparison>,
    pub(crate) startup: Vec<Startup>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn ms2(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// p99 in restart windows over p99 in steady state, and the figures as
/// `WINDOW / STEADY ms = RATIO` for a target line.
fn p99_windows_over_steady(run: &RunFigures) -> (Option<f64>, String) {
    let (steady, window) = (
        run.latency_ms.steady.p99,
        run.latency_ms.restart_windows.p99,
    );
    let ratio = steady.zip(window).map(|(s, x)| x / s);
    let figures = format!(
        "{} / {} ms = {}",
        ms2(window),
        ms2(steady),
        ratio.map_or("-".into(), |x| format!("{x:.2}"))
    );
    (ratio, figures)
}

fn rps(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}", v))
}

fn kinds(r: &RunFigures) -> String {
    let nonzero: Vec<String> = r
        .failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if nonzero.is_empty() {
        "-".into()
    } else {
        nonzero.join(", ")
    }
}

fn p99(p: &Percentiles) -> String {
    ms2(p.p99)
}

/// One line per TLS run: the sessions saved before a restart that resumed
/// after it.
pub(crate) fn resumption(runs: &[RunFigures]) -> String {
    let mut out = String::new();
    for run in runs {
        let Some(r) = run.resumption else { continue };
        writeln!(
            out,
            "{}, {}: TLS sessions saved before a restart and offered to the new generation: {} of {} resumed{}",
            run.server,
            run.protocol,
            r.resumed,
            r.offered,
            if r.no_new_generation > 0 {
                format!(
                    " ({} restarts with no new generation answering within 3 s, not counted)",
                    r.no_new_generation
                )
            } else {
                String::new()
            }
        )
        .unwrap();
    }
    out
}

/// One line per server: the start-up time with and without the split.
pub(crate) fn startup(startup: &[Startup]) -> String {
    let mut out = String::new();
    for st in startup {
        let adds = st.on_ms_median.zip(st.off_ms_median).map(|(a, b)| a - b);
        writeln!(
            out,
            "{}: spawn to first answer, median of {}: seamless off {} ms, on {} ms, the launcher split adds {} ms",
            st.server,
            st.samples,
            ms2(st.off_ms_median),
            ms2(st.on_ms_median),
            ms2(adds)
        )
        .unwrap();
    }
    out
}

pub(crate) fn text(r: &Report) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "{} restarts under {} (`{}`), one every {} s, {} ms into each cycle; all traffic on 127.0.0.1.",
        s.restarts, s.supervisor, s.restart_command, s.cycle_s, s.restart_after_ms
    )
    .unwrap();
    writeln!(w, "Restart window: {}.", s.window).unwrap();
    for run in &r.runs {
        writeln!(w, "Load, {} {}: {}.", run.server, run.protocol, run.load).unwrap();
    }
    for k in &r.skipped {
        writeln!(w, "Skipped {} {}: {}.", k.server, k.protocol, k.reason).unwrap();
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "| server | protocol | requests | failed | failures by kind | restarts with a failure | req/s steady / in restart windows | p99 ms steady / in restart windows | `{}` to new generation's first answer, median |",
        s.restart_command
    )
    .unwrap();
    writeln!(w, "|{}", " --- |".repeat(9)).unwrap();
    for run in &r.runs {
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} of {} | {} / {} | {} / {} | {} ms |",
            run.server,
            run.protocol,
            run.requests,
            run.failed,
            kinds(run),
            run.restarts_with_failure,
            run.restarts,
            rps(run.throughput_rps.steady),
            rps(run.throughput_rps.restart_windows),
            p99(&run.latency_ms.steady),
            p99(&run.latency_ms.restart_windows),
            ms(run.restart_ms_median.first_answer)
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "Throughput from: {}. p99 from: {}.",
        r.runs
            .iter()
            .map(|x| format!("{} {}: {}", x.server, x.protocol, x.throughput_source))
            .collect::<Vec<_>>()
            .join("; "),
        r.runs
            .iter()
            .map(|x| format!("{} {}: {}", x.server, x.protocol, x.latency_source))
            .collect::<Vec<_>>()
            .join("; ")
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Where a restart's time goes, median ms after `{}`:",
        s.restart_command
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| server | protocol | old launcher gone | supervisor's new child | server program exec'd | new daemon | new generation's first answer | old generation gone |").unwrap();
    writeln!(w, "|{}", " --- |".repeat(8)).unwrap();
    for run in &r.runs {
        let p = &run.restart_ms_median;
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            run.server,
            run.protocol,
            ms(p.launcher_exit),
            ms(p.new_child),
            ms(p.exec),
            ms(p.daemon),
            ms(p.first_answer),
            ms(p.old_exit)
        )
        .unwrap();
    }
    if !r.throughput_against_plain.is_empty() {
        writeln!(w).unwrap();
        writeln!(w, "Steady throughput, no restarts: each example under seamless against its handler without seamless (plain `axum::serve`, axum over tokio-rustls, tonic under plain hyper, plain actix-web), alternating rounds (medians; each ratio is the median of the rounds' ratios). CPU is the serving process's own (user + system, all threads) per answered request; the CPU ratio is plain's over the example's, so 1.000 means the same cost and above 0.97 means within 3%:").unwrap();
        writeln!(w).unwrap();
        writeln!(w, "| server | without seamless | protocol | load | rounds | req/s with | req/s without | ratio | CPU µs/req with | CPU µs/req without | CPU ratio | failed |").unwrap();
        writeln!(w, "|{}", " --- |".repeat(12)).unwrap();
        for c in &r.throughput_against_plain {
            writeln!(
                w,
                "| {} | {} | {} | {}, {} s | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.server,
                c.plain,
                c.protocol,
                c.tool,
                c.seconds_per_round,
                c.example_rps.len(),
                rps(c.example_median),
                rps(c.plain_median),
                c.ratio.map_or("-".into(), |x| format!("{x:.3}")),
                ms2(c.example_cpu_median),
                ms2(c.plain_cpu_median),
                c.cost_ratio.map_or("-".into(), |x| format!("{x:.3}")),
                c.failed
            )
            .unwrap();
        }
    }
    writeln!(w).unwrap();
    let mut seen = Vec::new();
    for run in &r.runs {
        if seen.contains(&run.server) {
            continue;
        }
        seen.push(run.server);
        let mem = |m: &Option<crate::measure::Memory>| {
            m.map_or("-".into(), |m| {
                format!("{} / {} KiB", m.vmrss_kib, m.rssanon_kib)
            })
        };
        writeln!(
            w,
            "{}: launcher VmRSS / RssAnon {}; daemon {}",
            run.server,
            mem(&run.launcher),
            mem(&run.daemon)
        )
        .unwrap();
    }
    w.push_str(&resumption(&r.runs));
    w.push_str(&startup(&r.startup));
    writeln!(w).unwrap();
    targets(w, r);
    out
}

/// The targets, met or not, in plain words: the axum example's, and the
/// steady throughput of each example against its plain twin.
fn targets(w: &mut String, r: &Report) {
    writeln!(w, "Targets:").unwrap();
    for run in r.runs.iter().filter(|x| x.server == "axum example") {
        let verdict = if run.failed > 0 {
            format!("NOT MET: {} failures", run.failed)
        } else if run.requests < 1_000_000 || run.restarts < 100 {
            format!(
                "0 failures, on a short run ({} requests, {} restarts; the target needs 1,000,000 over 100)",
                run.requests, run.restarts
            )
        } else {
            "met".into()
        };
        writeln!(
            w,
            "- axum example {}: 0 failures in >= 1,000,000 requests over 100 restarts: {verdict}",
            run.protocol
        )
        .unwrap();
        let (ratio, figures) = p99_windows_over_steady(run);
        writeln!(
            w,
            "- axum example {}: p99 in restart windows <= 1.2 x steady: {} ({figures})",
            run.protocol,
            match ratio {
                Some(x) if x <= 1.2 => "met",
                Some(_) => "NOT MET",
                None => "not measured",
            },
        )
        .unwrap();
        let first = run.restart_ms_median.first_answer;
        // The supervisor's part: until the run script has exec'd the
        // server, none of its code (nor seamless's) has run.
        let before_us = match run.restart_ms_median.exec {
            Some(exec) => format!(
                "; of which {} ms pass before the server program is exec'd",
                ms(Some(exec))
            ),
            None => String::new(),
        };
        writeln!(
            w,
            "- axum example {}: restart to first answer, median <= 6.9 ms (half the Go original's 13.8 ms, measured once on this machine): {} ({} ms{before_us})",
            run.protocol,
            match first {
                Some(x) if x <= 6.9 => "met",
                Some(_) => "NOT MET",
                None => "not measured",
            },
            ms(first)
        )
        .unwrap();
    }
    for c in &r.throughput_against_plain {
        writeln!(
            w,
            "- {} {}: steady throughput within 3% of {}: {} (ratio {})",
            c.server,
            c.protocol,
            c.plain,
            match c.ratio {
                Some(x) if x >= 0.97 => "met",
                Some(_) => "NOT MET",
                None => "not measured",
            },
            c.ratio.map_or("-".into(), |x| format!("{x:.3}"))
        )
        .unwrap();
    }
}

pub(crate) fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("serializable report") + "\n"
}

/// One panel per run: the load's answers/s per 100 ms (blue), restarts
/// (grey), failures per restart (red, larger for more).
pub(crate) fn plot(runs: &[RunFigures], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    if runs.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (1000, 260 * runs.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, r) in root.split_evenly((runs.len(), 1)).iter().zip(runs) {
        let s = &r.series;
        let start = s.restarts_s.first().map_or(0.0, |x| (x - 1.0).max(0.0));
        let end = s.throughput.last().map_or(1.0, |p| p.0).max(start + 1.0);
        let ymax = s.throughput.iter().map(|p| p.1).fold(1.0f32, f32::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} {}: answers/s per 100 ms (blue), restarts (grey), failures (red)",
                    r.server, r.protocol
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(start..end, 0f32..ymax)?;
        chart.configure_mesh().x_desc("s").y_desc("req/s").draw()?;
        for x in &s.restarts_s {
            chart.draw_series(LineSeries::new(
                [(*x, 0.0), (*x, ymax)],
                &RGBColor(180, 180, 180),
            ))?;
        }
        chart.draw_series(LineSeries::new(
            s.throughput.iter().copied().filter(|p| p.0 >= start),
            &BLUE,
        ))?;
        chart.draw_series(
            s.failures
                .iter()
                .map(|(x, n)| Circle::new((*x, ymax * 0.95), 2 + (*n).min(8) as i32, RED.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}

/// The soak's figures and its targets, in plain words.
pub(crate) fn soak_text(s: &Soak) -> String {
    use crate::soak::{
        growth, launcher_spread, long_share, within, within_generation, Process, Quantity,
        GENERATION_RSSANON_TOLERANCE, LAUNCHER_RSSANON_TOLERANCE_KIB,
    };
    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "Soak: {} under {} (`svc -t`) for {} s; {} restarts, each generation serving {:.1} s from its first answer{}; all traffic on 127.0.0.1.",
        s.server,
        s.supervisor,
        s.seconds,
        s.restarts(),
        s.restart_every.as_secs_f64(),
        if s.long_share > 0 {
            format!(", the first one {} requests", s.long_share)
        } else {
            String::new()
        }
    )
    .unwrap();
    writeln!(w, "Load: {}.", s.load).unwrap();
    if let Some(why) = &s.cut_short {
        writeln!(w, "CUT SHORT: {why}.").unwrap();
    }
    writeln!(
        w,
        "Requests answered: {}; failed: {} ({}); hyper's client sent {} again as unprocessed after a GOAWAY (not failures).",
        s.answered,
        s.failed(),
        if s.failed() == 0 {
            "-".to_owned()
        } else {
            s.failures
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        s.resent
    )
    .unwrap();
    let mut sorted = s.restart_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
    };
    writeln!(
        w,
        "`svc -t` to the new generation's first answer (a new connection every 0.5 ms): median {} ms, p99 {} ms, max {} ms.",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(pct(1.0))
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "Across generations (each generation is a new launcher and a new daemon; growth is the least-squares slope of the readings over the restarts, and over the run's requests):").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "| process | read | quantity | generations | first | last | min | max | growth per restart | growth per million requests |").unwrap();
    writeln!(w, "|{}", " --- |".repeat(10)).unwrap();
    let slope = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:+.3}"));
    for process in [Process::Daemon, Process::Launcher] {
        for at_end in [false, true] {
            for q in Quantity::ALL {
                if let Some(g) = growth(&s.readings, process, at_end, q) {
                    writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        process.name(),
                        if at_end {
                            "before its restart"
                        } else {
                            "serving"
                        },
                        q.name(),
                        g.generations,
                        g.first,
                        g.last,
                        g.min,
                        g.max,
                        slope(g.per_restart),
                        slope(g.per_million_requests)
                    )
                    .unwrap();
                }
            }
        }
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "Within a generation (the daemon, from serving to just before its restart):"
    )
    .unwrap();
    for q in Quantity::ALL {
        if let Some(g) = within_generation(&s.readings, q) {
            writeln!(
                w,
                "- {}: median {:+.0} over a generation's life ({} generations), {} per million requests served",
                q.name(),
                g.median_growth,
                g.generations,
                slope(g.per_million_requests)
            )
            .unwrap();
        }
    }
    writeln!(w).unwrap();
    writeln!(w, "Targets:").unwrap();
    match long_share(&s.readings) {
        Some(((early, share), (n_early, n_share))) => {
            let (ok, change) = within(early, share, GENERATION_RSSANON_TOLERANCE);
            writeln!(
                w,
                "- a generation's RssAnon after {} requests within {:.0} % of after {}: {} ({} KiB after {} requests, {} KiB after {}: {:+.1} %)",
                s.long_share,
                GENERATION_RSSANON_TOLERANCE * 100.0,
                crate::soak::EARLY_REQUESTS,
                if ok { "MET" } else { "NOT MET" },
                early,
                n_early,
                share,
                n_share,
                change
            )
            .unwrap();
        }
        None => writeln!(
            w,
            "- a generation's RssAnon after 1,000,000 requests within 10 % of after 10,000: NOT MEASURED (no generation served its long share; see --first-generation-requests)"
        )
        .unwrap(),
    }
    for (quantity, tolerance) in [
        (Quantity::RssAnon, LAUNCHER_RSSANON_TOLERANCE_KIB),
        (Quantity::Fds, 0),
    ] {
        let spreads: Vec<Option<u64>> = [false, true]
            .iter()
            .map(|at_end| launcher_spread(&s.readings, *at_end, quantity))
            .collect();
        let ok = spreads.iter().all(|x| x.is_some_and(|x| x <= tolerance));
        let growths: Vec<String> = [false, true]
            .iter()
            .filter_map(|at_end| growth(&s.readings, Process::Launcher, *at_end, quantity))
            .map(|g| {
                format!(
                    "{}..{} ({} per restart)",
                    g.min,
                    g.max,
                    slope(g.per_restart)
                )
            })
            .collect();
        writeln!(
            w,
            "- the launcher's {} flat across {} restarts (every launcher within {} of the first's, serving and before its restart): {} (largest distance {}; {})",
            quantity.name(),
            s.restarts(),
            tolerance,
            if spreads.iter().any(Option::is_none) {
                "NOT MEASURED"
            } else if ok {
                "MET"
            } else {
                "NOT MET"
            },
            spreads
                .iter()
                .map(|x| x.map_or("-".into(), |x| x.to_string()))
                .collect::<Vec<_>>()
                .join(" / "),
            growths.join(", then ")
        )
        .unwrap();
    }
    writeln!(
        w,
        "- 0 failed requests: {} ({} failed of {})",
        if s.failed() == 0 && s.answered > 0 {
            "MET"
        } else {
            "NOT MET"
        },
        s.failed(),
        s.answered + s.failed()
    )
    .unwrap();
    out
}

/// Every soak reading, one a line.
pub(crate) fn soak_csv(s: &Soak) -> String {
    let mut out = String::from(
        "t_s,generation,point,requests,daemon_pid,daemon_vmrss_kib,daemon_rssanon_kib,daemon_fds,daemon_threads,launcher_pid,launcher_vmrss_kib,launcher_rssanon_kib,launcher_fds,launcher_threads\n",
    );
    let usage = |u: Option<crate::supervision::Usage>| {
        u.map_or(",,,".into(), |u| {
            format!("{},{},{},{}", u.vmrss_kib, u.rssanon_kib, u.fds, u.threads)
        })
    };
    for r in &s.readings {
        writeln!(
            out,
            "{:.3},{},{},{},{},{},{},{}",
            r.t_s,
            r.generation,
            r.point.name(),
            r.requests,
            r.daemon_pid,
            usage(r.daemon),
            r.launcher_pid,
            usage(r.launcher)
        )
        .unwrap();
    }
    out
}

/// Three panels over the run's time: the daemon's RssAnon and VmRSS, the
/// launcher's, and both processes' fds and threads.
pub(crate) fn soak_plot(s: &Soak, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use crate::soak::{Process, Quantity};
    use plotters::prelude::*;
    type Line = (Process, Quantity, RGBColor);
    let panels: [(&str, &str, Vec<Line>); 3] = [
        (
            "daemon: RssAnon (blue), VmRSS (green), KiB",
            "KiB",
            vec![
                (Process::Daemon, Quantity::RssAnon, BLUE),
                (Process::Daemon, Quantity::VmRss, GREEN),
            ],
        ),
        (
            "launcher: RssAnon (blue), VmRSS (green), KiB",
            "KiB",
            vec![
                (Process::Launcher, Quantity::RssAnon, BLUE),
                (Process::Launcher, Quantity::VmRss, GREEN),
            ],
        ),
        (
            "open fds: daemon (blue), launcher (red); threads: daemon (green), launcher (magenta)",
            "count",
            vec![
                (Process::Daemon, Quantity::Fds, BLUE),
                (Process::Launcher, Quantity::Fds, RED),
                (Process::Daemon, Quantity::Threads, GREEN),
                (Process::Launcher, Quantity::Threads, MAGENTA),
            ],
        ),
    ];
    let value = |r: &crate::soak::Reading, p: Process, q: Quantity| {
        let u = match p {
            Process::Daemon => r.daemon,
            Process::Launcher => r.launcher,
        };
        u.map(|u| (r.t_s as f32, q.of(&u) as f32))
    };
    let end = s.readings.last().map_or(1.0, |r| r.t_s as f32).max(1.0);
    let root = SVGBackend::new(path, (1200, 300 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, (caption, unit, lines)) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        let ymax = lines
            .iter()
            .flat_map(|(p, q, _)| s.readings.iter().filter_map(|r| value(r, *p, *q)))
            .map(|v| v.1)
            .fold(1.0f32, f32::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(*caption, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(0f32..end, 0f32..ymax)?;
        chart.configure_mesh().x_desc("s").y_desc(*unit).draw()?;
        for (p, q, color) in lines {
            chart.draw_series(
                s.readings
                    .iter()
                    .filter_map(|r| value(r, *p, *q))
                    .map(|v| Circle::new(v, 1, color.filled())),
            )?;
        }
    }
    root.present()?;
    Ok(())
}

/// The scale run's figures and targets: held connections, p99 in restart
/// windows against steady, the listen queues.
pub(crate) fn scale_text(runs: &[RunFigures]) -> String {
    let mut out = String::new();
    let w = &mut out;
    for run in runs {
        let Some(held) = &run.held else { continue };
        writeln!(
            w,
            "Scale, {} {}: {} keep-alive connections up after {} s, held through {} restarts.",
            run.server,
            run.protocol,
            held.connections,
            ms(held.up_after_s),
            run.restarts
        )
        .unwrap();
        let counters = |c: &Option<crate::supervision::ListenCounters>| {
            c.map_or("-".into(), |c| {
                format!("ListenOverflows {}, ListenDrops {}", c.overflows, c.drops)
            })
        };
        writeln!(
            w,
            "/proc/net/netstat TcpExt (the whole machine's), once the connections were up: {}; after the last restart: {}.",
            counters(&held.listen_once_up),
            counters(&held.listen_after)
        )
        .unwrap();
        writeln!(w).unwrap();
        writeln!(w, "Targets (scale):").unwrap();
        writeln!(
            w,
            "- 0 failed requests: {} ({} failed of {}{})",
            if run.failed == 0 { "MET" } else { "NOT MET" },
            run.failed,
            run.requests,
            if run.failed == 0 {
                String::new()
            } else {
                format!(": {}", kinds(run))
            }
        )
        .unwrap();
        let (ratio, figures) = p99_windows_over_steady(run);
        writeln!(
            w,
            "- p99 in restart windows <= 2 x steady ({}): {} ({figures})",
            run.latency_source,
            match ratio {
                Some(x) if x <= 2.0 => "MET",
                Some(_) => "NOT MET",
                None => "NOT MEASURED",
            },
        )
        .unwrap();
        let change = held
            .listen_once_up
            .zip(held.listen_after)
            .map(|(a, b)| (b.overflows - a.overflows, b.drops - a.drops));
        writeln!(
            w,
            "- ListenOverflows and ListenDrops unchanged once the connections are up: {} ({})",
            match change {
                Some((0, 0)) => "MET",
                Some(_) => "NOT MET",
                None => "NOT MEASURED",
            },
            change.map_or("-".into(), |(o, d)| format!("+{o} overflows, +{d} drops"))
        )
        .unwrap();
    }
    out
}

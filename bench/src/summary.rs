//! The one-screen summary that the README's first command ends with: each
//! run with and without seamless side by side, then the verdict, in a few
//! lines a user reads at a glance: requests, failures and restart time
//! with seamless and without it. The full Markdown report and the
//! project's targets are `--targets`' (`report`).

use std::fmt::Write as _;

use crate::load::h2load::NEVER_SENT;
use crate::measure::RunFigures;
use crate::report::Report;

/// The width the summary's wrapped lines keep within.
const WIDTH: usize = 96;

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` in lines of at most [`WIDTH`] characters, broken at spaces;
/// lines after the first begin with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_owned();
        } else if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// Milliseconds, to the unit above 10 ms and to a tenth below.
fn millis(ms: f64) -> String {
    format!("{} ms", number(ms))
}

/// [`millis`] without the unit.
fn number(ms: f64) -> String {
    if ms >= 10.0 {
        thousands(ms.round() as u64)
    } else {
        format!("{ms:.1}")
    }
}

/// The runs' medians of the restart command to the new process's first
/// answer: `17 ms`, or `17 ms to 19 ms` across loads.
fn restart_range(runs: &[&RunFigures]) -> String {
    let mut medians: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.restart_ms_median.first_answer)
        .collect();
    medians.sort_by(f64::total_cmp);
    match (medians.first(), medians.last()) {
        (Some(a), Some(b)) if number(*a) == number(*b) => millis(*a),
        (Some(a), Some(b)) => format!("{} to {}", number(*a), millis(*b)),
        _ => "not measured".into(),
    }
}

/// The failures that are the server's: all but h2load's never-sent.
fn failed(run: &RunFigures) -> u64 {
    run.failed - run.failures.get(NEVER_SENT).copied().unwrap_or(0)
}

/// The summary: what ran, one row per run, failures by kind, the verdict.
pub(crate) fn text(r: &Report, load: &str) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let w = &mut out;
    let header = format!(
        "Each server restarted {} times per load under {} (`{}`), one restart every {} s; all on 127.0.0.1.",
        s.restarts, s.supervisor, s.restart_command, s.cycle_s
    );
    writeln!(w, "{}", wrap(&header, "")).unwrap();
    writeln!(w, "{}", wrap(&format!("Load: {load}."), "  ")).unwrap();
    for k in &r.skipped {
        let line = format!("Skipped {} {}: {}.", k.server, k.protocol, k.reason);
        writeln!(w, "{}", wrap(&line, "  ")).unwrap();
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "{:<18} {:<9} {:<9} {:>10} {:>8} {:>16} {:>14}",
        "server", "seamless", "load", "requests", "failed", "restarts with", "restart to"
    )
    .unwrap();
    writeln!(
        w,
        "{:<18} {:<9} {:<9} {:>10} {:>8} {:>16} {:>14}",
        "", "", "", "", "", "a failure", "first answer"
    )
    .unwrap();
    for run in &r.runs {
        let protocol = run.protocol.split(',').next().unwrap_or(run.protocol);
        writeln!(
            w,
            "{:<18} {:<9} {:<9} {:>10} {:>8} {:>16} {:>14}",
            run.server,
            if run.seamless { "with" } else { "without" },
            protocol,
            thousands(run.requests),
            thousands(failed(run)),
            format!("{} of {}", run.restarts_with_counted_failure, run.restarts),
            run.restart_ms_median
                .first_answer
                .map_or("-".into(), millis),
        )
        .unwrap();
    }
    writeln!(
        w,
        "Restart to first answer: from `{}` to the new process's first answer, median.",
        s.restart_command
    )
    .unwrap();
    let failing: Vec<&RunFigures> = r.runs.iter().filter(|run| failed(run) > 0).collect();
    if !failing.is_empty() {
        writeln!(
            w,
            "\nFailures by kind (a loop tries again 1 ms after a failure):"
        )
        .unwrap();
    }
    for run in failing {
        let by_kind = run
            .failures
            .iter()
            .filter(|(k, n)| **n > 0 && **k != NEVER_SENT)
            .map(|(k, n)| format!("{k} {}", thousands(*n)));
        let mut line = format!("  {}, {}:", run.server, run.protocol);
        for (i, kind) in by_kind.enumerate() {
            if i > 0 {
                line.push(',');
            }
            if line.len() + kind.len() + 1 > WIDTH {
                writeln!(w, "{line}").unwrap();
                line = "   ".into();
            }
            line.push(' ');
            line.push_str(&kind);
        }
        writeln!(w, "{line}").unwrap();
    }
    for run in r.runs.iter().filter(|run| run.protocol == "gRPC") {
        let line = format!(
            "{}, {}: {} calls the server provably never processed were sent again (not \
             failures){}.",
            run.server,
            run.protocol,
            thousands(run.resent),
            if run.streams > 0 {
                format!(
                    "; {} server streams of 2 s ran to their end, each on one generation",
                    thousands(run.streams)
                )
            } else {
                String::new()
            }
        );
        writeln!(w, "{}", wrap(&line, "  ")).unwrap();
    }
    let resumption = crate::report::resumption(&r.runs);
    if !resumption.is_empty() {
        writeln!(w).unwrap();
        for line in resumption.lines() {
            writeln!(w, "{}", wrap(line, "  ")).unwrap();
        }
    }
    if !r.throughput_against_plain.is_empty() {
        let line =
            "Steady throughput, no restarts, req/s (median of alternating rounds; ratio: the \
                    median of the rounds' ratios):";
        writeln!(w, "\n{}", wrap(line, "")).unwrap();
    }
    for c in &r.throughput_against_plain {
        let rps = |v: Option<f64>| v.map_or("-".into(), |v| thousands(v.round() as u64));
        let line = format!(
            "- {}, {} ({}, {} rounds of {} s): {} with seamless, {} {}, ratio {}{}",
            c.server,
            c.protocol,
            c.tool,
            c.example_rps.len(),
            c.seconds_per_round,
            rps(c.example_median),
            rps(c.plain_median),
            c.plain,
            c.ratio.map_or("-".into(), |x| format!("{x:.3}")),
            if c.failed > 0 {
                format!("; {} failed", thousands(c.failed))
            } else {
                String::new()
            }
        );
        writeln!(w, "{}", wrap(&line, "    ")).unwrap();
    }
    writeln!(w, "\n{}", verdict(&r.runs)).unwrap();
    out
}

/// The last lines: requests, failures and restart time with seamless and
/// without it, then whether a seamless server dropped anything.
pub(crate) fn verdict(runs: &[RunFigures]) -> String {
    if runs.is_empty() {
        return "Nothing measured.".into();
    }
    let mut out = String::new();
    let w = &mut out;
    let with: Vec<&RunFigures> = runs.iter().filter(|r| r.seamless).collect();
    let without: Vec<&RunFigures> = runs.iter().filter(|r| !r.seamless).collect();
    let total = |rs: &[&RunFigures]| -> (u64, u64, usize, usize) {
        rs.iter().fold((0, 0, 0, 0), |t, r| {
            (
                t.0 + r.requests,
                t.1 + failed(r),
                t.2 + r.restarts_with_counted_failure,
                t.3 + r.restarts,
            )
        })
    };
    let per_side = |rs: &[&RunFigures]| rs.iter().map(|r| r.restarts).sum::<usize>();
    writeln!(
        w,
        "Verdict, the same handler under the same load, {} restarts each:",
        per_side(&with).max(per_side(&without))
    )
    .unwrap();
    for (label, side) in [("with seamless", &with), ("without seamless", &without)] {
        if side.is_empty() {
            continue;
        }
        let (requests, failed, _, _) = total(side);
        writeln!(
            w,
            "  {label:<17} {:>10} requests {:>8} failed   restart to first answer {}",
            thousands(requests),
            thousands(failed),
            restart_range(side)
        )
        .unwrap();
    }
    let (requests, failed_with, _, _) = total(&with);
    let never_sent: u64 = with
        .iter()
        .map(|r| r.failures.get(NEVER_SENT).copied().unwrap_or(0))
        .sum();
    let (plain_requests, failed_without, failed_restarts, plain_restarts) = total(&without);
    let mut last = String::new();
    let l = &mut last;
    if with.is_empty() {
        write!(l, "No server with seamless ran.").unwrap();
    } else if failed_with > 0 {
        write!(
            l,
            "FAILURES with seamless: {} of {} requests (by kind above).",
            thousands(failed_with),
            thousands(requests)
        )
        .unwrap();
    } else {
        write!(l, "With seamless no request failed").unwrap();
        if !without.is_empty() {
            write!(
                l,
                "; without it {} of {} failed ({:.2} %), in {} of {} restarts",
                thousands(failed_without),
                thousands(plain_requests),
                failed_without as f64 * 100.0 / plain_requests.max(1) as f64,
                failed_restarts,
                plain_restarts
            )
            .unwrap();
        }
        write!(l, ".").unwrap();
    }
    if never_sent > 0 {
        write!(
            l,
            " Not counted: {} HTTP/2 stream(s) h2load counted errored that its own log shows \
             it never sent (the requests it queues after a server's GOAWAY: see \
             docs/benchmarks.md).",
            thousands(never_sent)
        )
        .unwrap();
    }
    write!(w, "{}", wrap(&last, "")).unwrap();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }

    #[test]
    fn millis() {
        assert_eq!(super::millis(4.26), "4.3 ms");
        assert_eq!(super::millis(17.4), "17 ms");
        assert_eq!(super::millis(1482.2), "1,482 ms");
        assert_eq!(super::number(902.4), "902");
    }

    #[test]
    fn wrap() {
        let long = "word ".repeat(40);
        let wrapped = super::wrap(long.trim(), "  ");
        assert!(
            wrapped.lines().all(|l| l.len() <= super::WIDTH),
            "{wrapped}"
        );
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("  word")));
        assert_eq!(super::wrap("short line", "  "), "short line");
    }
}

//! From what one run recorded to its figures: restart windows, throughput
//! in steady state and inside the windows, latency percentiles, failures by
//! kind and per restart, and where the restart time goes.
//!
//! A restart window runs from the restart command (`svc -t`) to 1 s after
//! the new generation's first answer (the first answer, to any built-in
//! client, from a pid that had not answered before the command). Time
//! outside every window, while load runs, is steady state.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::load::builtin::{Client, Outcome, Sample};
use crate::load::h2load::NEVER_SENT;
use crate::load::Slice;
use crate::supervision::ListenCounters;

/// How long after the new generation's first answer a window still runs.
pub(crate) const WINDOW_TAIL_MS: f64 = 1000.0;
/// Cut from both ends of each run of a load tool: connecting, stopping.
const TOOL_EDGE_MS: f64 = 100.0;
const SLOT_MS: f64 = 10.0;

/// One restart: when it was commanded, and what `/proc` showed after it
/// (milliseconds after the command).
#[derive(Clone, Default)]
pub(crate) struct Restart {
    pub(crate) at_ms: f64,
    /// The old launcher (the supervisor's child) is gone.
    pub(crate) launcher_exit: Option<f64>,
    /// The supervisor has a new child.
    pub(crate) new_child: Option<f64>,
    /// The new child runs the server's program (after the run script).
    pub(crate) exec: Option<f64>,
    /// The new launcher's daemon runs the server's program.
    pub(crate) daemon: Option<f64>,
    /// Every old generation has exited.
    pub(crate) old_exit: Option<f64>,
}

/// Everything one run recorded.
pub(crate) struct Recorded {
    pub(crate) samples: Vec<Sample>,
    pub(crate) slices: Vec<Slice>,
    pub(crate) restarts: Vec<Restart>,
    /// The built-in keep-alive clients are the load (no wrk).
    pub(crate) builtin_is_load: bool,
    pub(crate) end_ms: f64,
}

#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct SteadyWindows<T> {
    pub(crate) steady: T,
    pub(crate) restart_windows: T,
}

#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// Medians over the restarts, in ms after the restart command.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct Phases {
    pub(crate) launcher_exit: Option<f64>,
    pub(crate) new_child: Option<f64>,
    pub(crate) exec: Option<f64>,
    pub(crate) daemon: Option<f64>,
    pub(crate) first_answer: Option<f64>,
    pub(crate) old_exit: Option<f64>,
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) vmrss_kib: u64,
    pub(crate) rssanon_kib: u64,
}

/// Time series for the plot.
#[derive(Default)]
pub(crate) struct Series {
    /// (s, answers/s of the load per 100 ms).
    pub(crate) throughput: Vec<(f32, f32)>,
    /// (s, failures) per restart, placed at the restart.
    pub(crate) failures: Vec<(f32, u64)>,
    pub(crate) restarts_s: Vec<f32>,
}

#[derive(Serialize)]
pub(crate) struct RunFigures {
    pub(crate) server: &'static str,
    /// Whether seamless restarts the server (a launcher and a handover).
    pub(crate) seamless: bool,
    pub(crate) protocol: &'static str,
    pub(crate) supervisor: &'static str,
    pub(crate) load: String,
    pub(crate) restarts: usize,
    /// Every request any client made, failed ones included.
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) failures: BTreeMap<&'static str, u64>,
    pub(crate) restarts_with_failure: usize,
    /// The same, leaving out h2load's streams never sent
    /// ([`NEVER_SENT`]), as the summary counts failures.
    pub(crate) restarts_with_counted_failure: usize,
    pub(crate) throughput_rps: SteadyWindows<Option<f64>>,
    pub(crate) throughput_source: &'static str,
    pub(crate) latency_ms: SteadyWindows<Percentiles>,
    pub(crate) latency_source: &'static str,
    pub(crate) restart_ms_median: Phases,
    pub(crate) launcher: Option<Memory>,
    pub(crate) daemon: Option<Memory>,
    /// Requests the load tool still had in flight when its duration ended
    /// (cut by the tool, not counted as failures).
    pub(crate) unfinished_at_tool_end: u64,
    /// When the load's connections were held through the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) held: Option<Held>,
    /// Requests the load sent again because the server provably had not
    /// processed them (hyper's HTTP/2 client, the gRPC load): not failures.
    pub(crate) resent: u64,
    /// gRPC server streams that ran to their end.
    pub(crate) streams: u64,
    /// For a TLS server: sessions saved before a restart, resumed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resumption: Option<Resumption>,
    #[serde(skip)]
    pub(crate) series: Series,
}

/// A run whose load held its connections throughout (scale mode).
#[derive(Serialize, Clone, Copy, Debug)]
pub(crate) struct Held {
    pub(crate) connections: usize,
    /// From the load's start until the daemon held that many fds, s.
    pub(crate) up_after_s: Option<f64>,
    /// The machine's listen-queue counters once the connections were up,
    /// and after the last restart.
    pub(crate) listen_once_up: Option<ListenCounters>,
    pub(crate) listen_after: Option<ListenCounters>,
}

/// TLS sessions across restarts: a client that saved its session on the
/// generation about to be replaced offers it to the next one.
#[derive(Serialize, Clone, Copy, Default, Debug)]
pub(crate) struct Resumption {
    /// Sessions saved before a restart and offered to a new generation.
    pub(crate) offered: usize,
    /// Of those, the handshakes that resumed.
    pub(crate) resumed: usize,
    /// Restarts after which no new generation answered the offer within
    /// 3 s (not counted as offered).
    pub(crate) no_new_generation: usize,
}

impl Resumption {
    /// Offers the session `client` saved on `old_pid` until a generation
    /// other than `old_pid` answers (3 s at most); counts how it went.
    pub(crate) fn offer(
        &mut self,
        client: &std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
        port: u16,
        old_pid: u32,
    ) {
        let began = std::time::Instant::now();
        while began.elapsed() < std::time::Duration::from_secs(3) {
            // An answer from the old generation (still accepting: no
            // handover) spent one ticket there; the next try offers the
            // other one the server gave.
            if let Ok((pid, resumed)) = crate::load::builtin::tls_get(client, port) {
                if pid != old_pid {
                    self.offered += 1;
                    self.resumed += usize::from(resumed);
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.no_new_generation += 1;
    }
}

/// The fields of `RunFigures` that describe the run rather than measure it.
pub(crate) struct Labels {
    pub(crate) server: &'static str,
    /// Whether seamless restarts the server (a launcher and a handover).
    pub(crate) seamless: bool,
    pub(crate) protocol: &'static str,
    pub(crate) supervisor: &'static str,
    pub(crate) load: String,
    pub(crate) launcher: Option<(u64, u64)>,
    pub(crate) daemon: Option<(u64, u64)>,
    pub(crate) held: Option<Held>,
    pub(crate) resumption: Option<Resumption>,
}

pub(crate) fn figures(labels: Labels, mut rec: Recorded) -> RunFigures {
    rec.samples
        .sort_by(|a, b| a.done_ms().total_cmp(&b.done_ms()));
    let first_answers = first_answers(&rec.samples, &rec.restarts);
    let windows: Vec<(f64, f64)> = rec
        .restarts
        .iter()
        .zip(&first_answers)
        .enumerate()
        .map(|(i, (r, first))| {
            let end = match first {
                Some(f) => r.at_ms + f + WINDOW_TAIL_MS,
                // No new generation seen: the whole rest of the cycle.
                None => rec.restarts.get(i + 1).map_or(rec.end_ms, |n| n.at_ms),
            };
            (r.at_ms, end)
        })
        .collect();
    // Windows are in time order; a late one may overlap the next.
    let in_window = |t: f64| {
        let after = windows.partition_point(|(a, _)| *a <= t);
        windows[..after].iter().rev().take(2).any(|(_, b)| t < *b)
    };

    // Failures, in total and per restart (a failure belongs to the last
    // restart before it; those before the first, to the first).
    let mut failures: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut per_restart = vec![0u64; rec.restarts.len().max(1)];
    let mut per_restart_counted = per_restart.clone();
    let restart_of = |t: f64| rec.restarts.iter().rposition(|r| r.at_ms <= t).unwrap_or(0);
    for s in &rec.samples {
        if let Some(kind) = s.failure() {
            *failures.entry(kind).or_default() += 1;
            per_restart[restart_of(s.done_ms())] += 1;
            per_restart_counted[restart_of(s.done_ms())] += 1;
        }
    }
    // A tool's run i holds restart i.
    for (i, slice) in rec.slices.iter().enumerate() {
        let last = per_restart.len() - 1;
        for (kind, n) in &slice.failures {
            if *n > 0 {
                *failures.entry(kind).or_default() += n;
                if *kind != NEVER_SENT {
                    per_restart_counted[i.min(last)] += n;
                }
            }
        }
        per_restart[i.min(last)] += slice.failed();
    }
    let failed: u64 = failures.values().sum();
    let requests = rec.samples.len() as u64
        + rec
            .slices
            .iter()
            .map(|s| s.answered + s.failed())
            .sum::<u64>();

    // Throughput of the load on a 10 ms grid, over the time it ran.
    let mut grid: HashMap<i64, u32> = HashMap::new();
    let mut active: Vec<(f64, f64)> = Vec::new();
    let throughput_source;
    if rec.builtin_is_load {
        throughput_source = "built-in keep-alive clients";
        for s in rec
            .samples
            .iter()
            .filter(|s| s.client == Client::KeepAlive && s.outcome == Outcome::Ok)
        {
            *grid
                .entry((s.done_ms() / SLOT_MS).floor() as i64)
                .or_default() += 1;
        }
        if let (Some(a), Some(b)) = (rec.samples.first(), rec.samples.last()) {
            active.push((a.done_ms() + TOOL_EDGE_MS, b.done_ms() - TOOL_EDGE_MS));
        }
    } else {
        throughput_source = rec.slices.first().map_or("-", |s| s.source);
        for slice in &rec.slices {
            for (start, n) in &slice.per_10ms {
                *grid
                    .entry(((start + SLOT_MS / 2.0) / SLOT_MS).floor() as i64)
                    .or_default() += n;
            }
            active.push((
                slice.started_ms + TOOL_EDGE_MS,
                slice.started_ms + slice.seconds as f64 * 1000.0 - TOOL_EDGE_MS,
            ));
        }
    }
    let (mut steady, mut window) = ((0u64, 0u64), (0u64, 0u64));
    for (a, b) in &active {
        let mut slot = (a / SLOT_MS).ceil() as i64;
        while (slot as f64 + 1.0) * SLOT_MS <= *b {
            let n = grid.get(&slot).copied().unwrap_or(0) as u64;
            let mid = (slot as f64 + 0.5) * SLOT_MS;
            let acc = if in_window(mid) {
                &mut window
            } else {
                &mut steady
            };
            acc.0 += n;
            acc.1 += 1;
            slot += 1;
        }
    }
    let rate =
        |(n, slots): (u64, u64)| (slots > 0).then(|| n as f64 / (slots as f64 * SLOT_MS / 1000.0));

    // Latency: h2load's own log when there is one, else the built-in
    // keep-alive clients.
    let (mut lat_steady, mut lat_window) = (Vec::new(), Vec::new());
    let latency_source;
    if rec.slices.iter().any(|s| !s.latencies.is_empty()) {
        latency_source = rec.slices.first().map_or("-", |s| s.latency_source);
        for (at, us) in rec.slices.iter().flat_map(|s| &s.latencies) {
            if in_window(*at as f64) {
                lat_window.push(*us);
            } else {
                lat_steady.push(*us);
            }
        }
    } else {
        latency_source = "built-in keep-alive clients";
        for s in rec
            .samples
            .iter()
            .filter(|s| s.client == Client::KeepAlive && s.outcome == Outcome::Ok)
        {
            if in_window(s.at_ms as f64) {
                lat_window.push(s.latency_us);
            } else {
                lat_steady.push(s.latency_us);
            }
        }
    }

    // Series for the plot: throughput per 100 ms, failures per restart.
    let mut per_100ms: BTreeMap<i64, u64> = BTreeMap::new();
    for (slot, n) in &grid {
        *per_100ms.entry(slot.div_euclid(10)).or_default() += *n as u64;
    }
    let series = Series {
        throughput: per_100ms
            .iter()
            .map(|(b, n)| (*b as f32 / 10.0, *n as f32 * 10.0))
            .collect(),
        failures: rec
            .restarts
            .iter()
            .zip(&per_restart)
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| ((r.at_ms / 1000.0) as f32, *n))
            .collect(),
        restarts_s: rec
            .restarts
            .iter()
            .map(|r| (r.at_ms / 1000.0) as f32)
            .collect(),
    };

    let phase =
        |f: fn(&Restart) -> Option<f64>| median(rec.restarts.iter().filter_map(f).collect());
    let memory = |m: Option<(u64, u64)>| {
        m.map(|(vmrss_kib, rssanon_kib)| Memory {
            vmrss_kib,
            rssanon_kib,
        })
    };
    RunFigures {
        server: labels.server,
        seamless: labels.seamless,
        protocol: labels.protocol,
        supervisor: labels.supervisor,
        load: labels.load,
        restarts: rec.restarts.len(),
        requests,
        failed,
        failures,
        restarts_with_failure: if rec.restarts.is_empty() {
            0
        } else {
            per_restart.iter().filter(|n| **n > 0).count()
        },
        restarts_with_counted_failure: if rec.restarts.is_empty() {
            0
        } else {
            per_restart_counted.iter().filter(|n| **n > 0).count()
        },
        throughput_rps: SteadyWindows {
            steady: rate(steady),
            restart_windows: rate(window),
        },
        throughput_source,
        latency_ms: SteadyWindows {
            steady: percentiles(lat_steady),
            restart_windows: percentiles(lat_window),
        },
        latency_source,
        restart_ms_median: Phases {
            launcher_exit: phase(|r| r.launcher_exit),
            new_child: phase(|r| r.new_child),
            exec: phase(|r| r.exec),
            daemon: phase(|r| r.daemon),
            first_answer: median(first_answers.iter().flatten().copied().collect()),
            old_exit: phase(|r| r.old_exit),
        },
        launcher: memory(labels.launcher),
        daemon: memory(labels.daemon),
        unfinished_at_tool_end: rec.slices.iter().map(|s| s.unfinished).sum(),
        held: labels.held,
        resent: rec.slices.iter().map(|s| s.resent).sum(),
        streams: rec.slices.iter().map(|s| s.streams).sum(),
        resumption: labels.resumption,
        series,
    }
}

/// For each restart, ms from the command to the first answer from a pid
/// that had not answered before it. `samples` are sorted by completion.
fn first_answers(samples: &[Sample], restarts: &[Restart]) -> Vec<Option<f64>> {
    let answered = |s: &&Sample| s.outcome == Outcome::Ok && s.pid != 0;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut i = 0;
    restarts
        .iter()
        .enumerate()
        .map(|(k, r)| {
            while i < samples.len() && samples[i].done_ms() < r.at_ms {
                if answered(&&samples[i]) {
                    seen.insert(samples[i].pid);
                }
                i += 1;
            }
            let until = restarts.get(k + 1).map_or(f64::INFINITY, |n| n.at_ms);
            samples[i..]
                .iter()
                .take_while(|s| s.done_ms() < until)
                .filter(answered)
                .find(|s| !seen.contains(&s.pid))
                .map(|s| s.done_ms() - r.at_ms)
        })
        .collect()
}

/// The least-squares slope of `y` over `x`: growth per unit of `x`. None
/// with fewer than two distinct `x`.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn percentiles(mut us: Vec<u32>) -> Percentiles {
    us.sort_unstable();
    let at = |p: f64| {
        (!us.is_empty()).then(|| us[((us.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0)
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(at_ms: f32, pid: u32) -> Sample {
        Sample {
            at_ms,
            latency_us: 1000,
            pid,
            outcome: Outcome::Ok,
            client: Client::NewConnection,
        }
    }

    #[test]
    fn first_answer_is_from_a_pid_not_seen_before_the_restart() {
        let samples = [
            ok(0.0, 7),
            ok(10.0, 7),
            ok(12.0, 7),
            ok(15.0, 8),
            ok(30.0, 9),
        ];
        let restarts = [
            Restart {
                at_ms: 11.0,
                ..Default::default()
            },
            Restart {
                at_ms: 20.0,
                ..Default::default()
            },
        ];
        assert_eq!(first_answers(&samples, &restarts), [Some(5.0), Some(11.0)]);
    }

    fn slice(failures: Vec<(&'static str, u64)>) -> Slice {
        Slice {
            source: "h2load",
            latency_source: "h2load",
            started_ms: 0.0,
            seconds: 2,
            answered: 100,
            failures,
            per_10ms: Vec::new(),
            latencies: Vec::new(),
            unfinished: 0,
            resent: 0,
            streams: 0,
        }
    }

    #[test]
    fn a_restart_with_only_never_sent_streams_has_no_counted_failure() {
        let restart = |at_ms| Restart {
            at_ms,
            ..Restart::default()
        };
        let rec = Recorded {
            samples: Vec::new(),
            slices: vec![
                slice(vec![(NEVER_SENT, 3)]),
                slice(vec![(NEVER_SENT, 1), ("h2load errored", 2)]),
                slice(Vec::new()),
            ],
            restarts: vec![restart(500.0), restart(2500.0), restart(4500.0)],
            builtin_is_load: false,
            end_ms: 6000.0,
        };
        let labels = Labels {
            server: "axum example",
            seamless: true,
            protocol: "HTTP/2",
            supervisor: "supervise",
            load: String::new(),
            launcher: None,
            daemon: None,
            held: None,
            resumption: None,
        };
        let run = figures(labels, rec);
        assert_eq!(run.failed, 6);
        assert_eq!(run.restarts_with_failure, 2);
        assert_eq!(run.restarts_with_counted_failure, 1);
    }

    #[test]
    fn slope_is_growth_per_unit() {
        assert_eq!(slope(&[(0.0, 10.0), (1.0, 12.0), (2.0, 14.0)]), Some(2.0));
        assert_eq!(slope(&[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]), Some(0.0));
        // Noise around a flat line: no growth.
        assert_eq!(slope(&[(0.0, 4.0), (1.0, 8.0), (2.0, 4.0)]), Some(0.0));
        assert_eq!(slope(&[(3.0, 1.0), (3.0, 9.0)]), None);
        assert_eq!(slope(&[]), None);
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        assert!(percentiles(Vec::new()).p99.is_none());
        assert_eq!(percentiles(vec![1000, 3000, 2000]).p50, Some(2.0));
    }
}

//! The soak: the axum example under wrk (HTTP/1.1 keep-alive) and hyper's
//! HTTP/2 client at once, restarted again and again for a set time. Each
//! generation's daemon and launcher are read from `/proc` (VmRSS, RssAnon,
//! open fds, threads) when it begins serving and just before it is
//! replaced, with the requests answered so far; the first generation may
//! serve a long share (e.g. 1 M requests) first, read on the way. From the
//! readings: growth per restart and per million requests, and the targets.
//!
//! Each restart makes a new launcher and a new daemon (the supervisor
//! starts a new launcher), so a leak across restarts shows as a launcher or
//! a fresh daemon holding more than the first one did, and a leak per
//! request as a generation's daemon growing while it serves.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::cli::Args;
use crate::load::builtin::get_pid;
use crate::load::{hyper_h2, wrk, Clock, Tools};
use crate::measure::{median, slope};
use crate::progress;
use crate::run::{first_answer, Skip};
use crate::servers::{Binaries, Server};
use crate::supervision::{free_port, temp_dir, usage, Supervisor, Usage};

/// Requests after which the long generation is first read.
pub(crate) const EARLY_REQUESTS: u64 = 10_000;
/// How far a generation's RssAnon may move between `EARLY_REQUESTS` and
/// the long share.
pub(crate) const GENERATION_RSSANON_TOLERANCE: f64 = 0.10;
/// How far a launcher's RssAnon may be from the first launcher's: two
/// pages, the noise of a process that allocates the same things each time.
pub(crate) const LAUNCHER_RSSANON_TOLERANCE_KIB: u64 = 8;

/// When a reading was taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Point {
    /// The generation serves: `EARLY_REQUESTS` answered since its first
    /// answer (or 2 s), so that the load's connections have moved to it.
    Serving,
    /// The long generation, once a second while it serves its share.
    Progress,
    /// The long generation after `EARLY_REQUESTS`.
    Early,
    /// The long generation after its whole share.
    LongShare,
    /// Just before `svc -t` replaces the generation.
    BeforeRestart,
    /// The last generation, just before the load ends.
    EndOfRun,
}

impl Point {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Point::Serving => "serving",
            Point::Progress => "long-share-progress",
            Point::Early => "after-early-requests",
            Point::LongShare => "after-long-share",
            Point::BeforeRestart => "before-restart",
            Point::EndOfRun => "end-of-run",
        }
    }

    /// The end of a generation's life.
    fn last(self) -> bool {
        matches!(self, Point::BeforeRestart | Point::EndOfRun)
    }
}

/// One reading of the serving generation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub(crate) t_s: f64,
    pub(crate) generation: usize,
    pub(crate) point: Point,
    /// Requests answered so far in the run, wrk's and hyper's.
    pub(crate) requests: u64,
    pub(crate) daemon_pid: u32,
    pub(crate) daemon: Option<Usage>,
    pub(crate) launcher_pid: u32,
    pub(crate) launcher: Option<Usage>,
}

/// What one soak recorded.
pub(crate) struct Soak {
    pub(crate) server: &'static str,
    pub(crate) supervisor: &'static str,
    pub(crate) load: String,
    pub(crate) seconds: u64,
    pub(crate) restart_every: Duration,
    pub(crate) long_share: u64,
    pub(crate) readings: Vec<Reading>,
    /// `svc -t` to the first answer from the new generation, ms.
    pub(crate) restart_ms: Vec<f64>,
    pub(crate) answered: u64,
    pub(crate) failures: BTreeMap<&'static str, u64>,
    /// Requests hyper's client sent again as unprocessed after a GOAWAY.
    pub(crate) resent: u64,
    /// Why the run ended before its time, if it did.
    pub(crate) cut_short: Option<String>,
}

impl Soak {
    pub(crate) fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub(crate) fn restarts(&self) -> usize {
        self.restart_ms.len()
    }
}

/// Runs the soak for `total`.
pub(crate) fn run(
    args: &Args,
    bins: &Binaries,
    tools: Tools,
    total: Duration,
) -> Result<Soak, Skip> {
    if !tools.wrk {
        return Err("wrk is not installed (or --builtin-load)".into());
    }
    // The axum example; or, for comparison, the same handler under plain
    // `axum::serve` (no launcher), with `--servers plain-axum`.
    let server = if args.servers.contains(&Server::PlainAxum) {
        Server::PlainAxum
    } else {
        Server::Axum
    };
    let dir = temp_dir("soak");
    let port = free_port();
    let launch = server.launch(
        bins,
        &format!("127.0.0.1:{port}"),
        Some(&dir.join("server.pid")),
    );
    let sup = Supervisor::start(args.builtin_supervisor, &launch, &dir);
    let (sup, mut daemon) =
        first_answer(sup, server, port, &crate::load::builtin::Wire::Http, &dir)?;

    let seconds = total.as_secs().max(2);
    let clock = Clock::new();
    let script = wrk::script(&dir);
    let h1 = wrk::start(
        &crate::load::url(port, false),
        args.connections,
        seconds,
        Some(&script),
        &dir,
        &clock,
    );
    let h2 = hyper_h2::start(port, args.connections, args.streams, seconds, &clock);
    let end = Instant::now() + Duration::from_secs(seconds);
    let served = || h1.answered_so_far() + h2.answered_so_far();
    let mut known = HashSet::new();
    let mut read = |generation: usize, point: Point, daemon: u32| {
        let launcher = sup.child_pid().filter(|_| server.seamless()).unwrap_or(0);
        known.extend([daemon, launcher]);
        Reading {
            t_s: clock.now_ms() / 1000.0,
            generation,
            point,
            requests: served(),
            daemon_pid: daemon,
            daemon: usage(daemon),
            launcher_pid: launcher,
            launcher: usage(launcher),
        }
    };

    let mut readings = Vec::new();
    let mut restart_ms = Vec::new();
    let mut cut_short = None;
    let mut generation = 0;
    loop {
        let serving_since = Instant::now();
        let from = served();
        while served() < from + EARLY_REQUESTS && serving_since.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(2));
        }
        readings.push(read(generation, Point::Serving, daemon));
        if generation == 0 && args.first_generation_requests > 0 {
            // The long share: read after the early requests, after the
            // share, and once a second on the way.
            let mut marks = vec![(EARLY_REQUESTS, Point::Early)];
            if args.first_generation_requests > EARLY_REQUESTS {
                marks.push((args.first_generation_requests, Point::LongShare));
            }
            let mut next_progress = Instant::now() + Duration::from_secs(1);
            let mut marks = marks.into_iter().peekable();
            while let Some(&(mark, point)) = marks.peek() {
                if Instant::now() + Duration::from_secs(1) >= end {
                    cut_short = Some(format!(
                        "the first generation had not served {mark} requests when the load was about to end"
                    ));
                    break;
                }
                if served() >= mark {
                    readings.push(read(generation, point, daemon));
                    marks.next();
                } else if Instant::now() >= next_progress {
                    readings.push(read(generation, Point::Progress, daemon));
                    next_progress += Duration::from_secs(1);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            let until = (serving_since + args.restart_every).min(end);
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        // Another generation only if it can serve its time before the
        // load ends.
        if Instant::now() + args.restart_every + Duration::from_secs(1) > end {
            break;
        }
        readings.push(read(generation, Point::BeforeRestart, daemon));
        let at = Instant::now();
        sup.restart();
        let next = loop {
            if let Some(pid) = get_pid(port).filter(|p| *p != daemon) {
                break Some(pid);
            }
            if at.elapsed() > Duration::from_secs(10) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let Some(next) = next else {
            cut_short = Some(format!(
                "no new generation answered within 10 s of restart {}",
                generation + 1
            ));
            break;
        };
        restart_ms.push(at.elapsed().as_secs_f64() * 1000.0);
        daemon = next;
        generation += 1;
        progress::update(&format!("restart {generation}, {} requests", served()));
    }
    // The last generation serves until the load ends: read it just before.
    std::thread::sleep(end.saturating_duration_since(Instant::now() + Duration::from_millis(300)));
    readings.push(read(generation, Point::EndOfRun, daemon));
    progress::clear();

    let (h1, h2) = (h1.finish(&clock), h2.finish(&clock));
    let mut failures = BTreeMap::new();
    for (kind, n) in h1.failures.iter().chain(&h2.failures) {
        *failures.entry(*kind).or_default() += n;
    }
    let supervisor = sup.describe();
    sup.stop(&known.into_iter().filter(|p| *p != 0).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Soak {
        server: server.name(),
        supervisor,
        load: format!(
            "wrk -t1 -c{c} (HTTP/1.1 keep-alive) and hyper's HTTP/2 client ({c} connections of {s} streams) at once, one run each for the whole soak",
            c = args.connections,
            s = args.streams
        ),
        seconds,
        restart_every: args.restart_every,
        long_share: args.first_generation_requests,
        readings,
        restart_ms,
        answered: h1.answered + h2.answered,
        failures,
        resent: h2.resent,
        cut_short,
    })
}

/// Which process of a generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Process {
    Daemon,
    Launcher,
}

impl Process {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Process::Daemon => "daemon",
            Process::Launcher => "launcher",
        }
    }

    fn of(self, r: &Reading) -> Option<Usage> {
        match self {
            Process::Daemon => r.daemon,
            Process::Launcher => r.launcher,
        }
    }
}

/// One measured quantity of a process.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Quantity {
    VmRss,
    RssAnon,
    Fds,
    Threads,
}

impl Quantity {
    pub(crate) const ALL: [Quantity; 4] = [
        Quantity::VmRss,
        Quantity::RssAnon,
        Quantity::Fds,
        Quantity::Threads,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Quantity::VmRss => "VmRSS KiB",
            Quantity::RssAnon => "RssAnon KiB",
            Quantity::Fds => "open fds",
            Quantity::Threads => "threads",
        }
    }

    pub(crate) fn of(self, u: &Usage) -> u64 {
        match self {
            Quantity::VmRss => u.vmrss_kib,
            Quantity::RssAnon => u.rssanon_kib,
            Quantity::Fds => u.fds,
            Quantity::Threads => u.threads,
        }
    }
}

/// One quantity of one process at one point of every generation's life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Growth {
    pub(crate) process: Process,
    /// At the start of each generation's life (serving) or its end.
    pub(crate) at_end: bool,
    pub(crate) quantity: Quantity,
    pub(crate) generations: usize,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
    /// Least-squares slope over the generation's number.
    pub(crate) per_restart: Option<f64>,
    /// Least-squares slope over the run's requests so far, per million.
    pub(crate) per_million_requests: Option<f64>,
}

/// Across generations: each generation's reading at the start (serving)
/// or at the end of its life, as a line over restarts and over requests.
pub(crate) fn growth(
    readings: &[Reading],
    process: Process,
    at_end: bool,
    quantity: Quantity,
) -> Option<Growth> {
    let points: Vec<(usize, u64, u64)> = readings
        .iter()
        .filter(|r| {
            if at_end {
                r.point.last()
            } else {
                r.point == Point::Serving
            }
        })
        .filter_map(|r| Some((r.generation, r.requests, quantity.of(&process.of(r)?))))
        .collect();
    let (first, last) = (points.first()?.2, points.last()?.2);
    let over = |x: fn(&(usize, u64, u64)) -> f64| {
        slope(
            &points
                .iter()
                .map(|p| (x(p), p.2 as f64))
                .collect::<Vec<_>>(),
        )
    };
    Some(Growth {
        process,
        at_end,
        quantity,
        generations: points.len(),
        first,
        last,
        min: points.iter().map(|p| p.2).min()?,
        max: points.iter().map(|p| p.2).max()?,
        per_restart: over(|p| p.0 as f64),
        per_million_requests: over(|p| p.1 as f64 / 1e6),
    })
}

/// Within each generation's life: how the daemon's `quantity` moved from
/// serving to its end, against the requests answered meanwhile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct WithinGeneration {
    pub(crate) generations: usize,
    /// Median over generations of (end − serving).
    pub(crate) median_growth: f64,
    /// Σ growth / Σ requests, per million requests.
    pub(crate) per_million_requests: Option<f64>,
}

pub(crate) fn within_generation(
    readings: &[Reading],
    quantity: Quantity,
) -> Option<WithinGeneration> {
    let mut growths = Vec::new();
    let (mut grown, mut requests) = (0.0, 0u64);
    for start in readings.iter().filter(|r| r.point == Point::Serving) {
        let Some(end) = readings
            .iter()
            .find(|r| r.generation == start.generation && r.point.last())
        else {
            continue;
        };
        let (Some(a), Some(b)) = (start.daemon, end.daemon) else {
            continue;
        };
        let g = quantity.of(&b) as f64 - quantity.of(&a) as f64;
        growths.push(g);
        grown += g;
        requests += end.requests.saturating_sub(start.requests);
    }
    Some(WithinGeneration {
        generations: growths.len(),
        median_growth: median(growths)?,
        per_million_requests: (requests > 0).then(|| grown / requests as f64 * 1e6),
    })
}

/// The long generation's RssAnon after the early requests and after its
/// share: (early KiB, share KiB, requests at each reading).
pub(crate) fn long_share(readings: &[Reading]) -> Option<((u64, u64), (u64, u64))> {
    let at = |point| {
        readings
            .iter()
            .find(|r| r.point == point)
            .and_then(|r| Some((r.daemon?.rssanon_kib, r.requests)))
    };
    let (early, share) = (at(Point::Early)?, at(Point::LongShare)?);
    Some(((early.0, share.0), (early.1, share.1)))
}

/// Whether `to` is within `tolerance` (a fraction) of `from`, and the
/// change in per cent.
pub(crate) fn within(from: u64, to: u64, tolerance: f64) -> (bool, f64) {
    let change = (to as f64 - from as f64) / from as f64;
    (change.abs() <= tolerance, change * 100.0)
}

/// Launchers flat across restarts: the largest distance of any launcher's
/// `quantity` from the first launcher's, at the same point of its life.
pub(crate) fn launcher_spread(
    readings: &[Reading],
    at_end: bool,
    quantity: Quantity,
) -> Option<u64> {
    let values: Vec<u64> = readings
        .iter()
        .filter(|r| {
            if at_end {
                r.point.last()
            } else {
                r.point == Point::Serving
            }
        })
        .filter_map(|r| Some(quantity.of(&r.launcher?)))
        .collect();
    let first = *values.first()?;
    values.iter().map(|v| v.abs_diff(first)).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(generation: usize, point: Point, requests: u64, rssanon: u64, fds: u64) -> Reading {
        let u = Usage {
            vmrss_kib: rssanon + 1000,
            rssanon_kib: rssanon,
            fds,
            threads: 3,
        };
        Reading {
            t_s: generation as f64,
            generation,
            point,
            requests,
            daemon_pid: 100 + generation as u32,
            daemon: Some(u),
            launcher_pid: 200 + generation as u32,
            launcher: Some(Usage {
                rssanon_kib: 500 + generation as u64 % 2,
                ..u
            }),
        }
    }

    /// Three generations: the daemon starts at 1000 KiB + 4 per restart,
    /// and grows 100 KiB over the 500,000 requests each serves.
    fn run() -> Vec<Reading> {
        let mut r = Vec::new();
        for g in 0..3u64 {
            let start = 1000 + 4 * g;
            r.push(reading(g as usize, Point::Serving, g * 500_000, start, 10));
            let last = if g == 2 {
                Point::EndOfRun
            } else {
                Point::BeforeRestart
            };
            r.push(reading(
                g as usize,
                last,
                (g + 1) * 500_000,
                start + 100,
                12,
            ));
        }
        r
    }

    #[test]
    fn growth_per_restart_and_per_million_requests() {
        let g = growth(&run(), Process::Daemon, false, Quantity::RssAnon).unwrap();
        assert_eq!(
            (g.generations, g.first, g.last, g.min, g.max),
            (3, 1000, 1008, 1000, 1008)
        );
        assert_eq!(g.per_restart, Some(4.0));
        // 4 KiB per restart, a restart every 500,000 requests.
        assert_eq!(g.per_million_requests, Some(8.0));
        let end = growth(&run(), Process::Daemon, true, Quantity::Fds).unwrap();
        assert_eq!((end.first, end.per_restart), (12, Some(0.0)));
    }

    #[test]
    fn growth_within_a_generation_per_million_requests() {
        let w = within_generation(&run(), Quantity::RssAnon).unwrap();
        assert_eq!(w.generations, 3);
        assert_eq!(w.median_growth, 100.0);
        assert_eq!(w.per_million_requests, Some(200.0));
    }

    #[test]
    fn long_share_and_tolerance() {
        let mut r = run();
        r.push(reading(0, Point::Early, 10_000, 1000, 10));
        r.push(reading(0, Point::LongShare, 1_000_000, 1080, 10));
        assert_eq!(long_share(&r), Some(((1000, 1080), (10_000, 1_000_000))));
        let (ok, pct) = within(1000, 1080, GENERATION_RSSANON_TOLERANCE);
        assert!(ok);
        assert!((pct - 8.0).abs() < 1e-9);
        assert!(!within(1000, 1101, GENERATION_RSSANON_TOLERANCE).0);
        assert!(long_share(&run()).is_none());
    }

    #[test]
    fn launcher_spread_from_the_first() {
        // Launchers alternate 500 and 501 KiB.
        assert_eq!(launcher_spread(&run(), false, Quantity::RssAnon), Some(1));
        assert_eq!(launcher_spread(&run(), true, Quantity::Fds), Some(0));
        assert_eq!(launcher_spread(&[], true, Quantity::Fds), None);
    }
}

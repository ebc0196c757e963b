//! h2load, the HTTP/2 load (cleartext with prior knowledge, or over TLS
//! with ALPN h2 to a TLS server): one thread, a few
//! connections with several streams each, run once per restart cycle. Its
//! summary gives the requests done, succeeded and failed; its per-request
//! log (`--log-file`: start in µs since the epoch, status, µs to the end of
//! the answer) places every answer and its latency in time. h2load opens a
//! new connection after a GOAWAY and counts the streams it loses as failed;
//! a connection closed without GOAWAY it neither counts nor replaces, so
//! each connection is its own h2load, and one whose answers stop before its
//! run ends counts the streams it had in flight as lost.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use seamless_loadkit::h2load::{LogEntry, Summary};

use super::{per_10ms, Clock, Slice};

/// The failure kind of the streams h2load counted errored that its own
/// log shows it never sent (the requests it queues after a server's
/// GOAWAY): told apart, and not counted against the server.
pub(crate) const NEVER_SENT: &str = "h2load errored, never sent";

pub(crate) struct Running {
    /// One h2load per connection, with its log: h2load 1.52 neither counts
    /// nor replaces a connection the server closes without GOAWAY; with one
    /// connection per process its log shows when it stopped.
    children: Vec<(Child, Option<PathBuf>)>,
    started_ms: f64,
    seconds: u64,
}

/// A connection whose last answer came this long before the end of its
/// run was lost (a working one answers every few hundred microseconds).
const LOST_AFTER_MS: f64 = 250.0;

/// Starts `connections` times `h2load -t1 -c1 -mM -D S`; with `log`, keeps
/// their per-request logs in `dir`.
pub(crate) fn start(
    url: &str,
    connections: usize,
    streams: usize,
    seconds: u64,
    log: bool,
    dir: &Path,
    clock: &Clock,
) -> Running {
    let started_ms = clock.now_ms();
    let children = (0..connections)
        .map(|i| {
            let mut cmd = Command::new("h2load");
            cmd.args([
                "-t1".to_owned(),
                "-c1".to_owned(),
                format!("-m{streams}"),
                "-D".to_owned(),
                seconds.to_string(),
            ]);
            let log = log.then(|| {
                let path = dir.join(format!("h2load-log-{i}"));
                let _ = std::fs::remove_file(&path);
                cmd.arg(format!("--log-file={}", path.display()));
                path
            });
            cmd.arg(url);
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("h2load");
            (child, log)
        })
        .collect();
    Running {
        children,
        started_ms,
        seconds,
    }
}

impl Running {
    pub(crate) fn finish(self, clock: &Clock) -> Slice {
        let end_ms = self.started_ms + self.seconds as f64 * 1000.0;
        let mut slice = Slice {
            source: "h2load",
            latency_source: "h2load's per-request log",
            started_ms: self.started_ms,
            seconds: self.seconds,
            answered: 0,
            failures: Vec::new(),
            per_10ms: Vec::new(),
            latencies: Vec::new(),
            unfinished: 0,
            resent: 0,
            streams: 0,
        };
        let (mut non2xx, mut errored, mut timeout, mut lost) = (0, 0, 0, 0);
        // Errored streams that h2load's log shows it never sent (start 0).
        let mut never_sent = 0;
        let mut done_ms: Vec<f64> = Vec::new();
        for (child, log) in self.children {
            let out = child.wait_with_output().expect("h2load output");
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(summary) = Summary::parse(&text) else {
                eprintln!(
                    "demo: cannot read h2load's summary:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                errored += 1;
                continue;
            };
            slice.answered += summary.succeeded;
            non2xx += summary.non_2xx();
            errored += summary.errored.saturating_sub(summary.timeout);
            timeout += summary.timeout;
            let in_flight = summary.in_flight();
            let Some(path) = log else {
                slice.unfinished += in_flight;
                continue;
            };
            let mut last_ms = f64::NEG_INFINITY;
            if let Ok(file) = std::fs::File::open(&path) {
                let lines = BufReader::new(file).lines().map_while(Result::ok);
                for entry in lines.filter_map(|l| LogEntry::parse(&l)) {
                    if entry.never_sent() {
                        never_sent += 1;
                        continue;
                    }
                    let LogEntry {
                        start_us,
                        status: Some(200..=399),
                        took_us,
                    } = entry
                    else {
                        continue;
                    };
                    slice.latencies.push((
                        clock.at_epoch_us(start_us) as f32,
                        took_us.min(u32::MAX as u64) as u32,
                    ));
                    let done = clock.at_epoch_us(start_us + took_us);
                    done_ms.push(done);
                    last_ms = last_ms.max(done);
                }
            }
            let _ = std::fs::remove_file(&path);
            if last_ms < end_ms - LOST_AFTER_MS {
                lost += in_flight;
            } else {
                slice.unfinished += in_flight;
            }
        }
        slice.per_10ms = per_10ms(done_ms);
        slice.failures = vec![
            ("h2load non-2xx", non2xx),
            (NEVER_SENT, never_sent.min(errored)),
            ("h2load errored", errored.saturating_sub(never_sent)),
            ("h2load timeout", timeout),
            ("h2load connection lost", lost),
        ];
        slice
    }
}

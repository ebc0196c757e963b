//! The load: the benchmark's own clients (keep-alive, new-connection and
//! slow-request loops, each request timestamped) and the independent
//! tools, wrk (HTTP/1.1 keep-alive) and h2load (HTTP/2 prior knowledge),
//! both over TLS too, and tonic's client for gRPC, run once per restart
//! cycle. Every time is kept in milliseconds since the
//! start of the run, on one clock shared with the tools' wall-clock
//! timestamps.

pub(crate) mod builtin;
pub(crate) mod grpc;
pub(crate) mod h2load;
pub(crate) mod hyper_h2;
pub(crate) mod wrk;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::supervision::which;

/// The run's clock: a monotonic origin and the wall-clock time it stands for.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    epoch_us: u64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
            epoch_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        }
    }

    pub(crate) fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1000.0
    }

    pub(crate) fn now_ms(&self) -> f64 {
        self.ms(Instant::now())
    }

    /// A wall-clock time in microseconds since the epoch, on this clock.
    pub(crate) fn at_epoch_us(&self, us: u64) -> f64 {
        (us as f64 - self.epoch_us as f64) / 1000.0
    }
}

/// The independent tools found on this machine.
#[derive(Clone, Copy)]
pub(crate) struct Tools {
    pub(crate) wrk: bool,
    pub(crate) h2load: bool,
}

impl Tools {
    pub(crate) fn detect(builtin_only: bool) -> Tools {
        Tools {
            wrk: !builtin_only && which("wrk"),
            h2load: !builtin_only && which("h2load"),
        }
    }
}

/// What one run of wrk, h2load or hyper's HTTP/2 client saw.
pub(crate) struct Slice {
    /// The tool, for the report.
    pub(crate) source: &'static str,
    /// Where its latencies come from, for the report.
    pub(crate) latency_source: &'static str,
    /// When the tool was started; it runs for `seconds`.
    pub(crate) started_ms: f64,
    pub(crate) seconds: u64,
    /// Requests answered with 2xx or 3xx.
    pub(crate) answered: u64,
    /// Failed requests by kind (socket errors, non-2xx, failed streams).
    pub(crate) failures: Vec<(&'static str, u64)>,
    /// Answers per 10 ms of wall-clock time: (start of the 10 ms in ms,
    /// count), in time order; 10 ms without an answer are absent.
    pub(crate) per_10ms: Vec<(f64, u32)>,
    /// (start of the request in ms, latency in µs), where the tool tells.
    pub(crate) latencies: Vec<(f32, u32)>,
    /// Requests still in flight when the tool stopped (not failures: the
    /// tool cut them at the end of its duration).
    pub(crate) unfinished: u64,
    /// Requests the client sent again because the server provably had not
    /// processed them (RFC 9113, 8.7); not failures.
    pub(crate) resent: u64,
    /// gRPC server streams that ran to their end (counted in `answered`).
    pub(crate) streams: u64,
}

/// The URL wrk and h2load load: `https` for a TLS server (h2load then
/// offers h2 by ALPN).
pub(crate) fn url(port: u16, tls: bool) -> String {
    format!("{}://127.0.0.1:{port}/", if tls { "https" } else { "http" })
}

impl Slice {
    pub(crate) fn failed(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }
}

/// Answers per 10 ms, from the times (ms) at which answers ended: the
/// `per_10ms` of a [`Slice`].
pub(crate) fn per_10ms(mut done_ms: Vec<f64>) -> Vec<(f64, u32)> {
    done_ms.sort_by(f64::total_cmp);
    let mut out: Vec<(f64, u32)> = Vec::new();
    for t in done_ms {
        let slot = (t / 10.0).floor() * 10.0;
        match out.last_mut() {
            Some((at, n)) if *at == slot => *n += 1,
            _ => out.push((slot, 1)),
        }
    }
    out
}

//! The second HTTP/2 load: hyper's HTTP/2 client from `seamless-loadkit`
//! (shared with the integration tests), which handles a graceful shutdown
//! as RFC 9113 asks of clients and sends a request again only when the
//! server provably did not process it; run once per restart cycle like
//! h2load, or through a whole soak.

use std::time::{Duration, Instant};

use seamless_loadkit::http2::{Load, Options};

use super::{per_10ms, Clock, Slice};

pub(crate) struct Running {
    load: Load,
    started_ms: f64,
    seconds: u64,
}

/// Starts the client: `connections` connections of `streams` streams each,
/// for `seconds`.
pub(crate) fn start(
    port: u16,
    connections: usize,
    streams: usize,
    seconds: u64,
    clock: &Clock,
) -> Running {
    let options = Options {
        port,
        connections,
        streams,
        body_prefix: b"Server pid: ",
        keep_answers: true,
    };
    Running {
        started_ms: clock.now_ms(),
        load: Load::start(options, Instant::now() + Duration::from_secs(seconds)),
        seconds,
    }
}

impl Running {
    pub(crate) fn answered_so_far(&self) -> u64 {
        self.load.answered_so_far()
    }

    pub(crate) fn finish(self, clock: &Clock) -> Slice {
        let tally = self.load.finish();
        let origin_ms = clock.ms(tally.started);
        let latencies: Vec<(f32, u32)> = tally
            .answers
            .iter()
            .map(|a| {
                (
                    (origin_ms + a.began_us as f64 / 1000.0) as f32,
                    a.latency_us,
                )
            })
            .collect();
        let done_ms = latencies
            .iter()
            .map(|(at, us)| *at as f64 + *us as f64 / 1000.0)
            .collect();
        Slice {
            source: "hyper's HTTP/2 client",
            latency_source: "hyper's HTTP/2 client",
            started_ms: self.started_ms,
            seconds: self.seconds,
            answered: tally.answered,
            failures: tally.failures.into_iter().collect(),
            per_10ms: per_10ms(done_ms),
            latencies,
            unfinished: 0,
            resent: tally.resent,
            streams: 0,
        }
    }
}

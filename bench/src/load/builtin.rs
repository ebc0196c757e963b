//! The benchmark's own clients, threads of this process: keep-alive
//! clients (the load when wrk is missing, probes next to wrk and h2load
//! otherwise), new-connection loops and slow-request loops. Each request is
//! recorded with its start, latency, outcome and the pid of the generation
//! that answered (read from the body), so that failures, latencies and the
//! new generation's first answer can be placed in time.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Clock;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Outcome {
    Ok,
    Refused,
    Reset,
    /// The server closed the connection without answering.
    Closed,
    Timeout,
    Non2xx,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Client {
    KeepAlive,
    NewConnection,
    Slow,
}

/// One request: 16 bytes, there are millions.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at_ms: f32,
    pub(crate) latency_us: u32,
    pub(crate) pid: u32,
    pub(crate) outcome: Outcome,
    pub(crate) client: Client,
}

impl Sample {
    pub(crate) fn done_ms(&self) -> f64 {
        self.at_ms as f64 + self.latency_us as f64 / 1000.0
    }

    /// The failure kind, e.g. "keep-alive closed"; None for an answer.
    pub(crate) fn failure(&self) -> Option<&'static str> {
        use Client::*;
        use Outcome::*;
        Some(match (self.client, self.outcome) {
            (_, Ok) => return None,
            (KeepAlive, Refused) => "keep-alive refused",
            (KeepAlive, Reset) => "keep-alive reset",
            (KeepAlive, Closed) => "keep-alive closed",
            (KeepAlive, Timeout) => "keep-alive timeout",
            (KeepAlive, Non2xx) => "keep-alive non-2xx",
            (NewConnection, Refused) => "new-conn refused",
            (NewConnection, Reset) => "new-conn reset",
            (NewConnection, Closed) => "new-conn closed",
            (NewConnection, Timeout) => "new-conn timeout",
            (NewConnection, Non2xx) => "new-conn non-2xx",
            (Slow, Refused) => "slow refused",
            (Slow, Reset | Closed) => "slow cut",
            (Slow, Timeout) => "slow timeout",
            (Slow, Non2xx) => "slow non-2xx",
        })
    }
}

fn classify(e: &std::io::Error) -> Outcome {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | NotFound => Outcome::Refused,
        TimedOut | WouldBlock => Outcome::Timeout,
        UnexpectedEof => Outcome::Closed,
        _ => Outcome::Reset,
    }
}

pub(crate) struct Load {
    pub(crate) port: u16,
    pub(crate) clock: Clock,
    pub(crate) stop: Arc<AtomicBool>,
}

/// The pause of a keep-alive probe between two requests: probes time
/// requests as a user would see them without adding to the load.
pub(crate) const PROBE_PAUSE: Duration = Duration::from_millis(1);

impl Load {
    fn record(
        &self,
        out: &mut Vec<Sample>,
        began: Instant,
        outcome: Outcome,
        pid: u32,
        client: Client,
    ) {
        out.push(Sample {
            at_ms: self.clock.ms(began) as f32,
            latency_us: began.elapsed().as_micros().min(u32::MAX as u128) as u32,
            pid,
            outcome,
            client,
        });
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(5),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// One keep-alive connection, reused until the server says
    /// `Connection: close`; a failure on it is a failure like any other.
    /// `pause` between requests (none when this client is the load).
    pub(crate) fn keepalive(&self, pause: Option<Duration>) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            if conn.is_none() {
                match self
                    .connect()
                    .and_then(|s| Ok((s.try_clone()?, BufReader::new(s))))
                {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        self.record(&mut out, began, classify(&e), 0, Client::KeepAlive);
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                }
            }
            let (w, r) = conn.as_mut().expect("connected");
            let result = w
                .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                .and_then(|_| read_response(r));
            match result {
                Ok(response) => {
                    let outcome = if response.status == 200 {
                        Outcome::Ok
                    } else {
                        Outcome::Non2xx
                    };
                    self.record(&mut out, began, outcome, response.pid, Client::KeepAlive);
                    if response.close || outcome != Outcome::Ok {
                        conn = None;
                    }
                }
                Err(e) => {
                    self.record(&mut out, began, classify(&e), 0, Client::KeepAlive);
                    conn = None;
                }
            }
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
        }
        out
    }

    /// A new connection per request (`Connection: close`).
    pub(crate) fn oneshot(&self, path: &str, client: Client) -> Vec<Sample> {
        let mut out = Vec::new();
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let result = self.connect().and_then(|s| {
                (&s).write_all(request.as_bytes())?;
                read_response(&mut BufReader::new(s))
            });
            let (outcome, pid) = match result {
                Ok(r) if r.status == 200 => (Outcome::Ok, r.pid),
                Ok(r) => (Outcome::Non2xx, r.pid),
                Err(e) => (classify(&e), 0),
            };
            self.record(&mut out, began, outcome, pid, client);
            if outcome != Outcome::Ok {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        out
    }
}

pub(crate) use seamless_loadkit::http1::read_response;

/// Sends one request on a new connection; the pid that answered it.
pub(crate) fn get_pid(port: u16) -> Option<u32> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let r = read_response(&mut BufReader::new(s)).ok()?;
    (r.status == 200).then_some(r.pid)
}

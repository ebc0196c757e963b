//! The benchmark's own clients, threads of this process: keep-alive
//! clients (the load when wrk is missing, probes next to wrk and h2load
//! otherwise), new-connection loops and slow-request loops. Each request is
//! recorded with its start, latency, outcome and the pid of the generation
//! that answered (read from the body), so that failures, latencies and the
//! new generation's first answer can be placed in time.
//!
//! They speak what the server speaks ([`Wire`]): HTTP/1.1 in cleartext or
//! over TLS (a rustls client that trusts the run's certificate), or gRPC
//! (`SayHello`, through `load::grpc`; a slow request is a call with
//! `delay_ms`).

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use super::Clock;

/// What the built-in clients speak.
#[derive(Clone)]
pub(crate) enum Wire {
    /// HTTP/1.1, cleartext.
    Http,
    /// HTTP/1.1 over TLS, with this client configuration.
    Tls(Arc<rustls::ClientConfig>),
    /// gRPC calls.
    Grpc,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A connection of the HTTP/1.1 clients.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A TLS client connection to `port` over `socket`, its handshake done.
pub(crate) fn tls_handshake(
    config: &Arc<rustls::ClientConfig>,
    socket: TcpStream,
) -> std::io::Result<TlsStream> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let connection =
        rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `GET /` over TLS on a new connection: the pid that answered, and
/// whether the handshake resumed a session.
pub(crate) fn tls_get(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
) -> std::io::Result<(u32, bool)> {
    let socket =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = tls_handshake(config, socket)?;
    let resumed = tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let r = read_response(&mut BufReader::new(tls))?;
    if r.status != 200 {
        return Err(std::io::Error::other(format!("status {}", r.status)));
    }
    Ok((r.pid, resumed))
}

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
    pub(crate) wire: Wire,
    pub(crate) clock: Clock,
    pub(crate) stop: Arc<AtomicBool>,
}

/// The pause of a keep-alive probe between two requests: probes time
/// requests as a user would see them without adding to the load.
pub(crate) const PROBE_PAUSE: Duration = Duration::from_millis(1);

impl Load {
    pub(crate) fn record(
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

    fn connect(&self) -> std::io::Result<Stream> {
        let s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(5),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        match &self.wire {
            Wire::Tls(config) => Ok(Stream::Tls(Box::new(tls_handshake(config, s)?))),
            _ => Ok(Stream::Plain(s)),
        }
    }

    /// One keep-alive connection, reused until the server says
    /// `Connection: close`; a failure on it is a failure like any other.
    /// `pause` between requests (none when this client is the load).
    pub(crate) fn keepalive(&self, pause: Option<Duration>) -> Vec<Sample> {
        if let Wire::Grpc = self.wire {
            return super::grpc::probe(self, Client::KeepAlive, 0, pause);
        }
        let mut out = Vec::new();
        let mut conn: Option<BufReader<Stream>> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            if conn.is_none() {
                match self.connect().map(BufReader::new) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        self.record(&mut out, began, classify(&e), 0, Client::KeepAlive);
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                }
            }
            let r = conn.as_mut().expect("connected");
            // The last answer was read whole: nothing is buffered.
            let result = r
                .get_mut()
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

    /// A new connection per request (`Connection: close`); `delay_ms`
    /// asks the server to take that long (`?delay=MS`, gRPC's
    /// `delay_ms`).
    pub(crate) fn oneshot(&self, delay_ms: u64, client: Client) -> Vec<Sample> {
        if let Wire::Grpc = self.wire {
            return super::grpc::probe(self, client, delay_ms, None);
        }
        let path = if delay_ms > 0 {
            format!("/?delay={delay_ms}")
        } else {
            "/".to_owned()
        };
        let mut out = Vec::new();
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let result = self.connect().and_then(|mut s| {
                s.write_all(request.as_bytes())?;
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
pub(crate) fn get_pid_over(port: u16, wire: &Wire) -> Option<u32> {
    match wire {
        Wire::Http => get_pid(port),
        Wire::Tls(config) => tls_get(config, port).ok().map(|(pid, _)| pid),
        Wire::Grpc => super::grpc::answering_pid(port),
    }
}

/// Sends one cleartext HTTP/1.1 request on a new connection; the pid that
/// answered it.
pub(crate) fn get_pid(port: u16) -> Option<u32> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let r = read_response(&mut BufReader::new(s)).ok()?;
    (r.status == 200).then_some(r.pid)
}

//! The polite drain behind [`crate::hyper`] and [`crate::axum`]: an accept
//! loop that stops when the shutdown begins, and a driver per connection
//! that lets each one finish without losing a request.
//!
//! This module owns the rules; `track` counts what each connection has in
//! flight, `service` marks the responses given during the drain. While the
//! server serves, a request writes only to its own connection's state: the
//! state shared between connections is the phase, which a connection only
//! reads, and the registry the drain wakes the connections from, touched
//! once at the accept and once at the close, in one of several shards
//! (see `track`). The rules, in the order a restart meets them:
//!
//! 1. **Stop accepting, drop the listener.** With a handed-over socket the
//!    next generation accepts from the same kernel queue, so connections
//!    still queued are its to serve.
//! 2. **HTTP/1.1: never close a connection under a request.** The drain
//!    wakes every connection's driver; from then on every response it
//!    finishes carries `Connection: close` (a flag of the connection's own,
//!    which its driver sets before it polls hyper), and hyper closes the
//!    connection once it is written. A connection with no request in
//!    flight and no byte received for `idle_linger` is then closed, unless
//!    its socket holds bytes not read yet (a busy runtime may not have
//!    read a request that came in time: [`AsyncAccept::socket_of`]). A
//!    connection accepted but not read yet is one of these: the request it
//!    was opened for gets `idle_linger` to arrive, is served, and the
//!    connection closes after the answer.
//! 3. **HTTP/2:** hyper's graceful shutdown, the two-step GOAWAY (the
//!    highest stream id and a PING, then the last stream processed).
//!    Streams in flight finish; the client opens new ones on a new
//!    connection, to the next generation.
//! 4. **Closing in two steps** (`track`'s lingering close): our end-of-file
//!    first, then what the client still sends is read and discarded until
//!    it closes, so that no reset destroys the last answer.
//! 5. **Upgraded connections** (WebSocket) belong to the application once
//!    the `101` is sent; the drain counts them and, per [`Upgrades`],
//!    waits for them, tells each to go ([`GoingAway`], `going_away`), or
//!    fails their I/O when the shutdown begins.
//! 6. **Bounded:** at the drain's deadline every connection left is closed
//!    and the server returns.
//!
//! With TLS (`tls`, feature `rustls`) the handshake runs in the
//! connection's task, and the rules apply unchanged over the TLS stream.

mod going_away;
mod service;
#[cfg(feature = "rustls")]
mod tls;
mod track;

pub use going_away::{GoingAway, DEFAULT_GOING_AWAY_SPREAD};
#[cfg(feature = "rustls")]
pub(crate) use tls::Tls;
#[cfg(feature = "rustls")]
pub use tls::DEFAULT_TLS_HANDSHAKE_TIMEOUT;

/// No TLS without the `rustls` feature: an `Option<Tls>` is always `None`.
#[cfg(not(feature = "rustls"))]
pub(crate) enum Tls {}

use std::error::Error as StdError;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use ::hyper::body::{Body, Incoming};
use ::hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::report;
use service::DrainService;
use track::{Phase, Shared, Side, Track, TrackedIo};

/// How long a connection may stay idle once the shutdown began, by default.
///
/// Chosen by measurement: the axum example under daemontools, 20 restarts
/// 3 s apart under wrk (4 keep-alive connections), h2load and loops of
/// new-connection requests on a loaded 2-core machine. With no linger, 12
/// wrk requests failed; with 10 ms, an HTTP/2 connection accepted just
/// before the shutdown was closed before its client's first bytes
/// arrived; with 100 ms and with 1 s, nothing failed. A busy client sends
/// its next request within microseconds of an answer; what the linger must
/// cover is a client or server stalled by the scheduler. One second is ten
/// times the smallest linger that sufficed, costs an idle client nothing
/// (it would be closed anyway) and keeps the old generation's exit prompt.
pub const DEFAULT_IDLE_LINGER: Duration = Duration::from_secs(1);

/// How long the drain may take when neither
/// [`drain_timeout`](crate::hyper::Serve::drain_timeout) nor the daemon's
/// `shutdown_timeout` says otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the drain does with upgraded connections (WebSocket and the like),
/// which hyper hands to the application after the `101 Switching
/// Protocols`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upgrades {
    /// Let them finish: the server waits for each to end on its own, up to
    /// the drain's deadline, when the ones left are closed (their reads and
    /// writes fail with `ConnectionAborted`).
    #[default]
    Finish,
    /// Close them when the shutdown begins: their reads and writes fail with
    /// `ConnectionAborted`, so the application's loop ends and the client
    /// reconnects, to the next generation. For long-lived connections whose
    /// clients reconnect on their own.
    Close,
    /// Tell each to go, and let it finish: every upgrade request carries a
    /// [`GoingAway`] in its extensions, which completes when the shutdown
    /// begins plus a random delay of its own (up to the server's
    /// `going_away_spread`, at most half the time left to the drain's
    /// deadline). The application then closes the connection politely
    /// (WebSocket: Close with status 1001, going away), and its client
    /// reconnects, to the next generation. The server waits for them as
    /// with [`Finish`](Upgrades::Finish), up to the drain's deadline.
    GoAway,
}

/// The knobs of the drain, shared by the hyper and axum servers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) idle_linger: Duration,
    pub(crate) drain_timeout: Option<Duration>,
    pub(crate) upgrades: Upgrades,
    pub(crate) going_away_spread: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            idle_linger: DEFAULT_IDLE_LINGER,
            drain_timeout: None,
            upgrades: Upgrades::Finish,
            going_away_spread: DEFAULT_GOING_AWAY_SPREAD,
        }
    }
}

impl Options {
    /// When the drain that begins at `began` must end: `drain_timeout`
    /// after it if set; else a little before the daemon's
    /// `shutdown_timeout` ends the process (a tenth of it, at most one
    /// second), so that `main` returns first; else
    /// [`DEFAULT_DRAIN_TIMEOUT`].
    fn deadline(&self, began: Instant) -> Instant {
        if let Some(timeout) = self.drain_timeout {
            return began + timeout;
        }
        if let Some(limit) = crate::shutdown::deadline() {
            let limit = Instant::from_std(limit);
            let margin = (limit.saturating_duration_since(began) / 10).min(Duration::from_secs(1));
            return limit.checked_sub(margin).unwrap_or(limit).max(began);
        }
        began + DEFAULT_DRAIN_TIMEOUT
    }
}

/// A source of connections for [`crate::hyper::serve`], accepted
/// asynchronously ([`crate::net::Accept`] is its blocking counterpart, for
/// std's listeners and [`crate::net::accept`]).
///
/// Implemented for tokio's `TcpListener` and `UnixListener`; turn what
/// [`crate::net::tcp`] or [`crate::net::unix`] returns into those with
/// `from_std` (the sockets are non-blocking already).
///
/// ```
/// # async fn f() -> std::io::Result<()> {
/// let listener = seamless::net::tcp("web", "127.0.0.1:0")?;
/// let listener = tokio::net::TcpListener::from_std(listener)?;
/// # let _: &dyn std::any::Any = &listener;
/// # Ok(())
/// # }
/// ```
pub trait AsyncAccept: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// The socket under `io`, if it has one, which the drain peeks at
    /// before it closes a connection that looks idle: on a busy server a
    /// request can sit in the kernel's buffer, not yet read, for longer
    /// than the idle linger, and closing then would lose it. `None` (the
    /// default) skips that check.
    fn socket_of(io: &Self::Io) -> Option<RawFd> {
        let _ = io;
        None
    }
}

impl AsyncAccept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }

    fn socket_of(io: &Self::Io) -> Option<RawFd> {
        Some(io.as_raw_fd())
    }
}

impl AsyncAccept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }

    fn socket_of(io: &Self::Io) -> Option<RawFd> {
        Some(io.as_raw_fd())
    }
}

/// Whether bytes wait unread in the receive buffer of `socket`.
fn unread_input(socket: RawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: a non-blocking peek of at most one byte into a live buffer;
    // `socket` belongs to the connection of the task that calls this,
    // which owns it until after its last poll.
    let n = unsafe {
        libc::recv(
            socket,
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// What ends the accept loop; `seamless::shutdown()` unless told otherwise.
pub(crate) type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The future a server's `IntoFuture` gives.
pub(crate) type ServeFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Accepts until `signal`, serving each connection with `service`, then
/// drains (see the module documentation).
pub(crate) async fn run<L, S, B>(
    mut listener: L,
    service: S,
    options: Options,
    tls: Option<Tls>,
    mut signal: Signal,
) -> io::Result<()>
where
    L: AsyncAccept,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shared = Arc::new(Shared::new(options));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // WebSockets over HTTP/2 (RFC 8441), as axum::serve allows them.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    // Numbers the connections for `Shared`'s shards; the accept loop's own,
    // so that choosing a shard writes nothing shared.
    let mut accepted_count: u64 = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut signal => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(io) => {
                let track = shared.register(accepted_count);
                accepted_count = accepted_count.wrapping_add(1);
                let socket = L::socket_of(&io);
                spawn_connection(
                    io,
                    socket,
                    track,
                    service.clone(),
                    &builder,
                    &shared,
                    tls.as_ref(),
                );
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors and the like: wait, as hyper's
                // and axum's servers do, rather than spin.
                report::error!("accept: {e}; trying again in 1 s");
                tokio::select! {
                    () = &mut signal => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    // Rule 1: the next generation accepts what is queued.
    drop(listener);
    let deadline = options.deadline(Instant::now());
    shared.set_deadline(deadline);
    shared.begin_drain();
    let all_closed = poll_fn(|cx| shared.poll_all_closed(cx));
    tokio::select! {
        () = all_closed => {}
        () = tokio::time::sleep_until(deadline) => {
            let left = shared.cut_all();
            report::warning!("drain deadline passed; closing {left} connection(s) still open");
        }
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn spawn_connection<I, S, B>(
    io: I,
    socket: Option<RawFd>,
    track: Arc<Track>,
    service: S,
    builder: &Arc<auto::Builder<TokioExecutor>>,
    shared: &Arc<Shared>,
    tls: Option<&Tls>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let going_away =
        (shared.options.upgrades == Upgrades::GoAway).then(|| GoingAway::new(shared.clone()));
    let service = DrainService::new(service, track.clone(), going_away);
    let (builder, shared) = (builder.clone(), shared.clone());
    match tls {
        None => {
            let io = TrackedIo::new(io, track.clone(), shared.clone());
            tokio::spawn(drive(io, socket, track, service, builder, shared));
        }
        #[cfg(feature = "rustls")]
        Some(tls) => {
            // The handshake runs here, in the connection's own task: a
            // slow client delays nobody else's.
            let (tls, pending) = (
                tls.clone(),
                track::Pending::new(track.clone(), shared.clone()),
            );
            tokio::spawn(async move {
                if let Some(io) = tls.handshake(io, pending).await {
                    drive(io, socket, track, service, builder, shared).await;
                }
            });
        }
        #[cfg(not(feature = "rustls"))]
        Some(never) => match *never {},
    }
}

/// Serves one connection by the drain's rules, until it closes.
async fn drive<I, S, B>(
    io: TrackedIo<I>,
    socket: Option<RawFd>,
    track: Arc<Track>,
    service: DrainService<S>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let io = TokioIo::new(io);
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = pin!(conn);
    let idle_linger = shared.options.idle_linger;
    // Whether this task saw the shutdown begin.
    let mut draining = false;
    // Whether hyper was told to close (graceful_shutdown).
    let mut closing = false;
    // The idle check: a timer and the activity count it started from.
    let mut linger: Option<(Pin<Box<tokio::time::Sleep>>, u64)> = None;
    // The waker the drain has, compared here so that the common poll
    // takes no lock.
    let mut given: Option<Waker> = None;
    let done = poll_fn(|cx| {
        if !given.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            track.set_waker(Side::Task, cx.waker());
            given = Some(cx.waker().clone());
        }
        // Read after the waker is given: a phase stored after this
        // read wakes the task again. A load of a line nobody writes
        // until the drain.
        let phase = shared.phase();
        if phase >= Phase::Draining && !draining {
            // Rule 2, before hyper polls the responses that read it.
            track.begin_draining();
            draining = true;
        }
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        if phase == Phase::Cut {
            // Rule 6: the deadline passed.
            return Poll::Ready(None);
        }
        if closing || !draining {
            return Poll::Pending;
        }
        if track.is_h2() {
            // Rule 3: GOAWAY now; streams in flight finish.
            conn.as_mut().graceful_shutdown();
            closing = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Rule 2: responses carry `Connection: close` (see `service`);
        // a connection idle for a whole linger is closed.
        let (timer, seen) = linger.get_or_insert_with(|| {
            let timer = Box::pin(tokio::time::sleep(idle_linger));
            (timer, track.activity())
        });
        while timer.as_mut().poll(cx).is_ready() {
            let now = track.activity();
            // A request in the kernel's buffer that hyper has not read
            // yet (the runtime is behind) is activity too.
            let unread = socket.is_some_and(unread_input);
            if track.in_flight() == 0 && now == *seen && !unread {
                conn.as_mut().graceful_shutdown();
                closing = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            *seen = now;
            timer.as_mut().reset(Instant::now() + idle_linger);
        }
        Poll::Pending
    })
    .await;
    match done {
        Some(Ok(())) => shared.connection_ended(&track),
        Some(Err(e)) => report::debug!("connection: {e}"),
        None => report::debug!("connection closed at the drain deadline"),
    }
}

#[cfg(test)]
mod tests;

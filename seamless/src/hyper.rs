//! Serve a hyper service with zero dropped requests across restarts
//! (feature `hyper`).
//!
//! [`serve`](fn@serve) accepts from a listener, speaks HTTP/1.1 and HTTP/2 (cleartext,
//! prior knowledge) on the same port with hyper-util's `auto` connection,
//! and shuts down gracefully when [`seamless::shutdown()`](crate::shutdown())
//! fires: nothing else to wire.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from("hello\n"))))
//! }
//!
//! #[seamless::daemon(pid_file = "/run/myapp.pid")]
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
//!     let listener = tokio::net::TcpListener::from_std(listener)?;
//!     seamless::started();
//!     seamless::hyper::serve(listener, hyper::service::service_fn(hello)).await
//! }
//! ```
//!
//! A tower service is served through hyper-util's `TowerToHyperService`.
//!
//! # The drain
//!
//! A restart must not fail a request, and the usual graceful shutdown
//! (hyper's `graceful_shutdown` on every connection, as `axum::serve`
//! does) fails one on each keep-alive connection: hyper closes at once
//! every HTTP/1.1 connection that looks idle, including one whose next
//! request is already on the wire, and one accepted but not read yet. The
//! client reads end-of-file or a reset. The drain here closes a connection
//! only where the protocol lets the client know, or lets it retry:
//!
//! 1. **Stop accepting** and drop the listener when the shutdown begins.
//!    The socket itself lives on in the next generation (it was handed
//!    over), and connections still in its queue are the next generation's
//!    to accept.
//! 2. **HTTP/1.1:** every response finished after the shutdown began
//!    carries `Connection: close`; hyper closes the connection once it is
//!    written, and the client opens a new one, to the next generation. A
//!    connection with nothing in flight and nothing received for
//!    [`idle_linger`](Serve::idle_linger) (default
//!    [`DEFAULT_IDLE_LINGER`], counted from the shutdown or from its last
//!    activity) is closed: the only race left is a client that sends on a
//!    connection idle that long, which RFC 9112 (9.3.1) lets it retry. A
//!    connection accepted but not read yet is served once the same way.
//! 3. **HTTP/2:** the two-step GOAWAY (hyper's graceful shutdown: the
//!    highest stream id and a PING, then the last stream processed).
//!    Streams in flight finish; new ones go to a new connection.
//! 4. **Closing in two steps:** `shutdown(SHUT_WR)` after the last answer,
//!    then reading (and discarding) until the client closes, 2 s at most.
//!    Closing a socket that still holds unread bytes (a request sent after
//!    our last answer, an HTTP/2 acknowledgement) makes the kernel send a
//!    reset, which destroys the last answer before the client reads it.
//! 5. **Upgraded connections** (WebSocket): see [`Upgrades`]; with
//!    [`Upgrades::GoAway`] each is told to go ([`GoingAway`]) and closes
//!    itself, a WebSocket with status 1001.
//! 6. **Bounded:** at the deadline (see [`drain_timeout`](Serve::drain_timeout))
//!    the connections left are closed and `serve` returns.
//!
//! Measured with the axum example under daemontools, 20 restarts under
//! wrk (4 keep-alive connections) on a 2-core machine: `axum::serve` with
//! its graceful shutdown failed 81 wrk requests (one per connection per
//! restart), this drain none.

use std::error::Error as StdError;
use std::future::{Future, IntoFuture};
use std::io;
use std::time::Duration;

use ::hyper::body::{Body, Incoming};
use ::hyper::{Request, Response};

use crate::serve::{self, Options, ServeFuture, Signal, Tls};

#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use crate::serve::DEFAULT_TLS_HANDSHAKE_TIMEOUT;
pub use crate::serve::{
    AsyncAccept, GoingAway, Upgrades, DEFAULT_DRAIN_TIMEOUT, DEFAULT_GOING_AWAY_SPREAD,
    DEFAULT_IDLE_LINGER,
};

/// Serves `service` on `listener` until [`seamless::shutdown()`](crate::shutdown())
/// fires, then drains (see the [module documentation](self)). Await the
/// returned [`Serve`], after setting its knobs if need be.
///
/// ```no_run
/// # use std::convert::Infallible;
/// # use hyper::body::{Bytes, Incoming};
/// # async fn hello(_: hyper::Request<Incoming>) -> Result<hyper::Response<String>, Infallible> {
/// #     Ok(hyper::Response::new(String::new()))
/// # }
/// # async fn f(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// seamless::hyper::serve(listener, hyper::service::service_fn(hello))
///     .idle_linger(std::time::Duration::from_millis(500))
///     .await
/// # }
/// ```
pub fn serve<L, S>(listener: L, service: S) -> Serve<L, S> {
    Serve {
        listener,
        service,
        options: Options::default(),
        tls: None,
        signal: None,
    }
}

/// A server being set up; `.await` it to serve. See [`serve`](fn@serve).
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<L, S> {
    listener: L,
    service: S,
    options: Options,
    tls: Option<Tls>,
    signal: Option<Signal>,
}

impl<L, S> Serve<L, S> {
    /// How long an HTTP/1.1 connection with nothing in flight may stay open
    /// once the shutdown began, waiting for a request (answered with
    /// `Connection: close`). Default: [`DEFAULT_IDLE_LINGER`].
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s.idle_linger(std::time::Duration::from_millis(200));
    /// # drop(s);
    /// # }
    /// ```
    pub fn idle_linger(mut self, linger: Duration) -> Self {
        self.options.idle_linger = linger;
        self
    }

    /// How long the drain may take, from the start of the shutdown; past
    /// it, the connections left are closed and the server returns.
    /// Default: the daemon's `shutdown_timeout` less a tenth of it (at
    /// most a second) when one is set, so that `main` returns before it;
    /// else [`DEFAULT_DRAIN_TIMEOUT`].
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s.drain_timeout(std::time::Duration::from_secs(10));
    /// # drop(s);
    /// # }
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.options.drain_timeout = Some(timeout);
        self
    }

    /// What to do with upgraded connections (WebSocket) at the shutdown.
    /// Default: [`Upgrades::Finish`].
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s.upgrades(seamless::hyper::Upgrades::Close);
    /// # drop(s);
    /// # }
    /// ```
    pub fn upgrades(mut self, upgrades: Upgrades) -> Self {
        self.options.upgrades = upgrades;
        self
    }

    /// With [`Upgrades::GoAway`], how far apart the [`GoingAway`] signals
    /// of the upgraded connections fire, at most, counted from the start
    /// of the drain (and never later than half the time left to its
    /// deadline). Default: [`DEFAULT_GOING_AWAY_SPREAD`].
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s
    ///     .upgrades(seamless::hyper::Upgrades::GoAway)
    ///     .going_away_spread(std::time::Duration::from_secs(5));
    /// # drop(s);
    /// # }
    /// ```
    pub fn going_away_spread(mut self, spread: Duration) -> Self {
        self.options.going_away_spread = spread;
        self
    }

    /// Serves HTTPS: each connection's TLS handshake, with `config`, runs
    /// in its own task (within
    /// [`tls_handshake_timeout`](Serve::tls_handshake_timeout)), never in
    /// the accept loop. A configuration without ALPN protocols gets `h2`
    /// and `http/1.1`. The drain's rules hold on TLS connections, which
    /// close with `close_notify` before the two-step close. For sessions
    /// that resume across restarts, set `config.ticketer` to a
    /// [`tls::Ticketer`](crate::tls::Ticketer).
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>,
    /// #            config: std::sync::Arc<rustls::ServerConfig>) {
    /// let s = s.tls(config);
    /// # drop(s);
    /// # }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(Tls::new(config));
        self
    }

    /// How long a client may take over its TLS handshake; past it, the
    /// connection is closed. Default: [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    /// Call it after [`tls`](Serve::tls).
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s.tls_handshake_timeout(std::time::Duration::from_secs(5));
    /// # drop(s);
    /// # }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.set_timeout(timeout);
        }
        self
    }

    /// Starts the drain when `signal` completes instead of when
    /// [`seamless::shutdown()`](crate::shutdown()) fires: for a server that
    /// must stop on something else, and for tests.
    ///
    /// ```no_run
    /// # async fn f(s: seamless::hyper::Serve<tokio::net::TcpListener, ()>) {
    /// let s = s.with_graceful_shutdown(async { /* ... */ });
    /// # drop(s);
    /// # }
    /// ```
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }

    pub(crate) fn into_parts(self) -> (L, S, Options, Option<Tls>, Signal) {
        let signal = self
            .signal
            .unwrap_or_else(|| Box::pin(crate::shutdown::shutdown()));
        (self.listener, self.service, self.options, self.tls, signal)
    }
}

impl<L, S> std::fmt::Debug for Serve<L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<L, S, B> IntoFuture for Serve<L, S>
where
    L: AsyncAccept,
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        let (listener, service, options, tls, signal) = self.into_parts();
        Box::pin(serve::run(listener, service, options, tls, signal))
    }
}

//! Serve an axum application with zero dropped requests across restarts
//! (feature `axum`).
//!
//! [`serve`](fn@serve) reads like `axum::serve`, with the graceful shutdown wired to
//! [`seamless::shutdown()`](crate::shutdown()) and the polite drain described
//! in [`crate::hyper`]: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on
//! the same port, no request lost on a keep-alive connection.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[seamless::daemon(pid_file = "/run/myapp.pid")]
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
//!     let listener = tokio::net::TcpListener::from_std(listener)?;
//!     seamless::started();
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     seamless::axum::serve(listener, app).await
//! }
//! ```

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::io;
use std::time::Duration;

use ::axum::body::Body;
use ::axum::extract::Request;
use ::axum::response::Response;
use ::hyper::body::Incoming;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use tower_service::Service;

use crate::serve::{self, ServeFuture};

pub use crate::serve::{GoingAway, Upgrades};

/// Serves `app` on `listener` (any `axum::serve::Listener`: tokio's
/// `TcpListener`, `UnixListener`, or one made with `ListenerExt::tap_io`)
/// until [`seamless::shutdown()`](crate::shutdown()) fires, then drains. Await
/// the returned [`Serve`], after setting its knobs if need be.
///
/// ```no_run
/// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
/// seamless::axum::serve(listener, app)
///     .drain_timeout(std::time::Duration::from_secs(20))
///     .await
/// # }
/// ```
pub fn serve<L, S>(listener: L, app: S) -> Serve<L, S>
where
    L: ::axum::serve::Listener,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    Serve {
        inner: crate::hyper::serve(AxumListener(listener), AxumService::new(app)),
    }
}

/// An axum server being set up; `.await` it to serve. See [`serve`](fn@serve) and,
/// for the knobs, [`crate::hyper::Serve`].
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<L, S> {
    inner: crate::hyper::Serve<AxumListener<L>, AxumService<S>>,
}

impl<L, S> Serve<L, S> {
    /// See [`crate::hyper::Serve::idle_linger`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app).idle_linger(std::time::Duration::from_millis(500)).await
    /// # }
    /// ```
    pub fn idle_linger(self, linger: Duration) -> Self {
        Serve {
            inner: self.inner.idle_linger(linger),
        }
    }

    /// See [`crate::hyper::Serve::drain_timeout`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app).drain_timeout(std::time::Duration::from_secs(10)).await
    /// # }
    /// ```
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        Serve {
            inner: self.inner.drain_timeout(timeout),
        }
    }

    /// See [`crate::hyper::Serve::upgrades`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app).upgrades(seamless::axum::Upgrades::Close).await
    /// # }
    /// ```
    pub fn upgrades(self, upgrades: Upgrades) -> Self {
        Serve {
            inner: self.inner.upgrades(upgrades),
        }
    }

    /// See [`crate::hyper::Serve::tls`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router,
    /// #            config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app).tls(config).await
    /// # }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls(self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        Serve {
            inner: self.inner.tls(config),
        }
    }

    /// See [`crate::hyper::Serve::tls_handshake_timeout`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router,
    /// #            config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app)
    ///     .tls(config)
    ///     .tls_handshake_timeout(std::time::Duration::from_secs(5))
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_handshake_timeout(self, timeout: Duration) -> Self {
        Serve {
            inner: self.inner.tls_handshake_timeout(timeout),
        }
    }

    /// See [`crate::hyper::Serve::going_away_spread`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app)
    ///     .upgrades(seamless::axum::Upgrades::GoAway)
    ///     .going_away_spread(std::time::Duration::from_secs(5))
    ///     .await
    /// # }
    /// ```
    pub fn going_away_spread(self, spread: Duration) -> Self {
        Serve {
            inner: self.inner.going_away_spread(spread),
        }
    }

    /// See [`crate::hyper::Serve::with_graceful_shutdown`].
    ///
    /// ```no_run
    /// # async fn f(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// seamless::axum::serve(listener, app).with_graceful_shutdown(async { /* ... */ }).await
    /// # }
    /// ```
    pub fn with_graceful_shutdown<F>(self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Serve {
            inner: self.inner.with_graceful_shutdown(signal),
        }
    }
}

impl<L, S> std::fmt::Debug for Serve<L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<L, S> IntoFuture for Serve<L, S>
where
    L: ::axum::serve::Listener,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        let (listener, service, options, tls, signal) = self.inner.into_parts();
        Box::pin(serve::run(listener, service, options, tls, signal))
    }
}

/// An axum listener as a [`crate::hyper::AsyncAccept`].
struct AxumListener<L>(L);

impl<L: ::axum::serve::Listener> crate::hyper::AsyncAccept for AxumListener<L> {
    type Io = L::Io;

    async fn accept(&mut self) -> io::Result<L::Io> {
        // axum's listeners retry their own errors.
        Ok(::axum::serve::Listener::accept(&mut self.0).await.0)
    }
}

/// An axum service (a `Router`, say) as a hyper service: the request body
/// becomes axum's `Body`, and the tower service is driven the way
/// `axum::serve` drives it.
#[derive(Clone)]
struct AxumService<S>(TowerToHyperService<S>);

impl<S> AxumService<S> {
    fn new(app: S) -> AxumService<S> {
        AxumService(TowerToHyperService::new(app))
    }
}

impl<S> ::hyper::service::Service<::hyper::Request<Incoming>> for AxumService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TowerToHyperServiceFuture<S, Request>;

    fn call(&self, request: ::hyper::Request<Incoming>) -> Self::Future {
        ::hyper::service::Service::call(&self.0, request.map(Body::new))
    }
}

/// A handler takes the connection's [`GoingAway`] beside axum's
/// `WebSocketUpgrade` (`async fn ws(upgrade: WebSocketUpgrade, going_away:
/// GoingAway)`), and moves it into the socket's task, where it is awaited
/// beside the socket's reads; when it completes, the task sends a Close
/// frame with status 1001 (`examples/ws.rs`). With [`Upgrades::GoAway`] it
/// completes when the drain begins (plus the connection's share of the
/// spread), elsewhere at [`seamless::shutdown()`](crate::shutdown()).
impl<S: Send + Sync> ::axum::extract::FromRequestParts<S> for GoingAway {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut ::axum::http::request::Parts,
        _state: &S,
    ) -> Result<GoingAway, Infallible> {
        Ok(parts
            .extensions
            .get::<GoingAway>()
            .cloned()
            .unwrap_or_default())
    }
}

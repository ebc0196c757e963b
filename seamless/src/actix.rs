//! Stop an actix-web server without failing a request across restarts
//! (feature `actix`).
//!
//! actix-web owns its accept loop and its connections, so seamless cannot
//! drive them as [`crate::hyper`] does; what it can do is stop actix at the
//! right moments. Two pieces, used together:
//!
//! - [`CloseOnShutdown`], a middleware: every response finished after the
//!   shutdown began carries `Connection: close`, and actix closes the
//!   connection once it is written. The client opens a new one, to the
//!   next generation.
//! - [`serve`], which awaits the server and, when
//!   [`seamless::shutdown()`](crate::shutdown()) fires, stops accepting at
//!   once (`ServerHandle::pause`: the socket lives on in the next
//!   generation, which accepts what is queued), lets the busy connections
//!   meet their `Connection: close` for [`idle_linger`](Serve::idle_linger),
//!   then begins actix's graceful stop (`ServerHandle::stop(true)`), which
//!   closes the connections left (idle ones) and lets requests in flight
//!   finish. At the deadline, actix's forced stop.
//!
//! The server must leave the signals to seamless: `disable_signals()`,
//! or actix begins its own stop on the TERM that ends a generation.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//!
//! #[seamless::daemon(pid_file = "/run/myapp.pid")]
//! fn main() -> std::io::Result<()> {
//!     let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
//!     actix_web::rt::System::new().block_on(async move {
//!         let server = HttpServer::new(|| {
//!             App::new()
//!                 .wrap(seamless::actix::CloseOnShutdown)
//!                 .route("/", web::get().to(|| async { "hello\n" }))
//!         })
//!         .disable_signals()
//!         .listen(listener)?
//!         .run();
//!         seamless::started();
//!         seamless::actix::serve(server).await
//!     })
//! }
//! ```
//!
//! # Why not `stop(true)` alone
//!
//! actix's graceful stop closes at once every HTTP/1.1 connection with no
//! request in progress, including one whose next request is already on
//! the wire, and a connection accepted but not yet read: the client reads
//! end-of-file or a reset. Measured with `examples/actix.rs` under
//! daemontools, 20 restarts under wrk (4 keep-alive connections), 2
//! keep-alive clients, and new-connection and slow-request loops on a
//! 2-core machine: `stop(true)` when the shutdown fires failed 146
//! requests (every restart failed some); this stop, none.

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::ConnectionType;

/// How long [`serve`] keeps serving, once the shutdown began, before it
/// closes the connections left; see [`Serve::idle_linger`].
pub const DEFAULT_IDLE_LINGER: Duration = Duration::from_secs(1);

/// How long the stop may take when neither
/// [`drain_timeout`](Serve::drain_timeout) nor the daemon's
/// `shutdown_timeout` says.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Awaits `server` (from `HttpServer::run`) and stops it politely when
/// [`seamless::shutdown()`](crate::shutdown()) fires (see the [module
/// documentation](self)). Await the returned [`Serve`], after setting its
/// knobs if need be. It needs no runtime of its own: actix's `System` and
/// `#[tokio::main]` both do.
///
/// ```no_run
/// # async fn f(server: actix_web::dev::Server) -> std::io::Result<()> {
/// seamless::actix::serve(server)
///     .idle_linger(std::time::Duration::from_millis(500))
///     .await
/// # }
/// ```
pub fn serve(server: Server) -> Serve {
    Serve {
        server,
        idle_linger: DEFAULT_IDLE_LINGER,
        drain_timeout: None,
    }
}

/// An actix-web server being awaited; see [`serve`].
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    server: Server,
    idle_linger: Duration,
    drain_timeout: Option<Duration>,
}

impl Serve {
    /// How long the server goes on serving, without accepting, once the
    /// shutdown began, so that every busy connection gets a response
    /// marked `Connection: close` ([`CloseOnShutdown`]) before actix's
    /// graceful stop closes the idle ones. Default: [`DEFAULT_IDLE_LINGER`].
    ///
    /// ```no_run
    /// # fn f(s: seamless::actix::Serve) {
    /// let s = s.idle_linger(std::time::Duration::from_millis(200));
    /// # drop(s);
    /// # }
    /// ```
    pub fn idle_linger(mut self, linger: Duration) -> Self {
        self.idle_linger = linger;
        self
    }

    /// How long the stop may take, from the start of the shutdown; past
    /// it, actix's forced stop drops the connections left. Default: the
    /// daemon's `shutdown_timeout` less a tenth of it (at most a second)
    /// when one is set, so that `main` returns before it; else
    /// [`DEFAULT_DRAIN_TIMEOUT`]. actix's own `shutdown_timeout` (30 s
    /// unless set) bounds its graceful stop too.
    ///
    /// ```no_run
    /// # fn f(s: seamless::actix::Serve) {
    /// let s = s.drain_timeout(std::time::Duration::from_secs(10));
    /// # drop(s);
    /// # }
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }
}

/// When a stop that began at `began` must be over.
fn deadline(drain_timeout: Option<Duration>, began: Instant) -> Instant {
    if let Some(timeout) = drain_timeout {
        return began + timeout;
    }
    if let Some(limit) = crate::shutdown::deadline() {
        let margin = (limit.saturating_duration_since(began) / 10).min(Duration::from_secs(1));
        return limit.checked_sub(margin).unwrap_or(limit).max(began);
    }
    began + DEFAULT_DRAIN_TIMEOUT
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("idle_linger", &self.idle_linger)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let Serve {
            mut server,
            idle_linger,
            drain_timeout,
        } = self;
        let handle = server.handle();
        let stop = async move {
            crate::shutdown::shutdown().await;
            let began = Instant::now();
            let deadline = deadline(drain_timeout, began);
            // Nothing more is accepted here; the next generation accepts
            // from the same queue.
            handle.pause().await;
            let linger = idle_linger.min(deadline.saturating_duration_since(began));
            actix_web::rt::time::sleep(linger).await;
            let left = deadline.saturating_duration_since(Instant::now());
            if actix_web::rt::time::timeout(left, handle.stop(true))
                .await
                .is_err()
            {
                handle.stop(false).await;
            }
        };
        let mut stop = Some(Box::pin(stop));
        // The stop runs inside this future rather than in a task: no
        // spawn, so no assumption about the runtime (actix's `System`
        // spawns on a local set, tokio's `main` on its own).
        Box::pin(std::future::poll_fn(move |cx| {
            if let Poll::Ready(result) = Pin::new(&mut server).poll(cx) {
                return Poll::Ready(result);
            }
            if let Some(s) = &mut stop {
                if s.as_mut().poll(cx).is_ready() {
                    stop = None;
                    // The server resolves now that its workers stopped.
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending
        }))
    }
}

/// Middleware (`App::wrap`) that marks every response finished after
/// the shutdown began `Connection: close`, so that actix closes the
/// connection once the response is written and the client's next request
/// goes to a new connection, to the next generation. See the [module
/// documentation](self).
///
/// ```no_run
/// let app = actix_web::App::new().wrap(seamless::actix::CloseOnShutdown);
/// # drop(app);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseOnShutdown;

impl<S, B> Transform<S, ServiceRequest> for CloseOnShutdown
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = CloseOnShutdownService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(CloseOnShutdownService { service }))
    }
}

/// The service [`CloseOnShutdown`] wraps around the application.
#[derive(Debug)]
pub struct CloseOnShutdownService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for CloseOnShutdownService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = CloseOnShutdownFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        CloseOnShutdownFuture {
            response: self.service.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response of the application, marked `Connection: close` if it is
    /// ready after the shutdown began.
    #[derive(Debug)]
    pub struct CloseOnShutdownFuture<F> {
        #[pin]
        response: F,
    }
}

impl<F, B> Future for CloseOnShutdownFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut response = std::task::ready!(self.project().response.poll(cx))?;
        // Read when the response is ready, not when the request came: a
        // slow request begun before the shutdown ends after it.
        if crate::shutdown::shutdown().is_triggered() {
            response
                .response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_drain_timeout_when_set() {
        let began = Instant::now();
        let d = Duration::from_secs(7);
        assert_eq!(deadline(Some(d), began), began + d);
    }

    #[test]
    fn outside_a_daemon_the_deadline_is_the_default() {
        let began = Instant::now();
        assert_eq!(deadline(None, began), began + DEFAULT_DRAIN_TIMEOUT);
    }
}

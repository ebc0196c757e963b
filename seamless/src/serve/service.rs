//! The service wrapper: counts each request from its call to the end of its
//! response body, and marks HTTP/1 responses given during the drain with
//! `Connection: close`. A request touches only its own connection's
//! [`Track`], never the server's shared state.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::hyper::body::{Body, Frame, Incoming, SizeHint};
use ::hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use ::hyper::{Method, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;

use super::track::Track;
use super::GoingAway;

/// The user's service, seen through the drain.
pub(crate) struct DrainService<S> {
    inner: S,
    track: Arc<Track>,
    /// With `Upgrades::GoAway`: given to each upgrade request.
    going_away: Option<GoingAway>,
}

impl<S> DrainService<S> {
    pub(crate) fn new(
        inner: S,
        track: Arc<Track>,
        going_away: Option<GoingAway>,
    ) -> DrainService<S> {
        DrainService {
            inner,
            track,
            going_away,
        }
    }
}

/// A request in flight; dropping it ends the request for the drain.
struct InFlight(Arc<Track>);

impl InFlight {
    fn new(track: &Arc<Track>) -> InFlight {
        track.request_began();
        InFlight(track.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<S, B> ::hyper::service::Service<Request<Incoming>> for DrainService<S>
where
    S: ::hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = DrainFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(going_away) = &self.going_away {
            // An upgrade (HTTP/1.1) or an extended CONNECT (HTTP/2, RFC
            // 8441): the connection may become the application's.
            if request.method() == Method::CONNECT || request.headers().contains_key(UPGRADE) {
                request.extensions_mut().insert(going_away.clone());
            }
        }
        if request.version() >= Version::HTTP_2 {
            // HTTP/2 drains by GOAWAY, which hyper applies to the streams
            // itself: nothing to count, nothing to mark. Streams run on any
            // worker, so every shared write saved here is a cache line
            // that stops moving between cores.
            if !self.track.is_h2() {
                self.track.mark_h2();
            }
            return DrainFuture {
                inner: self.inner.call(request),
                in_flight: None,
                may_close: false,
            };
        }
        // A tunnel's answer must not be turned into a close.
        let may_close = request.method() != Method::CONNECT;
        let in_flight = InFlight::new(&self.track);
        DrainFuture {
            inner: self.inner.call(request),
            in_flight: Some(in_flight),
            may_close,
        }
    }
}

pin_project! {
    /// The future of a [`DrainService`] call.
    pub(crate) struct DrainFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        // An HTTP/1 answer that may carry `Connection: close`.
        may_close: bool,
    }
}

impl<F, B, E> Future for DrainFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.in_flight.take();
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(response)) => response,
        };
        let in_flight = this.in_flight.take();
        // HTTP/1 only: HTTP/2 streams have nothing in flight here.
        if let Some(InFlight(track)) = &in_flight {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                track.mark_upgraded();
            } else if *this.may_close && track.is_draining() {
                // Rule 2: hyper closes the connection once this is
                // written, and the client knows not to send on it again.
                // The flag is the connection's own, set by its driver
                // (the task polling this future) when it saw the shutdown
                // begin.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, in_flight })))
    }
}

pin_project! {
    /// A response body that keeps its request in flight, for the drain,
    /// until it is finished or dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = frame {
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! A gRPC client for load (feature `grpc`): tonic's [`Grpc`] client over
//! one hyper HTTP/2 client connection, with the rule that tells a call
//! the server never processed (so that it may be sent again) from a
//! failure.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::client::Grpc;
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's HTTP/2 client connection as the service tonic's client sends
/// its requests through; one TCP connection, opened by [`connect`].
#[derive(Clone)]
pub struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

/// A request hyper gave back unsent: its connection closed (after a
/// GOAWAY) before the request was written.
#[derive(Debug)]
struct Unsent(hyper::Error);

impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "never sent: {}", self.0)
    }
}

impl std::error::Error for Unsent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl tower_service::Service<hyper::Request<tonic::body::Body>> for H2 {
    type Response = hyper::Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: hyper::Request<tonic::body::Body>) -> Self::Future {
        let sent = self.0.try_send_request(request);
        Box::pin(async move {
            sent.await.map_err(|e| match e.message() {
                Some(_) => Unsent(e.into_error()).into(),
                None => e.into_error().into(),
            })
        })
    }
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connection.
    Tcp(std::io::Error),
    /// The HTTP/2 handshake.
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "connect: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A gRPC client on a new HTTP/2 connection (prior knowledge, no delay)
/// to `127.0.0.1:port`; the connection is driven by a task of the
/// current tokio runtime.
pub async fn connect(port: u16) -> Result<Grpc<H2>, ConnectError> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(ConnectError::Tcp)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
    tokio::spawn(connection);
    let origin = format!("http://127.0.0.1:{port}")
        .parse()
        .expect("an origin");
    Ok(Grpc::with_origin(H2(sender), origin))
}

/// Whether the server provably did not process the call that failed with
/// `status`: hyper never sent it, or the HTTP/2 error under it says so
/// ([`crate::http2::unprocessed`]: a stream refused, or failed by the
/// server's GOAWAY).
pub fn unprocessed(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<Unsent>() {
            return true;
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            return crate::http2::unprocessed(e);
        }
        source = e.source();
    }
    false
}

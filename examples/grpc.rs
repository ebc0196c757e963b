//! A tonic gRPC service, unary and server-streaming, served by
//! `seamless::hyper::serve` on the listener from `seamless::net::tcp`.
//! gRPC is HTTP/2, so the drain is the HTTP/2 one: a GOAWAY in two steps,
//! every call in flight (a stream included) finished on this generation,
//! new calls on a new connection, to the next one.
//!
//! No protoc: the messages (`support/hello.rs`) are written with prost's
//! derive, and the service with tonic's server API, as tonic's code
//! generator would write them.
//!
//! `delay_ms` plays the part of the other examples' `?delay=MS`; each
//! answer names the pid that served it.
//!
//! ```text
//! cargo run --example grpc -- 127.0.0.1:50051 /tmp/grpc.pid
//! # hello.proto as written in support/hello.rs
//! grpcurl -plaintext -proto hello.proto -d '{"name": "you"}' 127.0.0.1:50051 hello.Greeter/SayHello
//! grpcurl -plaintext -proto hello.proto -d '{"count": 20, "interval_ms": 100}' 127.0.0.1:50051 hello.Greeter/Count
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hyper::body::Incoming;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

#[path = "support/hello.rs"]
mod hello;
use hello::{CountRequest, HelloReply, HelloRequest, Tick};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type TickStream = tokio_stream::wrappers::ReceiverStream<Result<Tick, Status>>;

/// `SayHello`: waits `delay_ms` (at most a minute), answers with our pid.
struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        Box::pin(async move {
            let request = request.into_inner();
            let delay = Duration::from_millis(request.delay_ms.min(60_000));
            tokio::time::sleep(delay).await;
            Ok(Response::new(HelloReply {
                message: format!("Hello {}", request.name),
                pid: std::process::id(),
            }))
        })
    }
}

/// `Count`: `count` ticks (at most 10,000), `interval_ms` apart (at most
/// a second), each naming our pid.
struct Count;

impl ServerStreamingService<CountRequest> for Count {
    type Response = Tick;
    type ResponseStream = TickStream;
    type Future = BoxFuture<Result<Response<TickStream>, Status>>;

    fn call(&mut self, request: Request<CountRequest>) -> Self::Future {
        Box::pin(async move {
            let request = request.into_inner();
            let interval = Duration::from_millis(request.interval_ms.min(1000));
            let (ticks, stream) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for n in 1..=request.count.min(10_000) {
                    tokio::time::sleep(interval).await;
                    let tick = Tick {
                        n,
                        pid: std::process::id(),
                    };
                    if ticks.send(Ok(tick)).await.is_err() {
                        return; // the client went away
                    }
                }
            });
            Ok(Response::new(TickStream::new(stream)))
        })
    }
}

/// The `hello.Greeter` service as a hyper service: what tonic's generated
/// `GreeterServer` does, routing on the path.
#[derive(Clone, Copy)]
struct Greeter;

impl hyper::service::Service<hyper::Request<Incoming>> for Greeter {
    type Response = hyper::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        Box::pin(async move {
            Ok(match request.uri().path() {
                hello::SAY_HELLO => {
                    let mut grpc = Grpc::new(ProstCodec::default());
                    grpc.unary(SayHello, request).await
                }
                hello::COUNT => {
                    let mut grpc = Grpc::new(ProstCodec::default());
                    grpc.server_streaming(Count, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/grpc.pid".into()),
    shutdown_timeout = "60s",
)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let listener = seamless::net::tcp("web", addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    seamless::started();
    seamless::hyper::serve(listener, Greeter).await
}

//! The comparison server of `--servers grpc`: the gRPC example's service
//! (`examples/grpc.rs`: `SayHello`, unary, and `Count`, server-streaming,
//! the messages of `examples/support/hello.rs`) served by hyper-util's
//! HTTP/2 connection in a plain accept loop, without seamless. TERM stops
//! the accept loop and begins hyper's graceful shutdown of each
//! connection (a GOAWAY; the calls in flight finish), as most services
//! do.
//!
//! ```text
//! cargo run --release -p seamless-bench --bin plain-grpc -- 127.0.0.1:50051
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

#[path = "../../../examples/support/hello.rs"]
mod hello;
use hello::{CountRequest, HelloReply, HelloRequest, Tick};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type TickStream = tokio_stream::wrappers::ReceiverStream<Result<Tick, Status>>;

/// `SayHello`, as the example's.
struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        Box::pin(async move {
            let request = request.into_inner();
            tokio::time::sleep(Duration::from_millis(request.delay_ms.min(60_000))).await;
            Ok(Response::new(HelloReply {
                message: format!("Hello {}", request.name),
                pid: std::process::id(),
            }))
        })
    }
}

/// `Count`, as the example's.
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
                        return;
                    }
                }
            });
            Ok(Response::new(TickStream::new(stream)))
        })
    }
}

/// The `hello.Greeter` service, routed on the path as the example's.
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

fn main() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()).http2_only());
        // Every connection's task holds a receiver: `closed()` once all
        // are done.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = term.recv() => break,
            };
            let builder = builder.clone();
            let mut stopping = stopping.clone();
            tokio::spawn(async move {
                let connection = builder.serve_connection(TokioIo::new(stream), Greeter);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = stopping.changed() => {}
                }
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        drop(listener);
        drop(stopping);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(60), stop.closed()).await;
        Ok(())
    })
}

//! The load tools that seamless's integration tests and its benchmark
//! share, so that both read the same figures the same way: wrk's summary
//! ([`wrk`]), h2load's summary and per-request log ([`h2load`]), a
//! minimal HTTP/1.1 response reader ([`http1`]), and an HTTP/2 load client
//! that sends a request again only when the server provably did not
//! process it ([`http2`]), and with the feature `grpc` a gRPC client that
//! follows the same rule ([`grpc`]).
//!
//! Not published: it exists for this workspace's tests and benchmark.

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod h2load;
pub mod http1;
pub mod http2;
pub mod wrk;

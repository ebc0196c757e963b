//! The messages of `hello.proto`, written with prost's derive (no
//! protoc), shared by the gRPC example and its test (which includes this
//! file by path):
//!
//! ```text
//! syntax = "proto3";
//! package hello;
//! service Greeter {
//!   rpc SayHello (HelloRequest) returns (HelloReply);
//!   rpc Count (CountRequest) returns (stream Tick);
//! }
//! message HelloRequest { string name = 1; uint64 delay_ms = 2; }
//! message HelloReply { string message = 1; uint32 pid = 2; }
//! message CountRequest { uint32 count = 1; uint64 interval_ms = 2; }
//! message Tick { uint32 n = 1; uint32 pid = 2; }
//! ```

#![allow(dead_code)]

/// The path of `SayHello`.
pub(crate) const SAY_HELLO: &str = "/hello.Greeter/SayHello";
/// The path of `Count`.
pub(crate) const COUNT: &str = "/hello.Greeter/Count";

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloRequest {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(uint64, tag = "2")]
    pub(crate) delay_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloReply {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
    #[prost(uint32, tag = "2")]
    pub(crate) pid: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub(crate) count: u32,
    #[prost(uint64, tag = "2")]
    pub(crate) interval_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tick {
    #[prost(uint32, tag = "1")]
    pub(crate) n: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) pid: u32,
}

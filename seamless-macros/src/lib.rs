//! Attribute macros of the `seamless` crate; depend on `seamless`, which
//! re-exports them. This crate only parses and validates: everything it
//! emits is a call into `::seamless::__private` (or the path given with
//! `crate = ...`), where the logic lives.

mod args;
mod daemon;
mod duration;
mod handler;

use proc_macro::TokenStream;

/// Rewrites `fn main` so that the launcher split runs before any user
/// code. See the `seamless` crate for the arguments.
#[proc_macro_attribute]
pub fn daemon(args: TokenStream, item: TokenStream) -> TokenStream {
    daemon::expand(args.into(), item.into()).into()
}

/// Registers a function to run at stage 3, the graceful shutdown.
#[proc_macro_attribute]
pub fn on_shutdown(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(handler::Stage::Shutdown, args.into(), item.into()).into()
}

/// Registers a function to run at stage 1, when a restart was requested.
#[proc_macro_attribute]
pub fn on_shutdown_request(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(handler::Stage::ShutdownRequest, args.into(), item.into()).into()
}

/// Registers a function the launcher runs right after it started the
/// daemon.
#[proc_macro_attribute]
pub fn on_child_launch(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(handler::Stage::ChildLaunch, args.into(), item.into()).into()
}

//! Zero-downtime restarts for servers run under a service supervisor.
//! (crate docs are written in full later)

mod builder;
mod control;
mod daemon;
mod handlers;
mod handover;
mod launcher;
pub mod net;
mod notify;
mod pidfile;
mod procfs;
mod report;
mod runtime;
mod shutdown;
mod signals;

pub use builder::{Builder, OnPidFileError, PidFilePath, Session};
pub use daemon::started;
pub use handlers::{on_shutdown, on_shutdown_request};
pub use seamless_macros::{daemon, on_child_launch, on_shutdown, on_shutdown_request};
pub use shutdown::{shutdown, wait, Shutdown};

#[doc(hidden)]
pub mod __private;

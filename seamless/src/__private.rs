//! Not public API: what the attribute macros expand to. Anything here may
//! change in any release.

pub use crate::handlers::{Handler, ON_CHILD_LAUNCH, ON_SHUTDOWN, ON_SHUTDOWN_REQUEST};
pub use libc;
pub use linkme;

use crate::builder::Builder;
use crate::config::PidFilePath;
use crate::daemon::Session;

/// `pid_file = EXPR` of `#[seamless::daemon]`.
pub fn builder(pid_file: impl Into<PidFilePath>) -> Builder {
    Builder::new(pid_file)
}

/// The launcher split, first thing in the generated `main`.
pub fn enter(builder: Builder) -> Session {
    builder.start()
}

/// After the user's `main` body: wait for the shutdown handlers, then hand
/// back what the body returned.
pub fn leave<T>(session: Session, result: T) -> T {
    session.finish();
    result
}

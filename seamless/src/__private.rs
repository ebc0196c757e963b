//! Not public API: what the attribute macros expand to, and what the
//! `seamless` tool's tests build. Anything here may change in any release.

pub use crate::handlers::{Handler, ON_CHILD_LAUNCH, ON_SHUTDOWN, ON_SHUTDOWN_REQUEST};
pub use libc;
pub use linkme;

use std::time::{Duration, SystemTime};

use crate::admin::{Generation, Outcome, Pid, Role, Socket, Successor};
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

/// A generation's status made up field by field (outside the crate,
/// `#[non_exhaustive]` keeps `Generation { .. }` from being written), for
/// the `seamless` tool's tests of what it prints.
#[allow(clippy::too_many_arguments)]
pub fn generation(
    pid: u32,
    role: Role,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    launcher: Option<u32>,
    handover_timeout: Duration,
    probation: Option<Duration>,
    sockets: Vec<(String, String)>,
    successors: Vec<(u32, Outcome, Option<Duration>)>,
) -> Generation {
    Generation {
        pid: Pid::from(pid),
        role,
        since,
        until,
        launcher: launcher.map(Pid::from),
        handover_timeout,
        probation,
        sockets: sockets
            .into_iter()
            .map(|(name, address)| Socket { name, address })
            .collect(),
        successors: successors
            .into_iter()
            .map(|(pid, outcome, into_probation)| Successor {
                pid: Pid::from(pid),
                outcome,
                into_probation,
            })
            .collect(),
    }
}

//! The process-wide state of seamless: which role this process plays and the
//! configuration it was started with. Set once by `Builder::start`.

use std::path::Path;
use std::sync::OnceLock;

/// The part this process plays in the restart protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Seamless is disabled (no pid file): a plain process.
    Plain,
    /// The daemon: child of a launcher, runs the user's code.
    Daemon,
}

pub(crate) struct Runtime {
    pub(crate) pid_file: Option<std::path::PathBuf>,
    /// Pid of the launcher that started this daemon.
    pub(crate) launcher_pid: Option<i32>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

pub(crate) fn set(runtime: Runtime) -> bool {
    RUNTIME.set(runtime).is_ok()
}

pub(crate) fn get() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// The pid file of the running daemon, if seamless is active.
pub(crate) fn pid_file() -> Option<&'static Path> {
    get().and_then(|r| r.pid_file.as_deref())
}

/// The pid of this daemon's launcher, if this process is a daemon.
pub(crate) fn launcher_pid() -> Option<i32> {
    get().and_then(|r| r.launcher_pid)
}

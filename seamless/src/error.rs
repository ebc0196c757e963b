//! The start-up error: what can keep the launcher split from handing
//! control to user code.
//!
//! [`Builder::try_start`](crate::Builder::try_start) returns it;
//! [`Builder::start`](crate::Builder::start) reports it once and exits
//! with status 1. Nothing else in the crate exits the process on an error,
//! but the daemon's `shutdown_timeout` (documented there).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why seamless could not start.
///
/// ```no_run
/// match seamless::Builder::new("/run/app.pid").try_start() {
///     Ok(session) => { /* the daemon (or a plain process): serve */ drop(session) }
///     Err(e) => {
///         eprintln!("cannot start: {e}");
///         std::process::exit(2);
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The pid file's path is empty. To run without seamless, pass
    /// [`PidFilePath::Disabled`](crate::PidFilePath::Disabled) (or `None`).
    EmptyPidFilePath,
    /// The pid file's location cannot be used (missing directory, no
    /// permission, read-only file system), and
    /// [`OnPidFileError::Exit`](crate::OnPidFileError::Exit) is in force.
    PidFile {
        /// The pid file's path.
        path: PathBuf,
        /// What was being done, e.g. `cannot create lock file ...`.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The launcher could not start the daemon.
    Spawn(io::Error),
    /// This process is a daemon whose launcher died before the daemon got
    /// this far; it must not turn into a launcher itself.
    LauncherGone {
        /// The launcher's pid, as passed to the daemon.
        launcher: u32,
    },
    /// The daemon's end of the control channel to its launcher is unusable.
    ControlChannel(io::Error),
    /// Signal handlers, or the pipe they write into, could not be set up.
    Signals(io::Error),
    /// seamless's control thread could not be started.
    Thread(io::Error),
    /// The pipe that wakes the control thread (when the program calls
    /// [`started`](crate::started), or `seamless restart` asks for a
    /// restart) could not be made (the process is out of file
    /// descriptors).
    WakePipe(io::Error),
    /// The fd that [`Shutdown`](crate::Shutdown) makes readable could not
    /// be made (the process is out of file descriptors).
    ShutdownFd(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyPidFilePath => f.write_str(
                "the pid file's path is empty; to run without seamless, pass PidFilePath::Disabled (or None)",
            ),
            Error::PidFile { path, what, source } => {
                write!(f, "pid file {}: {what}: {source}", path.display())
            }
            Error::Spawn(e) => write!(f, "cannot start the daemon: {e}"),
            Error::LauncherGone { launcher } => {
                write!(f, "launcher {launcher} is gone before its daemon started")
            }
            Error::ControlChannel(e) => {
                write!(f, "cannot use the control channel from the launcher: {e}")
            }
            Error::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Error::Thread(e) => write!(f, "cannot start the seamless control thread: {e}"),
            Error::WakePipe(e) => write!(f, "cannot make the control thread's wake-up pipe: {e}"),
            Error::ShutdownFd(e) => write!(f, "cannot make the shutdown's fd: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::PidFile { source: e, .. }
            | Error::Spawn(e)
            | Error::ControlChannel(e)
            | Error::Signals(e)
            | Error::Thread(e)
            | Error::WakePipe(e)
            | Error::ShutdownFd(e) => Some(e),
            Error::EmptyPidFilePath | Error::LauncherGone { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = Error::PidFile {
            path: "/nope/a.pid".into(),
            what: "cannot create lock file /nope/a.pid.lock".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert!(e
            .to_string()
            .starts_with("pid file /nope/a.pid: cannot create lock file"));
        assert!(std::error::Error::source(&e).is_some());
        let gone = Error::LauncherGone { launcher: 42 };
        assert_eq!(
            gone.to_string(),
            "launcher 42 is gone before its daemon started"
        );
        assert!(std::error::Error::source(&gone).is_none());
        assert!(Error::EmptyPidFilePath
            .to_string()
            .contains("pass PidFilePath::Disabled (or None)"));
    }
}

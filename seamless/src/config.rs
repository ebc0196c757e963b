//! The settings the launcher and the daemon share, and the values users
//! build them from: [`PidFilePath`], [`OnPidFileError`], [`Signal`].
//!
//! Plain data: this module imports no other module of the crate.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A signal, for [`Builder::parent_signal`](crate::Builder::parent_signal)
/// (nix's type, re-exported).
pub use nix::sys::signal::Signal;

/// Where the pid file lives, or nothing to disable seamless.
///
/// Built from `&str`, `String`, `&Path`, `PathBuf`, `OsString` and an
/// `Option` of any of these. An empty path or `None` disables seamless: the
/// program runs as a plain process (no launcher, no pid file, no restart),
/// as in the original; TERM and Ctrl-C still start a graceful shutdown.
///
/// ```
/// use seamless::PidFilePath;
///
/// assert!(PidFilePath::from("/run/app.pid").path().is_some());
/// assert!(PidFilePath::from("").path().is_none());
/// assert!(PidFilePath::from(None::<String>).path().is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidFilePath(Option<PathBuf>);

impl PidFilePath {
    fn from_path(path: PathBuf) -> Self {
        PidFilePath((!path.as_os_str().is_empty()).then_some(path))
    }

    /// The path, unless seamless is disabled.
    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }

    pub(crate) fn into_path(self) -> Option<PathBuf> {
        self.0
    }
}

macro_rules! pid_file_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PidFilePath {
            fn from(value: $t) -> Self {
                PidFilePath::from_path(PathBuf::from(value))
            }
        }
    )*};
}
pid_file_from!(&str, String, &String, &Path, PathBuf, &PathBuf, &OsStr, OsString);

impl<T: Into<PidFilePath>> From<Option<T>> for PidFilePath {
    fn from(value: Option<T>) -> Self {
        value.map(Into::into).unwrap_or_default()
    }
}

/// What to do when the pid file's location cannot be used at start-up
/// (missing directory, no permission, read-only file system).
///
/// ```
/// let builder = seamless::Builder::new("/run/app.pid")
///     .on_pid_file_error(seamless::OnPidFileError::RunPlain);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnPidFileError {
    /// [`Builder::start`](crate::Builder::start) reports the path and the
    /// OS error and exits with status 1 before any user code runs
    /// ([`Builder::try_start`](crate::Builder::try_start) returns
    /// [`Error::PidFile`](crate::Error::PidFile)). The default.
    #[default]
    Exit,
    /// Report it, then run as a plain process without seamless.
    RunPlain,
}

/// The settings both processes share.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) prepare_timeout: Duration,
    pub(crate) handover_timeout: Duration,
    pub(crate) shutdown_timeout: Option<Duration>,
    /// How long a new generation serves beside the previous one before it
    /// sends it TERM; `None`: at `started()`.
    pub(crate) probation: Option<Duration>,
    pub(crate) parent_signal: Option<Signal>,
    pub(crate) on_pid_file_error: OnPidFileError,
}

impl Config {
    /// The original's defaults: both timeouts 10 s, no bound on the
    /// shutdown handlers, no parent signal.
    pub(crate) fn new(pid_file: PidFilePath) -> Config {
        Config {
            pid_file: pid_file.into_path(),
            prepare_timeout: Duration::from_secs(10),
            handover_timeout: Duration::from_secs(10),
            shutdown_timeout: None,
            probation: None,
            parent_signal: None,
            on_pid_file_error: OnPidFileError::Exit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_paths() {
        assert_eq!(PidFilePath::from("").path(), None);
        assert_eq!(PidFilePath::from(None::<&str>).path(), None);
        assert_eq!(PidFilePath::from(Some(String::new())).path(), None);
        assert_eq!(
            PidFilePath::from(Some(PathBuf::from("/run/a.pid"))).path(),
            Some(Path::new("/run/a.pid"))
        );
        assert_eq!(
            PidFilePath::from(OsString::from("x.pid")).path(),
            Some(Path::new("x.pid"))
        );
    }

    #[test]
    fn defaults_are_the_originals() {
        let config = Config::new(PidFilePath::from("/run/a.pid"));
        assert_eq!(config.prepare_timeout, Duration::from_secs(10));
        assert_eq!(config.handover_timeout, Duration::from_secs(10));
        assert_eq!(config.shutdown_timeout, None);
        assert_eq!(config.parent_signal, None);
        assert_eq!(config.on_pid_file_error, OnPidFileError::Exit);
    }
}

//! The builder: everything `#[seamless::daemon]` does, as a plain API.
//!
//! [`Builder::start`] is the launcher split. In the process the supervisor
//! started it becomes the launcher and never returns; in the daemon (and in
//! a plain process, when seamless is disabled) it returns a [`Session`],
//! whose end waits for the shutdown handlers.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{control, daemon, launcher, pidfile, report};

/// Where the pid file lives, or nothing to disable seamless.
///
/// Built from `&str`, `String`, `&Path`, `PathBuf`, `OsString` and an
/// `Option` of any of these. An empty path or `None` disables seamless: the
/// program runs as a plain process (no launcher, no pid file, no restart),
/// as in the original; TERM and Ctrl-C still start a graceful shutdown.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnPidFileError {
    /// Report the path and the OS error, exit with status 1 before any user
    /// code runs. The default.
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
    pub(crate) parent_signal: Option<i32>,
    pub(crate) on_pid_file_error: OnPidFileError,
}

/// Configures seamless and performs the launcher split, for programs that
/// do not use the `#[seamless::daemon]` attribute.
///
/// ```no_run
/// use std::time::Duration;
///
/// fn main() {
///     let session = seamless::Builder::new("/tmp/myapp.pid")
///         .handover_timeout(Duration::from_secs(30))
///         .start(); // the launcher never returns from here
///
///     let listener = seamless::net::tcp("web", "127.0.0.1:8080").unwrap();
///     seamless::started();
///     # drop(listener);
///     seamless::shutdown().wait();
///     session.finish(); // waits for the shutdown handlers
/// }
/// ```
#[must_use = "call .start() to perform the launcher split"]
pub struct Builder {
    config: Config,
    child_launch: Vec<Box<dyn FnOnce() + Send + 'static>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Starts a configuration with the original's defaults: both timeouts
    /// 10 s, no bound on the shutdown handlers, no parent signal.
    pub fn new(pid_file: impl Into<PidFilePath>) -> Builder {
        Builder {
            config: Config {
                pid_file: pid_file.into().0,
                prepare_timeout: Duration::from_secs(10),
                handover_timeout: Duration::from_secs(10),
                shutdown_timeout: None,
                parent_signal: None,
                on_pid_file_error: OnPidFileError::Exit,
            },
            child_launch: Vec::new(),
        }
    }

    /// How long the launcher waits for the daemon to finish stage 1 after a
    /// restart was requested before it sends it TERM instead (default 10 s).
    pub fn prepare_timeout(mut self, timeout: Duration) -> Builder {
        self.config.prepare_timeout = timeout;
        self
    }

    /// How long a detached old generation waits for the next one to call
    /// `started()` (and TERM it) before it shuts down anyway (default 10 s).
    pub fn handover_timeout(mut self, timeout: Duration) -> Builder {
        self.config.handover_timeout = timeout;
        self
    }

    /// Upper bound from the start of the graceful shutdown to the end of the
    /// process: past it, a log line names the handler still running and
    /// the process exits with status 1 (default: no bound).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Builder {
        self.config.shutdown_timeout = Some(timeout);
        self
    }

    /// A signal the daemon sends its launcher after stage 1, in addition to
    /// the message on the control channel (the original's
    /// `SetParentTermSignal`). The launcher accepts it only when its daemon
    /// sent it with `kill()`, so the kernel's SIGCHLD for a child that
    /// stopped or died is never taken for it.
    pub fn parent_signal(mut self, signal: i32) -> Builder {
        self.config.parent_signal = Some(signal);
        self
    }

    /// What to do if the pid file's location is unusable (default: exit).
    pub fn on_pid_file_error(mut self, policy: OnPidFileError) -> Builder {
        self.config.on_pid_file_error = policy;
        self
    }

    /// A closure the launcher runs right after it started the daemon (after
    /// the functions marked `#[seamless::on_child_launch]`).
    pub fn on_child_launch(mut self, f: impl FnOnce() + Send + 'static) -> Builder {
        self.child_launch.push(Box::new(f));
        self
    }

    /// Performs the launcher split. Call it first thing in `main`, before
    /// any thread or async runtime exists.
    ///
    /// - In the process the supervisor started, this becomes the launcher:
    ///   it starts a copy of the executable as the daemon and never
    ///   returns; it exits with the daemon's status.
    /// - In the daemon, and when seamless is disabled, it returns the
    ///   [`Session`].
    ///
    /// # Panics
    ///
    /// If called more than once in a process.
    pub fn start(self) -> Session {
        let config = self.config;
        if let Some(value) = std::env::var_os(control::ENV_VAR) {
            // Removed so that a program this daemon runs is not mistaken for
            // a daemon. Single-threaded here: start() runs before user code.
            std::env::remove_var(control::ENV_VAR);
            match value.to_str().and_then(control::parse_env) {
                Some((launcher, fd)) => return daemon::start_daemon(config, launcher, fd),
                None => report::warning!(
                    "ignoring malformed {}={:?}; starting as a launcher",
                    control::ENV_VAR,
                    value
                ),
            }
        }
        let Some(path) = config.pid_file.clone() else {
            return daemon::start_plain(config);
        };
        if let Err(e) = pidfile::PidFile::open(&path) {
            match config.on_pid_file_error {
                OnPidFileError::Exit => {
                    report::error!("{e}; exiting");
                    std::process::exit(1);
                }
                OnPidFileError::RunPlain => {
                    report::warning!("{e}; running as a plain process without seamless");
                    return daemon::start_plain(config);
                }
            }
        }
        launcher::run(config, self.child_launch)
    }
}

/// The daemon's side of seamless, from the launcher split to the end of
/// `main`. Ending it ([`finish`](Session::finish), or dropping it) waits
/// for the shutdown handlers when a shutdown is under way, then removes
/// this generation from the pid file.
#[must_use = "keep the session until the end of main"]
#[derive(Debug)]
pub struct Session {
    pub(crate) finished: bool,
}

impl Session {
    /// Ends the session: see [`Session`].
    pub fn finish(mut self) {
        self.finished = true;
        daemon::finish();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            daemon::finish();
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
}

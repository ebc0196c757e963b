//! The builder: everything `#[seamless::daemon]` does, as a plain API.
//!
//! [`Builder::try_start`] is the launcher split. In the process the
//! supervisor started it becomes the launcher and never returns; in the
//! daemon (and in a plain process, when seamless is disabled) it returns a
//! [`Session`], whose end waits for the shutdown handlers.
//! [`Builder::start`] is the same, reporting a start-up error once and
//! exiting with status 1.

use std::time::Duration;

use crate::config::{Config, OnPidFileError, PidFilePath, Signal};
use crate::daemon::{self, ChannelEnd, Session};
use crate::error::Error;
use crate::{control, launcher, pidfile, report};

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
            config: Config::new(pid_file.into()),
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

    /// A probation for each new generation (default: none). A generation
    /// that calls `started()` serves beside the previous one for this long
    /// before it sends it TERM; should it exit in that time (for any reason
    /// but a TERM), the previous generation never stopped accepting and
    /// goes on serving, names itself in the pid file again, and waits for
    /// the supervisor's next generation as after stage 1. What it costs:
    /// two generations serve at once for its length, each with its own
    /// memory. A restart requested during a probation waits for it to end.
    /// `Duration::ZERO` turns it off.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let session = seamless::Builder::new("/tmp/app.pid")
    ///     .probation(Duration::from_secs(5))
    ///     .start();
    /// # drop(session);
    /// ```
    pub fn probation(mut self, length: Duration) -> Builder {
        self.config.probation = Some(length).filter(|l| !l.is_zero());
        self
    }

    /// A signal the daemon sends its launcher after stage 1, in addition to
    /// the message on the control channel (the original's
    /// `SetParentTermSignal`). The launcher accepts it only when its daemon
    /// sent it with `kill()`, so the kernel's SIGCHLD for a child that
    /// stopped or died is never taken for it.
    ///
    /// ```no_run
    /// let session = seamless::Builder::new("/tmp/app.pid")
    ///     .parent_signal(seamless::Signal::SIGUSR1)
    ///     .start();
    /// # drop(session);
    /// ```
    pub fn parent_signal(mut self, signal: Signal) -> Builder {
        self.config.parent_signal = Some(signal.to_nix());
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
    ///   it forks a copy of itself as the daemon and never returns; it
    ///   exits with the daemon's status. (It executes the program afresh
    ///   instead if it finds a thread it did not expect.)
    /// - In the daemon, and when seamless is disabled, it returns the
    ///   [`Session`].
    ///
    /// A start-up error is reported (through the `log` facade, or stderr
    /// without a logger) and the process exits with status 1 before any
    /// user code runs; [`try_start`](Builder::try_start) returns it instead.
    ///
    /// # Panics
    ///
    /// If called more than once in a process.
    pub fn start(self) -> Session {
        self.try_start().unwrap_or_else(|e| {
            report::error!("{e}; exiting");
            std::process::exit(1)
        })
    }

    /// [`start`](Builder::start), returning a start-up error instead of
    /// exiting: the pid file's path is empty, its location is unusable
    /// (with [`OnPidFileError::Exit`]), the daemon cannot be started, or this
    /// daemon's launcher is already gone (it must not become a launcher
    /// itself). See [`Error`].
    ///
    /// ```no_run
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let session = seamless::Builder::new("/tmp/app.pid").try_start()?;
    ///     seamless::started();
    ///     seamless::shutdown().wait();
    ///     session.finish();
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// If called more than once in a process.
    pub fn try_start(self) -> Result<Session, Error> {
        let mut config = self.config;
        if config
            .pid_file
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            // Before the launcher split, in every process: an executed
            // daemon refuses it as its launcher did.
            return Err(Error::EmptyPidFilePath);
        }
        // Relative to the directory the process started in, whatever the
        // program does with its working directory later.
        if let Some(path) = config.pid_file.take() {
            config.pid_file = Some(std::path::absolute(&path).unwrap_or(path));
        }
        if let Some(value) = std::env::var_os(control::ENV_VAR) {
            // Removed so that a program this daemon runs is not mistaken for
            // a daemon. Single-threaded here: start() runs before user code.
            std::env::remove_var(control::ENV_VAR);
            match value.to_str().and_then(control::parse_env) {
                Some((launcher, fd)) => {
                    return daemon::start_daemon(config, launcher, ChannelEnd::Inherited(fd))
                }
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
                OnPidFileError::RunPlain => {
                    report::warning!("{e}; running as a plain process without seamless");
                    return daemon::start_plain(config);
                }
                _ => return Err(e),
            }
        }
        // Returns only in the daemon forked from the launcher, which never
        // becomes a launcher itself.
        let forked = launcher::run(&config, self.child_launch)?;
        daemon::start_daemon(config, forked.launcher, ChannelEnd::Forked(forked.channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pid_file_path_is_refused_before_anything_is_done() {
        for empty in [
            PidFilePath::from(""),
            PidFilePath::from(Some(String::new())),
        ] {
            let refused = Builder::new(empty).try_start();
            assert!(matches!(refused, Err(Error::EmptyPidFilePath)));
        }
    }
}

//! The settings the launcher and the daemon share, and the values users
//! build them from: [`PidFilePath`], [`OnPidFileError`], [`Signal`].
//!
//! Plain data: this module imports no other module of the crate.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

macro_rules! signals {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A signal the daemon may send its launcher after stage 1, for
        /// [`Builder::parent_signal`](crate::Builder::parent_signal): the
        /// catchable signals that `#[seamless::daemon(parent_signal =
        /// ...)]` accepts, named as in C (the attribute also takes them
        /// without `SIG`).
        ///
        /// seamless's own type rather than a system crate's, so that this
        /// API does not change with that crate's major version.
        ///
        /// ```
        /// let session = seamless::Builder::new("/tmp/app.pid")
        ///     .parent_signal(seamless::Signal::SIGUSR1);
        /// # drop(session);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)] // as in C, and as the attribute names them
        #[non_exhaustive]
        pub enum Signal {
            $($(#[$doc])* $name,)*
        }

        impl Signal {
            /// Every variant, in declaration order.
            #[cfg(test)]
            const ALL: &'static [Signal] = &[$(Signal::$name,)*];

            /// nix's name for it, for the launcher's signal handling: a
            /// conversion kept inside the crate.
            pub(crate) fn to_nix(self) -> nix::sys::signal::Signal {
                match self {
                    $(Signal::$name => nix::sys::signal::Signal::$name,)*
                }
            }

            /// Its name, `SIGUSR1`.
            fn name(self) -> &'static str {
                match self {
                    $(Signal::$name => stringify!($name),)*
                }
            }
        }
    };
}

signals! {
    /// Hangup.
    SIGHUP,
    /// Interrupt (Ctrl-C).
    SIGINT,
    /// Quit (Ctrl-\\).
    SIGQUIT,
    /// User-defined signal 1.
    SIGUSR1,
    /// User-defined signal 2.
    SIGUSR2,
    /// Alarm clock.
    SIGALRM,
    /// Termination.
    SIGTERM,
    /// A child stopped or exited.
    SIGCHLD,
    /// Continue if stopped.
    SIGCONT,
    /// Window size change.
    SIGWINCH,
    /// Urgent data on a socket.
    SIGURG,
    /// I/O possible.
    SIGIO,
    /// Power failure.
    SIGPWR,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the pid file lives, or [`PidFilePath::Disabled`].
///
/// Built from `&str`, `String`, `&Path`, `PathBuf`, `OsString`, and from an
/// `Option` of any of these, where `None` is [`Disabled`](PidFilePath::Disabled).
///
/// An empty path does not disable seamless: it is a mistake (a variable
/// that was not set, say), and [`Builder::try_start`](crate::Builder::try_start)
/// returns [`Error::EmptyPidFilePath`](crate::Error::EmptyPidFilePath) for
/// it; `#[seamless::daemon(pid_file = "")]` does not compile.
///
/// ```
/// use seamless::PidFilePath;
///
/// assert_eq!(PidFilePath::from("/run/app.pid").path(), Some("/run/app.pid".as_ref()));
/// assert_eq!(PidFilePath::from(None::<String>), PidFilePath::Disabled);
/// // A path from the environment, seamless off when it is unset:
/// let pid_file = PidFilePath::from(std::env::var_os("APP_PID_FILE"));
/// # drop(pid_file);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PidFilePath {
    /// seamless runs: a launcher, this pid file, restarts. A relative path
    /// is taken from the directory the process started in.
    At(PathBuf),
    /// seamless is disabled: the program runs as a plain process (no
    /// launcher, no pid file, no restart), as in the original; TERM and
    /// Ctrl-C still start a graceful shutdown.
    Disabled,
}

impl PidFilePath {
    /// The path, unless seamless is disabled.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PidFilePath::At(path) => Some(path),
            PidFilePath::Disabled => None,
        }
    }
}

macro_rules! pid_file_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PidFilePath {
            fn from(value: $t) -> Self {
                PidFilePath::At(PathBuf::from(value))
            }
        }
    )*};
}
pid_file_from!(&str, String, &String, &Path, PathBuf, &PathBuf, &OsStr, OsString);

impl<T: Into<PidFilePath>> From<Option<T>> for PidFilePath {
    fn from(value: Option<T>) -> Self {
        value.map_or(PidFilePath::Disabled, Into::into)
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
    /// `None`: seamless is disabled. An empty path is refused by
    /// `Builder::try_start` before anything else.
    pub(crate) pid_file: Option<PathBuf>,
    pub(crate) prepare_timeout: Duration,
    pub(crate) handover_timeout: Duration,
    pub(crate) shutdown_timeout: Option<Duration>,
    /// How long a new generation serves beside the previous one before it
    /// sends it TERM; `None`: at `started()`.
    pub(crate) probation: Option<Duration>,
    /// nix's type: the launcher's signal handling speaks it.
    pub(crate) parent_signal: Option<nix::sys::signal::Signal>,
    pub(crate) on_pid_file_error: OnPidFileError,
}

impl Config {
    /// The original's defaults: both timeouts 10 s, no bound on the
    /// shutdown handlers, no parent signal.
    pub(crate) fn new(pid_file: PidFilePath) -> Config {
        Config {
            pid_file: match pid_file {
                PidFilePath::At(path) => Some(path),
                PidFilePath::Disabled => None,
            },
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
        assert_eq!(PidFilePath::from(None::<&str>), PidFilePath::Disabled);
        assert_eq!(PidFilePath::Disabled.path(), None);
        assert_eq!(
            PidFilePath::from(Some(PathBuf::from("/run/a.pid"))).path(),
            Some(Path::new("/run/a.pid"))
        );
        assert_eq!(
            PidFilePath::from(OsString::from("x.pid")).path(),
            Some(Path::new("x.pid"))
        );
        // Empty is a path (refused at start-up), not "disabled".
        assert_eq!(PidFilePath::from(""), PidFilePath::At(PathBuf::new()));
        assert_eq!(
            PidFilePath::from(Some(String::new())),
            PidFilePath::At(PathBuf::new())
        );
    }

    #[test]
    fn signals_are_named_as_nix_names_them() {
        assert_eq!(Signal::ALL.len(), 13);
        for signal in Signal::ALL {
            assert_eq!(signal.to_string(), signal.to_nix().as_str());
        }
    }

    #[test]
    fn defaults_are_the_originals() {
        let config = Config::new("/run/a.pid".into());
        assert_eq!(config.prepare_timeout, Duration::from_secs(10));
        assert_eq!(config.handover_timeout, Duration::from_secs(10));
        assert_eq!(config.shutdown_timeout, None);
        assert_eq!(config.parent_signal, None);
        assert_eq!(config.on_pid_file_error, OnPidFileError::Exit);
    }
}

//! The generations of a service seen from outside, as the `seamless`
//! command-line tool sees them: their status, and a restart request.
//!
//! Every generation with a pid file keeps an endpoint next to it from
//! start-up to exit (`<pid file>.<pid>.ctl`, mode 0600, peer uid checked
//! on both sides). [`generations`] asks each of them for its status;
//! [`request_restart`] asks one to begin a restart exactly as a TERM to its
//! launcher would.
//!
//! ```no_run
//! for g in seamless::admin::generations("/run/app.pid")? {
//!     println!("{} {}", g.pid, g.role);
//! }
//! # Ok::<(), seamless::admin::Error>(())
//! ```

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handover::{self, Limits};
use crate::wire::{self, Ended, Fate, Head, Request};

const ASK_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_STATUS: usize = 64 * 1024;

/// A process id, as std numbers processes ([`std::process::id`],
/// [`std::process::Child::id`]).
///
/// ```
/// use seamless::admin::Pid;
///
/// let me = Pid::from(std::process::id());
/// assert_eq!(me.as_u32(), std::process::id());
/// assert_eq!("1234".parse::<Pid>()?, Pid::from(1234));
/// # Ok::<(), std::num::ParseIntError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(u32);

impl Pid {
    /// The number.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// A pid as the endpoint writes it; `None` for one no process has.
    fn from_wire(raw: i32) -> Option<Pid> {
        u32::try_from(raw).ok().filter(|p| *p > 0).map(Pid)
    }

    /// As the kernel's `pid_t`; a number out of its range names no
    /// process, nor any endpoint.
    fn to_wire(self) -> Option<i32> {
        i32::try_from(self.0).ok()
    }
}

impl From<u32> for Pid {
    fn from(raw: u32) -> Pid {
        Pid(raw)
    }
}

impl From<Pid> for u32 {
    fn from(pid: Pid) -> u32 {
        pid.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Pid {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Pid, Self::Err> {
        s.parse().map(Pid)
    }
}

/// Why a generation's status or a restart could not be had.
///
/// ```no_run
/// use seamless::admin::{self, Error, Pid};
///
/// match admin::request_restart("/run/app.pid", Pid::from(1234)) {
///     Ok(()) => println!("restarting"),
///     Err(Error::RestartRefused { reason, .. }) => println!("not now: {reason}"),
///     Err(Error::NoAnswer { .. }) => println!("not running"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The pid file or its directory could not be read, or talking to a
    /// generation's endpoint failed (a time-out included).
    Io(io::Error),
    /// The pid file is there but is not a regular file.
    NotARegularFile {
        /// The pid file's path.
        path: PathBuf,
    },
    /// The pid file belongs to another user, whose generations would not
    /// answer this one (each endpoint checks its peer's uid).
    ForeignOwner {
        /// The pid file's path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// The generation does not answer: it is gone, or never got this far.
    NoAnswer {
        /// The generation asked.
        pid: Pid,
    },
    /// The generation refused to restart: it is not attached to its
    /// launcher, or is restarting or stopping already.
    RestartRefused {
        /// The generation asked.
        pid: Pid,
        /// Its own words.
        reason: String,
    },
    /// The generation's endpoint answered what this version cannot read
    /// (another protocol version, or nonsense).
    BadAnswer {
        /// The generation asked.
        pid: Pid,
        /// What is wrong with the answer.
        detail: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::NotARegularFile { path } => {
                write!(f, "{} is not a regular file", path.display())
            }
            Error::ForeignOwner { path, owner, uid } => write!(
                f,
                "{} belongs to uid {owner}, not to uid {uid}",
                path.display()
            ),
            Error::NoAnswer { pid } => write!(f, "generation {pid} does not answer"),
            Error::RestartRefused { pid, reason } => {
                write!(f, "generation {pid} refused to restart: {reason}")
            }
            Error::BadAnswer { pid, detail } => write!(f, "generation {pid}: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// What a generation is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Started, has not called `started()` yet.
    Starting,
    /// Called `started()`; the one a restart asks.
    Serving,
    /// Called `started()` with a probation set: serves beside the
    /// previous generation, which it sends TERM when the probation ends
    /// (`until`).
    Probation,
    /// Asked to restart: serves on until a successor calls `started()` or
    /// `handover_timeout` passes.
    Detached,
    /// Shutting down gracefully.
    Draining,
    /// A role this version does not know.
    Other(String),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Starting => "starting",
            Role::Serving => "serving",
            Role::Probation => "probation",
            Role::Detached => "detached",
            Role::Draining => "draining",
            Role::Other(other) => other,
        })
    }
}

/// A named socket a generation holds: a listener, or a UDP socket, as
/// [`net`](crate::net) obtained it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Socket {
    /// The name given to `seamless::net`.
    pub name: String,
    /// Kind and address, e.g. `tcp 127.0.0.1:8080`.
    pub address: String,
}

/// What a generation knows of one of its successors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Alive (it may or may not have called `started()`: ask it).
    Running,
    /// Called `started()` and is on probation until then: the earlier
    /// generation serves beside it.
    Probation {
        /// When the probation ends.
        until: SystemTime,
    },
    /// Exited with this status, before calling `started()` or, if
    /// [`Successor::into_probation`] says so, during its probation.
    Exited(i32),
    /// Killed by this signal, by its number (when: as for [`Outcome::Exited`]).
    Killed(i32),
    /// No longer there, how it ended unknown.
    Gone,
}

/// A later generation, as the earlier one saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Successor {
    /// The successor daemon's pid.
    pub pid: Pid,
    /// What became of it.
    pub outcome: Outcome,
    /// It ended this long into its probation (it had called `started()`);
    /// `None` for a successor that ended before `started()`, or has not
    /// ended.
    pub into_probation: Option<Duration>,
}

/// One generation's status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Generation {
    /// The daemon's pid.
    pub pid: Pid,
    /// What it is doing.
    pub role: Role,
    /// Since when (starting: since the process started; serving: since
    /// `started()`; detached, draining: since that began).
    pub since: Option<SystemTime>,
    /// Detached: when it gives up waiting for a successor
    /// (`handover_timeout`); draining: when `shutdown_timeout` ends it.
    pub until: Option<SystemTime>,
    /// Its launcher, while it is attached to one.
    pub launcher: Option<Pid>,
    /// The service's `handover_timeout`.
    pub handover_timeout: Duration,
    /// The probation a generation of this build serves after `started()`
    /// beside the previous one, if one is set.
    pub probation: Option<Duration>,
    /// Its named sockets.
    pub sockets: Vec<Socket>,
    /// Its successors, as far as they made themselves known.
    pub successors: Vec<Successor>,
}

impl Generation {
    fn from_wire(pid: Pid, status: wire::Status) -> Generation {
        let time = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let role = match status.role.as_str() {
            "starting" => Role::Starting,
            "serving" => Role::Serving,
            "probation" => Role::Probation,
            "detached" => Role::Detached,
            "draining" => Role::Draining,
            other => Role::Other(other.to_owned()),
        };
        let successors = status
            .successors
            .into_iter()
            .filter_map(|(pid, fate)| {
                let ms = |ms: Option<u64>| ms.map(Duration::from_millis);
                let (outcome, into_probation) = match fate {
                    Fate::Running => (Outcome::Running, None),
                    Fate::Probation { until_ms } => (
                        Outcome::Probation {
                            until: time(until_ms),
                        },
                        None,
                    ),
                    Fate::Ended {
                        how: Ended::Status(code),
                        into_probation_ms,
                    } => (Outcome::Exited(code), ms(into_probation_ms)),
                    Fate::Ended {
                        how: Ended::Signal(signal),
                        into_probation_ms,
                    } => (Outcome::Killed(signal), ms(into_probation_ms)),
                    Fate::Gone { into_probation_ms } => (Outcome::Gone, ms(into_probation_ms)),
                };
                Some(Successor {
                    pid: Pid::from_wire(pid)?,
                    outcome,
                    into_probation,
                })
            })
            .collect();
        Generation {
            pid,
            role,
            since: status.since_ms.map(time),
            until: status.until_ms.map(time),
            launcher: status.launcher.and_then(Pid::from_wire),
            handover_timeout: Duration::from_millis(status.handover_timeout_ms),
            probation: Some(Duration::from_millis(status.probation_ms)).filter(|p| !p.is_zero()),
            sockets: status
                .listeners
                .into_iter()
                .map(|(name, address)| Socket { name, address })
                .collect(),
            successors,
        }
    }
}

/// Every generation of the service whose pid file is `pid_file` that
/// answers, sorted by pid. An empty list when none runs.
///
/// Errors: the pid file is there but is not a regular file, belongs to
/// another user, or cannot be read; its directory cannot be read; an
/// endpoint answers nonsense.
///
/// ```no_run
/// let all = seamless::admin::generations("/run/app.pid")?;
/// let serving = all.iter().any(|g| g.role == seamless::admin::Role::Serving);
/// # let _ = serving;
/// # Ok::<(), seamless::admin::Error>(())
/// ```
pub fn generations(pid_file: impl AsRef<Path>) -> Result<Vec<Generation>, Error> {
    let pid_file = pid_file.as_ref();
    check_pid_file(pid_file)?;
    let mut all = Vec::new();
    for (pid, path) in handover::control_paths(pid_file)? {
        let Some(pid) = Pid::from_wire(pid) else {
            continue;
        };
        if let Some(generation) = ask_status(&path, pid)? {
            all.push(generation);
        }
    }
    Ok(all)
}

/// The status of generation `pid` alone; `None` when it does not answer.
///
/// ```no_run
/// use seamless::admin::{self, Pid};
///
/// let one = admin::generation("/run/app.pid", Pid::from(1234))?;
/// # let _ = one;
/// # Ok::<(), admin::Error>(())
/// ```
pub fn generation(pid_file: impl AsRef<Path>, pid: Pid) -> Result<Option<Generation>, Error> {
    match control_path(pid_file.as_ref(), pid) {
        Some(path) => ask_status(&path, pid),
        None => Ok(None),
    }
}

/// Asks generation `pid` to restart exactly as a TERM to its launcher
/// would: the generation sends its launcher that TERM, the launcher asks
/// it to prepare (stage 1) and exits 0, and the supervisor starts the next
/// generation. Refused ([`Error::RestartRefused`]) unless it is attached
/// to its launcher and not already restarting or stopping.
///
/// ```no_run
/// use seamless::admin::{self, Pid};
///
/// admin::request_restart("/run/app.pid", Pid::from(1234))?;
/// # Ok::<(), admin::Error>(())
/// ```
pub fn request_restart(pid_file: impl AsRef<Path>, pid: Pid) -> Result<(), Error> {
    let Some(path) = control_path(pid_file.as_ref(), pid) else {
        return Err(Error::NoAnswer { pid });
    };
    match ask(&path, &Request::Restart)? {
        None => Err(Error::NoAnswer { pid }),
        Some((Head::Ok(_), _)) => Ok(()),
        Some((Head::Refused(reason), _)) => Err(Error::RestartRefused { pid, reason }),
        Some((Head::None, _)) => Err(Error::BadAnswer {
            pid,
            detail: "unexpected answer".into(),
        }),
    }
}

/// Where generation `pid` keeps its endpoint; `None` for a number no
/// process can have.
fn control_path(pid_file: &Path, pid: Pid) -> Option<PathBuf> {
    Some(handover::control_path(pid_file, pid.to_wire()?))
}

fn ask(path: &Path, request: &Request) -> io::Result<Option<(Head, Vec<u8>)>> {
    let limits = Limits {
        answer: MAX_STATUS,
        fds: 0,
        timeout: ASK_TIMEOUT,
    };
    Ok(handover::ask(path, request, limits)?.map(|a| (a.head, a.body)))
}

fn ask_status(path: &Path, pid: Pid) -> Result<Option<Generation>, Error> {
    let answer = match ask(path, &Request::Status) {
        Ok(answer) => answer,
        // Exiting as we asked: as good as gone.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::Io(e)),
    };
    let Some((head, body)) = answer else {
        return Ok(None); // gone: a stale socket file
    };
    let bad = |detail: String| Error::BadAnswer { pid, detail };
    match head {
        Head::Ok(_) => {}
        Head::Refused(why) => return Err(bad(format!("refused: {why}"))),
        Head::None => return Err(bad("unexpected answer".into())),
    }
    let text = String::from_utf8(body).map_err(|_| bad("status is not UTF-8".into()))?;
    let status = wire::Status::parse(&text).map_err(|e| bad(e.to_string()))?;
    if Pid::from_wire(status.pid) != Some(pid) {
        return Err(bad(format!(
            "{} answers for pid {}",
            path.display(),
            status.pid
        )));
    }
    Ok(Some(Generation::from_wire(pid, status)))
}

/// A pid file that is there must be a regular file of ours, readable.
fn check_pid_file(pid_file: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(pid_file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing runs, or it runs in a directory we cannot see.
            std::fs::read_dir(crate::sys::parent(pid_file))?;
            return Ok(());
        }
        Err(e) => return Err(Error::Io(e)),
    };
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(Error::NotARegularFile {
            path: pid_file.to_owned(),
        });
    }
    if meta.uid() != uid {
        return Err(Error::ForeignOwner {
            path: pid_file.to_owned(),
            owner: meta.uid(),
            uid,
        });
    }
    std::fs::File::open(pid_file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_status_becomes_a_generation() {
        let g = Generation::from_wire(
            Pid(10),
            wire::Status {
                pid: 10,
                role: "detached".into(),
                since_ms: Some(1000),
                until_ms: Some(4000),
                launcher: None,
                handover_timeout_ms: 3000,
                probation_ms: 0,
                listeners: vec![("web".into(), "tcp 127.0.0.1:1".into())],
                successors: vec![
                    (
                        11,
                        Fate::Ended {
                            how: Ended::Status(3),
                            into_probation_ms: None,
                        },
                    ),
                    (
                        12,
                        Fate::Ended {
                            how: Ended::Signal(9),
                            into_probation_ms: Some(1200),
                        },
                    ),
                    (13, Fate::Running),
                    (
                        14,
                        Fate::Gone {
                            into_probation_ms: None,
                        },
                    ),
                    (15, Fate::Probation { until_ms: 9000 }),
                ],
            },
        );
        assert_eq!(g.pid, Pid(10));
        assert_eq!(g.probation, None);
        assert_eq!(
            g.successors[1].into_probation,
            Some(Duration::from_millis(1200))
        );
        assert_eq!(g.role, Role::Detached);
        let pids: Vec<_> = g.successors.iter().map(|s| s.pid.as_u32()).collect();
        assert_eq!(pids, [11, 12, 13, 14, 15]);
        assert_eq!(g.until, Some(UNIX_EPOCH + Duration::from_secs(4)));
        assert_eq!(g.handover_timeout, Duration::from_secs(3));
        let outcomes: Vec<_> = g.successors.iter().map(|s| s.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Exited(3),
                Outcome::Killed(9),
                Outcome::Running,
                Outcome::Gone,
                Outcome::Probation {
                    until: UNIX_EPOCH + Duration::from_secs(9)
                },
            ]
        );
    }

    #[test]
    fn a_missing_pid_file_is_no_error_and_no_generation() {
        let dir = crate::test_support::temp_dir("admin");
        assert_eq!(generations(dir.join("none.pid")).unwrap(), []);
        std::fs::write(dir.join("x.pid"), b"1\n").unwrap();
        std::fs::write(dir.join("x.pid.77.ctl"), b"").unwrap(); // stale, not a socket
        assert!(
            generations(dir.join("x.pid")).is_err()
                || generations(dir.join("x.pid")).unwrap().is_empty()
        );
        assert!(matches!(
            generations(dir.join("nodir/x.pid")),
            Err(Error::Io(_))
        ));
        std::fs::create_dir(dir.join("d.pid")).unwrap();
        assert!(matches!(
            generations(dir.join("d.pid")),
            Err(Error::NotARegularFile { .. })
        ));
        assert!(matches!(
            request_restart(dir.join("x.pid"), Pid(u32::MAX)),
            Err(Error::NoAnswer { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}

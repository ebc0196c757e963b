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
//! let pid_file = std::path::Path::new("/run/app.pid");
//! for g in seamless::admin::generations(pid_file)? {
//!     println!("{} {}", g.pid, g.role);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handover::{self, Limits};
use crate::wire::{self, Ended, Fate, Head, Request};

const ASK_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_STATUS: usize = 64 * 1024;

/// What a generation is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// A named socket a generation holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The name given to `seamless::net`.
    pub name: String,
    /// Kind and address, e.g. `tcp 127.0.0.1:8080`.
    pub address: String,
}

/// What a generation knows of one of its successors.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Killed by this signal (when: as for [`Outcome::Exited`]).
    Killed(i32),
    /// No longer there, how it ended unknown.
    Gone,
}

/// A later generation, as the earlier one saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Successor {
    /// The successor daemon's pid.
    pub pid: i32,
    /// What became of it.
    pub outcome: Outcome,
    /// It ended this long into its probation (it had called `started()`);
    /// `None` for a successor that ended before `started()`, or has not
    /// ended.
    pub into_probation: Option<Duration>,
}

/// One generation's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The daemon's pid.
    pub pid: i32,
    /// What it is doing.
    pub role: Role,
    /// Since when (starting: since the process started; serving: since
    /// `started()`; detached, draining: since that began).
    pub since: Option<SystemTime>,
    /// Detached: when it gives up waiting for a successor
    /// (`handover_timeout`); draining: when `shutdown_timeout` ends it.
    pub until: Option<SystemTime>,
    /// Its launcher, while it is attached to one.
    pub launcher: Option<i32>,
    /// The service's `handover_timeout`.
    pub handover_timeout: Duration,
    /// The probation a generation of this build serves after `started()`
    /// beside the previous one, if one is set.
    pub probation: Option<Duration>,
    /// Its named sockets.
    pub listeners: Vec<Listener>,
    /// Its successors, as far as they made themselves known.
    pub successors: Vec<Successor>,
}

impl Generation {
    fn from_wire(status: wire::Status) -> Generation {
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
            .map(|(pid, fate)| {
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
                Successor {
                    pid,
                    outcome,
                    into_probation,
                }
            })
            .collect();
        Generation {
            pid: status.pid,
            role,
            since: status.since_ms.map(time),
            until: status.until_ms.map(time),
            launcher: status.launcher,
            handover_timeout: Duration::from_millis(status.handover_timeout_ms),
            probation: Some(Duration::from_millis(status.probation_ms)).filter(|p| !p.is_zero()),
            listeners: status
                .listeners
                .into_iter()
                .map(|(name, address)| Listener { name, address })
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
/// endpoint belongs to another user or answers nonsense.
///
/// ```no_run
/// let all = seamless::admin::generations("/run/app.pid".as_ref())?;
/// let serving = all.iter().any(|g| g.role == seamless::admin::Role::Serving);
/// # let _ = serving;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn generations(pid_file: &Path) -> io::Result<Vec<Generation>> {
    check_pid_file(pid_file)?;
    let mut all = Vec::new();
    for (pid, path) in handover::control_paths(pid_file)? {
        if let Some(generation) = ask_status(&path, pid)? {
            all.push(generation);
        }
    }
    Ok(all)
}

/// The status of generation `pid` alone; `None` when it does not answer.
///
/// ```no_run
/// let one = seamless::admin::generation("/run/app.pid".as_ref(), 1234)?;
/// # let _ = one;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn generation(pid_file: &Path, pid: i32) -> io::Result<Option<Generation>> {
    ask_status(&handover::control_path(pid_file, pid), pid)
}

/// Asks generation `pid` to restart exactly as a TERM to its launcher
/// would: the generation sends its launcher that TERM, the launcher asks
/// it to prepare (stage 1) and exits 0, and the supervisor starts the next
/// generation. Refused (an error) unless it is attached to its
/// launcher and not already restarting or stopping.
///
/// ```no_run
/// seamless::admin::request_restart("/run/app.pid".as_ref(), 1234)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn request_restart(pid_file: &Path, pid: i32) -> io::Result<()> {
    let path = handover::control_path(pid_file, pid);
    match ask(&path, &Request::Restart)? {
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("generation {pid} does not answer"),
        )),
        Some((Head::Ok(_), _)) => Ok(()),
        Some((Head::Refused(why), _)) => Err(io::Error::other(format!(
            "generation {pid} refused to restart: {why}"
        ))),
        Some((Head::None, _)) => Err(io::Error::other("unexpected answer")),
    }
}

fn ask(path: &Path, request: &Request) -> io::Result<Option<(Head, Vec<u8>)>> {
    let limits = Limits {
        answer: MAX_STATUS,
        fds: 0,
        timeout: ASK_TIMEOUT,
    };
    Ok(handover::ask(path, request, limits)?.map(|a| (a.head, a.body)))
}

fn ask_status(path: &Path, pid: i32) -> io::Result<Option<Generation>> {
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
        Err(e) => return Err(e),
    };
    let Some((head, body)) = answer else {
        return Ok(None); // gone: a stale socket file
    };
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    match head {
        Head::Ok(_) => {}
        Head::Refused(why) => return Err(invalid(format!("generation {pid} refused: {why}"))),
        Head::None => return Err(invalid(format!("generation {pid}: unexpected answer"))),
    }
    let text = String::from_utf8(body).map_err(|_| invalid("status is not UTF-8".into()))?;
    let status = wire::Status::parse(&text).map_err(|e| invalid(e.to_string()))?;
    if status.pid != pid {
        return Err(invalid(format!(
            "{} answers for pid {}, not {pid}",
            path.display(),
            status.pid
        )));
    }
    Ok(Some(Generation::from_wire(status)))
}

/// A pid file that is there must be a regular file of ours, readable.
fn check_pid_file(pid_file: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(pid_file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing runs, or it runs in a directory we cannot see.
            std::fs::read_dir(crate::sys::parent(pid_file))?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", pid_file.display()),
        ));
    }
    if meta.uid() != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to uid {euid}",
                pid_file.display(),
                meta.uid()
            ),
        ));
    }
    std::fs::File::open(pid_file).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_status_becomes_a_generation() {
        let g = Generation::from_wire(wire::Status {
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
        });
        assert_eq!(g.probation, None);
        assert_eq!(
            g.successors[1].into_probation,
            Some(Duration::from_millis(1200))
        );
        assert_eq!(g.role, Role::Detached);
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
        assert_eq!(generations(&dir.join("none.pid")).unwrap(), []);
        std::fs::write(dir.join("x.pid"), b"1\n").unwrap();
        std::fs::write(dir.join("x.pid.77.ctl"), b"").unwrap(); // stale, not a socket
        assert!(
            generations(&dir.join("x.pid")).is_err()
                || generations(&dir.join("x.pid")).unwrap().is_empty()
        );
        assert!(generations(&dir.join("nodir/x.pid")).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}

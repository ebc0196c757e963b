//! Process identity read from `/proc`: this module owns every read of
//! `/proc` that decides who a pid is and whether it is alive.
//!
//! A pid alone names nothing once its process has exited: the kernel hands
//! it out again. A process is identified by its pid, its start time (field
//! 22 of `/proc/PID/stat`, in clock ticks since boot) and the boot it
//! belongs to (`/proc/sys/kernel/random/boot_id`). "Alive" means present and
//! not a zombie (`kill(pid, 0)` succeeds on zombies too).
//!
//! Robustness:
//! - `stat` and `status` are both read through one open `/proc/PID`
//!   directory, so they describe the same process even if the pid is reused
//!   between the two reads (a directory of an exited process reads `ESRCH`).
//! - The command name (field 2 of `stat`) may contain spaces and `)`:
//!   fields are counted from the *last* `)`.
//! - `/proc/TID` exists for every thread too; an id whose `Tgid` is not
//!   itself is a thread, not a process, and is reported as no process.
//! - [`ProcessIdentity::current`] checks that `/proc/self` shows our own pid,
//!   so a `/proc` mounted from another pid namespace is an error rather than
//!   a source of wrong identities.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const PID_MAX: &str = "/proc/sys/kernel/pid_max";
const PID_MAX_FALLBACK: i32 = 4_194_304;
/// `/proc/PID/stat` and `status` are a few KiB at most.
const MAX_PROC_READ: u64 = 64 * 1024;

/// Who a process is, as far as the pid file needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub(crate) pid: i32,
    /// Field 22 of `/proc/PID/stat`: clock ticks since boot.
    pub(crate) start_time: u64,
    /// `/proc/sys/kernel/random/boot_id`, trimmed.
    pub(crate) boot_id: String,
}

/// What `/proc/PID` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessInfo {
    pub(crate) identity: ProcessIdentity,
    /// State letter from `/proc/PID/stat` (R, S, D, Z, X, T, ...).
    pub(crate) state: char,
    /// Real uid, the first number of the `Uid:` line of `/proc/PID/status`.
    pub(crate) uid: u32,
}

impl ProcessInfo {
    /// Neither a zombie nor dead.
    pub(crate) fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The fields of `/proc/PID/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 1, as `/proc`'s pid namespace sees it.
    pub(crate) pid: i32,
    /// Field 3.
    pub(crate) state: char,
    /// Field 20: the number of threads.
    pub(crate) threads: u64,
    /// Field 22.
    pub(crate) start_time: u64,
}

impl ProcessIdentity {
    /// The calling process.
    pub(crate) fn current() -> io::Result<ProcessIdentity> {
        let pid = std::process::id() as i32;
        let info = read_process("self")?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "/proc/self cannot be read"))?;
        if info.identity.pid != pid {
            return Err(io::Error::other(format!(
                "/proc/self shows pid {} but we are {pid}: /proc belongs to another pid namespace",
                info.identity.pid
            )));
        }
        Ok(info.identity)
    }

    /// The process `pid` (zombies included: see [`ProcessInfo::is_alive`]),
    /// or `None` when there is no such process: no `/proc/PID`, a pid <= 0,
    /// or the id of a thread that is not its process's main thread.
    pub(crate) fn of(pid: i32) -> io::Result<Option<ProcessInfo>> {
        if pid <= 0 {
            return Ok(None);
        }
        let info = read_process(&pid.to_string())?;
        Ok(info.filter(|i| i.identity.pid == pid))
    }
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Reads `/proc/<name>/stat` and `/proc/<name>/status` through one directory
/// descriptor. `None` when the process does not exist (any more), or `name`
/// is a thread rather than a process.
fn read_process(name: &str) -> io::Result<Option<ProcessInfo>> {
    let dir = match File::open(format!("/proc/{name}")) {
        Ok(d) => d,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let read_entry = |entry: &str| -> io::Result<Option<String>> {
        let fd = match openat(
            dir.as_fd(),
            entry,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ESRCH) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        match File::from(fd).take(MAX_PROC_READ).read_to_end(&mut bytes) {
            Ok(_) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let Some(stat) = read_entry("stat")? else {
        return Ok(None);
    };
    let Some(status) = read_entry("status")? else {
        return Ok(None);
    };
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable /proc/{name}/{what}"),
        )
    };
    let stat = parse_stat(&stat).ok_or_else(|| invalid("stat"))?;
    let status = parse_status(&status).ok_or_else(|| invalid("status"))?;
    if status.tgid != stat.pid {
        return Ok(None); // a thread, not a process
    }
    Ok(Some(ProcessInfo {
        identity: ProcessIdentity {
            pid: stat.pid,
            start_time: stat.start_time,
            boot_id: boot_id()?,
        },
        state: stat.state,
        uid: status.uid,
    }))
}

/// Pid, state letter and start time from the text of `/proc/PID/stat`. The
/// command name (field 2) may hold spaces and parentheses: the fields after
/// it are counted from the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<Stat> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (pid, _comm) = head.split_once('(')?;
    let pid: i32 = pid.trim().parse().ok()?;
    let mut fields = rest.split_whitespace();
    let mut state_field = fields.next()?.chars();
    let state = state_field.next()?;
    if state_field.next().is_some() {
        return None;
    }
    // After the state (field 3), the number of threads is field 20: 16
    // more on; the start time is field 22, one further.
    let threads = fields.nth(16)?.parse().ok()?;
    let start_time = fields.nth(1)?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        threads,
        start_time,
    })
}

/// How many threads the calling process has (the launcher checks it is one
/// before it forks).
pub(crate) fn threads_of_self() -> io::Result<u64> {
    let bytes = std::fs::read("/proc/self/stat")?;
    // The command name may hold any bytes; the fields after it are ASCII.
    match parse_stat(&String::from_utf8_lossy(&bytes)) {
        Some(stat) if stat.pid == std::process::id() as i32 => Ok(stat.threads),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "/proc/self/stat does not describe this process",
        )),
    }
}

/// The lines of `/proc/PID/status` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) tgid: i32,
    /// Real uid.
    pub(crate) uid: u32,
}

pub(crate) fn parse_status(status: &str) -> Option<Status> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
    };
    Some(Status {
        tgid: field("Tgid:")?.parse().ok()?,
        uid: field("Uid:")?.parse().ok()?,
    })
}

/// This boot's id.
pub(crate) fn boot_id() -> io::Result<String> {
    let id = std::fs::read_to_string(BOOT_ID)?.trim().to_owned();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable {BOOT_ID}"),
        ));
    }
    Ok(id)
}

/// Present, a process (not a thread), and neither a zombie nor dead.
pub(crate) fn is_alive(pid: i32) -> bool {
    matches!(ProcessIdentity::of(pid), Ok(Some(info)) if info.is_alive())
}

/// The largest pid the kernel hands out.
pub(crate) fn pid_max() -> i32 {
    std::fs::read_to_string(PID_MAX)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n: &i32| *n > 1)
        .unwrap_or(PID_MAX_FALLBACK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_with_tricky_command_names() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21";
        for comm in [
            "(a b)",
            "(a) b)",
            "((x)",
            "()",
            "( ) ) )",
            "(S 1 2 3)",
            "(x) Z 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9)",
            "(\u{e9}\u{1f600})",
        ] {
            let line = format!("77 {comm} {tail}\n");
            let expected = Stat {
                pid: 77,
                state: 'S',
                threads: 17,
                start_time: 4242,
            };
            assert_eq!(parse_stat(&line), Some(expected), "{line}");
        }
        for bad in [
            "77 (x) S 1 2",
            "garbage",
            "",
            ")",
            "x (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242",
            "77 (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -1",
            "77 (a) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_process_counts_its_threads() {
        let before = threads_of_self().unwrap();
        assert!(before >= 1);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (up, is_up) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            up.send(threads_of_self().unwrap()).unwrap();
            let _ = stopped.recv();
        });
        // Other tests start and end threads meanwhile: at least one more.
        assert!(is_up.recv().unwrap() >= 2);
        drop(stop);
        thread.join().unwrap();
    }

    #[test]
    fn status_lines() {
        let text = "Name:\tx\nTgid:\t42\nPid:\t43\nUid:\t1000\t0\t0\t0\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                tgid: 42,
                uid: 1000
            })
        );
        assert_eq!(parse_status("Tgid:\t42\n"), None);
        assert_eq!(parse_status("Uid:\t1\n"), None);
    }

    #[test]
    fn current_process_is_alive_and_identified() {
        let me = ProcessIdentity::current().unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.start_time > 0);
        assert_eq!(me.boot_id, boot_id().unwrap());
        let info = ProcessIdentity::of(me.pid).unwrap().unwrap();
        assert_eq!(info.identity, me);
        assert_eq!(info.uid, nix::unistd::getuid().as_raw());
        assert!(is_alive(me.pid));
        assert!(!is_alive(0) && !is_alive(-1) && !is_alive(i32::MIN));
        assert!(ProcessIdentity::of(-1).unwrap().is_none());
        assert!(pid_max() > 1);
    }

    #[test]
    fn a_thread_id_is_not_a_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, std::process::id() as i32);
        assert!(std::path::Path::new(&format!("/proc/{tid}/stat")).exists());
        assert_eq!(ProcessIdentity::of(tid).unwrap(), None);
        assert!(!is_alive(tid));
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Wait until it has exited but is not reaped: a zombie.
        let mut zombie = false;
        for _ in 0..2500 {
            if let Ok(Some(info)) = ProcessIdentity::of(pid) {
                if info.state == 'Z' {
                    zombie = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(zombie, "the child never became a zombie");
        // kill(pid, 0) still succeeds on it: that is why it is not enough.
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        assert!(!is_alive(pid));
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}

//! Process identity read from `/proc`.
//!
//! A pid alone names nothing once its process has exited: the kernel hands
//! it out again. A process is identified by its pid, its start time (field
//! 22 of `/proc/PID/stat`, in clock ticks since boot) and the boot it
//! belongs to (`/proc/sys/kernel/random/boot_id`). "Alive" means present and
//! not a zombie (`kill(pid, 0)` succeeds on zombies too).

use std::io;

/// Who a process is, as far as the pid file needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
    pub(crate) boot_id: String,
}

/// What `/proc/PID` says about a live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessInfo {
    pub(crate) identity: ProcessIdentity,
    /// State letter from `/proc/PID/stat` (R, S, D, Z, X, T, ...).
    pub(crate) state: char,
    /// Real uid from `/proc/PID/status`.
    pub(crate) uid: u32,
}

impl ProcessIdentity {
    /// The calling process.
    pub(crate) fn current() -> io::Result<ProcessIdentity> {
        let pid = std::process::id() as i32;
        ProcessIdentity::of(pid)?
            .map(|info| info.identity)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "/proc/self vanished"))
    }

    /// The process `pid`, or `None` when there is none.
    pub(crate) fn of(pid: i32) -> io::Result<Option<ProcessInfo>> {
        if pid <= 0 {
            return Ok(None);
        }
        let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (state, start_time) = parse_stat(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable /proc/{pid}/stat"),
            )
        })?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(u32::MAX);
        Ok(Some(ProcessInfo {
            identity: ProcessIdentity {
                pid,
                start_time,
                boot_id: boot_id()?,
            },
            state,
            uid,
        }))
    }
}

/// State letter and start time from the text of `/proc/PID/stat`. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted from the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), start time is field 22: 18 more on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

/// This boot's id.
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_owned())
}

/// Present and neither a zombie nor dead.
#[cfg(test)]
pub(crate) fn is_alive(pid: i32) -> bool {
    matches!(ProcessIdentity::of(pid), Ok(Some(info)) if !matches!(info.state, 'Z' | 'X' | 'x'))
}

/// The largest pid the kernel hands out.
pub(crate) fn pid_max() -> i32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_tricky_command_names() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21";
        for comm in ["(a b)", "(a) b)", "((x)", "()", "( ) ) )"] {
            let line = format!("77 {comm} {tail}");
            assert_eq!(parse_stat(&line), Some(('S', 4242)), "{line}");
        }
        assert_eq!(parse_stat("77 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn current_process_is_alive_and_identified() {
        let me = ProcessIdentity::current().unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(me.start_time > 0);
        assert!(!me.boot_id.is_empty());
        assert!(is_alive(me.pid));
        assert!(!is_alive(0) && !is_alive(-1));
        assert!(pid_max() > 1);
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Wait until it has exited but is not reaped: a zombie.
        let mut zombie = false;
        for _ in 0..500 {
            if let Ok(Some(info)) = ProcessIdentity::of(pid) {
                if info.state == 'Z' {
                    zombie = true;
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(zombie);
        assert!(!is_alive(pid));
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}

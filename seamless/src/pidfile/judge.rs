//! Who may be sent TERM: the checks of a recorded generation against this
//! process and the pid file, and the signal itself (through a pidfd where
//! the kernel has them).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procfs::{self, ProcessIdentity, ProcessInfo};

/// Whether a recorded pid may be signalled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Signal,
    Refuse(String),
}

/// Whether the pid file itself may be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    Trusted,
    /// Why not.
    Untrusted(String),
}

/// Everything `verify` judges against, gathered once per operation.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) me: ProcessIdentity,
    /// Our real uid.
    pub(crate) uid: u32,
    /// Our effective uid is 0.
    pub(crate) root: bool,
    pub(crate) file: Trust,
    pub(crate) pid_max: i32,
}

impl Context {
    pub(crate) fn new(file: Trust) -> io::Result<Context> {
        Ok(Context {
            me: ProcessIdentity::current()?,
            uid: nix::unistd::getuid().as_raw(),
            root: nix::unistd::geteuid().is_root(),
            file,
            pid_max: procfs::pid_max(),
        })
    }
}

/// The rules of the module doc that need no look at the process.
pub(super) fn precheck(entry: &ProcessIdentity, ctx: &Context) -> Result<(), String> {
    if let Trust::Untrusted(why) = &ctx.file {
        return Err(why.clone());
    }
    if entry.pid <= 1 || entry.pid > ctx.pid_max {
        return Err(format!("not a valid pid (pid_max is {})", ctx.pid_max));
    }
    if entry.pid == ctx.me.pid {
        return Err("it is our own pid".into());
    }
    if entry.boot_id != ctx.me.boot_id {
        return Err("recorded during another boot".into());
    }
    Ok(())
}

/// The rules of the module doc, given what `/proc` says about `entry.pid`.
pub(crate) fn judge(
    entry: &ProcessIdentity,
    observed: io::Result<Option<ProcessInfo>>,
    ctx: &Context,
) -> Verdict {
    if let Err(why) = precheck(entry, ctx) {
        return Verdict::Refuse(why);
    }
    let info = match observed {
        Ok(Some(info)) => info,
        Ok(None) => return Verdict::Refuse("no such process".into()),
        Err(e) => return Verdict::Refuse(format!("cannot read /proc/{}: {e}", entry.pid)),
    };
    if !info.is_alive() {
        return Verdict::Refuse(format!("the process is a zombie (state {})", info.state));
    }
    if info.identity.start_time != entry.start_time {
        return Verdict::Refuse(format!(
            "another process has that pid now (start time {}, recorded {})",
            info.identity.start_time, entry.start_time
        ));
    }
    if info.identity.boot_id != entry.boot_id {
        return Verdict::Refuse("recorded during another boot".into());
    }
    if info.uid != ctx.uid && !ctx.root {
        return Verdict::Refuse(format!(
            "the process runs as uid {}, we run as uid {}",
            info.uid, ctx.uid
        ));
    }
    Verdict::Signal
}

/// Whether the recorded generation `entry` may be signalled now.
pub(crate) fn verify(entry: &ProcessIdentity, ctx: &Context) -> Verdict {
    if let Err(why) = precheck(entry, ctx) {
        return Verdict::Refuse(why);
    }
    judge(entry, ProcessIdentity::of(entry.pid), ctx)
}

/// Opens a pidfd for `pid`. `Ok(None)`: the kernel (or a seccomp filter)
/// offers none, fall back to `kill`.
pub(crate) fn open_pidfd(pid: i32) -> Result<Option<OwnedFd>, String> {
    debug_assert!(pid > 1);
    // SAFETY: pidfd_open(2) takes a pid and flags (no pointers) and returns
    // a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    if rc >= 0 {
        // SAFETY: `rc` is a descriptor the kernel just opened for us and
        // nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
    }
    match Errno::last() {
        Errno::ESRCH => Err("no such process".into()),
        Errno::EINVAL => Err("not a process (a thread id?)".into()),
        _ => Ok(None),
    }
}

/// Sends TERM through `pidfd`, or with `kill(pid)` when there is none.
pub(super) fn send_term(pid: i32, pidfd: Option<&OwnedFd>) -> Result<(), Errno> {
    if pid <= 1 {
        return Err(Errno::EINVAL); // never kill(0), kill(1) or kill(-N)
    }
    match pidfd {
        Some(fd) => {
            // SAFETY: pidfd_send_signal(2) with a descriptor we own, a valid
            // signal number, no siginfo (null is allowed) and no flags.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGTERM,
                    std::ptr::null::<libc::siginfo_t>(),
                    0 as libc::c_uint,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(Errno::last())
            }
        }
        None => kill(Pid::from_raw(pid), Signal::SIGTERM),
    }
}

/// Checks `entry` and sends it TERM. The pidfd is opened before the
/// `/proc` checks, so the process checked is the process signalled.
pub(super) fn terminate(entry: &ProcessIdentity, ctx: &Context) -> Result<(), String> {
    precheck(entry, ctx)?;
    let pidfd = open_pidfd(entry.pid)?;
    match judge(entry, ProcessIdentity::of(entry.pid), ctx) {
        Verdict::Refuse(why) => Err(why),
        Verdict::Signal => send_term(entry.pid, pidfd.as_ref())
            .map_err(|e| format!("sending SIGTERM failed: {}", io::Error::from(e))),
    }
}

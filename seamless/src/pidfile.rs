//! The pid file handshake between generations: this module owns the pid
//! file, its lock file, and the decision to send TERM to an earlier
//! generation.
//!
//! # Format
//!
//! The first line is a plain decimal pid, for monitoring tools; the lines
//! after it record who each pid is:
//!
//! ```text
//! 12345
//! seamless-v1 newest 12345 <start time> <boot id>
//! seamless-v1 detached 12001 <start time> <boot id>
//! ```
//!
//! `newest` is the generation that last called `started()`; `detached`
//! lines (zero or more) are generations asked to restart before they ever
//! called `started()`: still alive, still owed a TERM by the next
//! `started()`. The start time is field 22 of `/proc/PID/stat` and the boot
//! id is `/proc/sys/kernel/random/boot_id` (see [`crate::procfs`]). The
//! first line names the newest generation, or the first detached one when
//! no newest is recorded.
//!
//! # Locking and writing
//!
//! Every read-modify-write holds `flock(LOCK_EX)` on `<pid file>.lock`
//! (created `0600`, never through a symlink; the wait is bounded by 5 s), so
//! two generations starting at once cannot both believe they are the
//! newest. The file is replaced atomically: written to
//! `.<name>.<pid>.<counter>.tmp` in the same directory
//! (`O_EXCL | O_NOFOLLOW`, mode `0644` less the umask), fsynced, renamed
//! over the path (a symlink planted at the path is replaced, never
//! followed), and the directory is fsynced. The file is read without
//! following a symlink, only when it is a regular file, and at most 64 KiB
//! of it.
//!
//! # Who is signalled
//!
//! A recorded pid is sent TERM only when all of these hold:
//!
//! - the file is a regular file (not a symlink) owned by our effective uid
//!   and not writable by group or others;
//! - the pid is > 1, not ours and not above `pid_max`;
//! - it was recorded during this boot;
//! - the process exists, is a process (not a thread), is not a zombie, and
//!   has the recorded start time;
//! - it runs as our real uid, or we are root (the file, owned by us, was
//!   then written by root).
//!
//! Anything else is refused with one log line naming the pid and the
//! reason. A file in the original's format (a bare pid) is never signalled:
//! it proves nothing. Where the kernel has pidfds, the pidfd is opened
//! before the checks and the signal goes through it, so a pid reused between
//! the checks and the signal cannot be hit; elsewhere `kill(2)` is called
//! with the checked, positive pid.
//!
//! # The three operations
//!
//! - [`PidFile::claim`] (stage 2, in the generation calling `started()`):
//!   TERM every recorded generation that passes the checks, then record
//!   ourselves as the only, newest generation.
//! - [`PidFile::add_detached`] (stage 1, in a generation that never called
//!   `started()`): keep the recorded generations that still pass the checks,
//!   add ourselves as `detached`.
//! - [`PidFile::release`] (this generation exits): when the file names us,
//!   remove our entry and every entry that no longer passes the checks;
//!   remove the file when no entry is left. A file that does not name us
//!   belongs to a newer generation and is left alone, as is a file that
//!   fails the file checks. So after a clean exit the pid file never names
//!   a dead or foreign pid.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use nix::fcntl::{Flock, FlockArg};

use crate::error::Error;
use crate::procfs::{self, ProcessIdentity, ProcessInfo};
use crate::{report, sys};

const MAGIC: &str = "seamless-v1";
const MAX_READ: u64 = 64 * 1024;
const MAX_ENTRIES: usize = 64;
const MAX_BOOT_ID: usize = 64;
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// What a recorded generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Newest,
    Detached,
}

/// One identity line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) standing: Standing,
    pub(crate) identity: ProcessIdentity,
}

/// What a pid file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The first line, when it is a plain pid > 1 (never signalled by
    /// itself: only logged).
    pub(crate) first_line: Option<i32>,
    /// Well-formed identity lines with a pid > 1, at most one per pid, at
    /// most 64.
    pub(crate) entries: Vec<Entry>,
}

/// Parses pid file content. Never panics; never yields a pid <= 1.
/// Malformed lines are skipped.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let first_line = lines
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    let mut entries: Vec<Entry> = Vec::new();
    for entry in lines.filter_map(parse_line) {
        if entries.len() >= MAX_ENTRIES {
            break;
        }
        if entries.iter().all(|e| e.identity.pid != entry.identity.pid) {
            entries.push(entry);
        }
    }
    Parsed {
        first_line,
        entries,
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split_whitespace();
    if f.next()? != MAGIC {
        return None;
    }
    let standing = match f.next()? {
        "newest" => Standing::Newest,
        "detached" => Standing::Detached,
        _ => return None,
    };
    let pid: i32 = f.next()?.parse().ok()?;
    let start_time: u64 = f.next()?.parse().ok()?;
    let boot_id = f.next()?;
    if pid <= 1 || f.next().is_some() || boot_id.len() > MAX_BOOT_ID {
        return None;
    }
    Some(Entry {
        standing,
        identity: ProcessIdentity {
            pid,
            start_time,
            boot_id: boot_id.to_owned(),
        },
    })
}

fn render(entries: &[Entry]) -> String {
    let first = entries
        .iter()
        .find(|e| e.standing == Standing::Newest)
        .or(entries.first())
        .map(|e| e.identity.pid)
        .unwrap_or(0);
    let mut out = format!("{first}\n");
    for e in entries {
        let standing = match e.standing {
            Standing::Newest => "newest",
            Standing::Detached => "detached",
        };
        let id = &e.identity;
        out += &format!(
            "{MAGIC} {standing} {} {} {}\n",
            id.pid, id.start_time, id.boot_id
        );
    }
    out
}

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
fn precheck(entry: &ProcessIdentity, ctx: &Context) -> Result<(), String> {
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
fn open_pidfd(pid: i32) -> Result<Option<OwnedFd>, String> {
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
fn send_term(pid: i32, pidfd: Option<&OwnedFd>) -> Result<(), Errno> {
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
fn terminate(entry: &ProcessIdentity, ctx: &Context) -> Result<(), String> {
    precheck(entry, ctx)?;
    let pidfd = open_pidfd(entry.pid)?;
    match judge(entry, ProcessIdentity::of(entry.pid), ctx) {
        Verdict::Refuse(why) => Err(why),
        Verdict::Signal => send_term(entry.pid, pidfd.as_ref())
            .map_err(|e| format!("sending SIGTERM failed: {}", io::Error::from(e))),
    }
}

/// What `claim` did.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Sent SIGTERM.
    pub(crate) signalled: Vec<i32>,
    /// Recorded but not signalled, and why.
    pub(crate) refused: Vec<(i32, String)>,
}

impl Claimed {
    /// One log line per pid.
    pub(crate) fn report(&self) {
        for pid in &self.signalled {
            report::info!("sent SIGTERM to the previous generation {pid}");
        }
        for (pid, why) in &self.refused {
            report::warning!("pid file names {pid}; not signalled: {why}");
        }
    }
}

/// A pid file and its lock file.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    lock_path: PathBuf,
}

/// Holds the lock file's `flock` until dropped.
struct Locked {
    _lock: Flock<File>, // released when dropped (the file is closed)
}

/// The pid file as read under the lock.
struct Contents {
    parsed: Parsed,
    trust: Trust,
}

impl PidFile {
    /// Checks at start-up that the location is usable: the directory
    /// exists and the lock file can be created there.
    pub(crate) fn open(path: &Path) -> Result<PidFile, Error> {
        let error = |what: &str, source: io::Error| Error::PidFile {
            path: path.to_owned(),
            what: what.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .ok_or_else(|| error("no file name", io::ErrorKind::InvalidInput.into()))?
            .to_owned();
        let mut lock_name = name;
        lock_name.push(".lock");
        let pid_file = PidFile {
            path: path.to_owned(),
            lock_path: sys::parent(path).join(lock_name),
        };
        pid_file.open_lock_file().map_err(|e| {
            error(
                &format!("cannot create lock file {}", pid_file.lock_path.display()),
                e,
            )
        })?;
        Ok(pid_file)
    }

    fn open_lock_file(&self) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.lock_path)?;
        if !file.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    fn lock(&self) -> io::Result<Locked> {
        self.lock_within(LOCK_WAIT)
    }

    fn lock_within(&self, wait: Duration) -> io::Result<Locked> {
        let mut file = self.open_lock_file()?;
        let deadline = Instant::now() + wait;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Locked { _lock: lock }),
                Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => file = back,
                Err((_, e)) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} stayed locked for {wait:?}", self.lock_path.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads the file under the lock: what it says, and whether it can be
    /// believed at all. A symlink or a non-regular file is not opened.
    fn read(&self, _lock: &Locked) -> io::Result<Contents> {
        let untrusted = |why: String| Contents {
            parsed: Parsed::default(),
            trust: Trust::Untrusted(why),
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Ok(self.symlink_found());
            }
            Ok(m) if !m.file_type().is_file() => {
                report::warning!(
                    "pid file {} is not a regular file: its content is ignored",
                    self.path.display()
                );
                return Ok(untrusted("the pid file is not a regular file".into()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Contents {
                    parsed: Parsed::default(),
                    trust: Trust::Trusted,
                })
            }
            Err(e) => return Err(e),
        }
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Contents {
                    parsed: Parsed::default(),
                    trust: Trust::Trusted,
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(self.symlink_found()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Ok(untrusted("the pid file is not a regular file".into()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        let trust = if meta.uid() != euid {
            Trust::Untrusted(format!(
                "the pid file is owned by uid {}, not by us (uid {euid})",
                meta.uid()
            ))
        } else if meta.mode() & 0o022 != 0 {
            Trust::Untrusted(format!(
                "the pid file is writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            ))
        } else {
            Trust::Trusted
        };
        let mut bytes = Vec::new();
        file.take(MAX_READ).read_to_end(&mut bytes)?;
        Ok(Contents {
            parsed: parse(&bytes),
            trust,
        })
    }

    fn symlink_found(&self) -> Contents {
        report::warning!(
            "pid file {} is a symbolic link: its content is ignored and it will be replaced",
            self.path.display()
        );
        Contents {
            parsed: Parsed::default(),
            trust: Trust::Untrusted("the pid file is a symbolic link".into()),
        }
    }

    /// Replaces the file atomically with `entries` (removes it when empty).
    fn write(&self, _lock: &Locked, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        sys::write_file(&self.path, render(entries).as_bytes(), 0o644)
    }

    /// Stage 2: TERM every proven earlier generation, record us as the only,
    /// newest one.
    pub(crate) fn claim(&self) -> io::Result<Claimed> {
        let lock = self.lock()?;
        let contents = self.read(&lock)?;
        let ctx = Context::new(contents.trust)?;
        let parsed = contents.parsed;
        let mut claimed = Claimed::default();
        if parsed.entries.is_empty() {
            if let Some(pid) = parsed.first_line.filter(|p| *p != ctx.me.pid) {
                let running = if procfs::is_alive(pid) {
                    "a process with that pid is running"
                } else {
                    "no process with that pid is running"
                };
                claimed.refused.push((
                    pid,
                    format!("no identity recorded (a bare pid proves nothing); {running}"),
                ));
            }
        }
        for entry in &parsed.entries {
            let id = &entry.identity;
            if id.pid == ctx.me.pid {
                // Ourselves, or a dead earlier holder of our pid.
                continue;
            }
            match terminate(id, &ctx) {
                Ok(()) => claimed.signalled.push(id.pid),
                Err(why) => claimed.refused.push((id.pid, why)),
            }
        }
        self.write(
            &lock,
            &[Entry {
                standing: Standing::Newest,
                identity: ctx.me,
            }],
        )?;
        Ok(claimed)
    }

    /// Stage 1 in a generation that never called `started()`: record us as
    /// owed a TERM by the next `started()`.
    pub(crate) fn add_detached(&self) -> io::Result<()> {
        let lock = self.lock()?;
        let contents = self.read(&lock)?;
        let ctx = Context::new(contents.trust)?;
        let mut entries = self.still_valid(contents.parsed, &ctx);
        entries.push(Entry {
            standing: Standing::Detached,
            identity: ctx.me,
        });
        self.write(&lock, &entries)
    }

    /// This generation exits: take it out of the file, with every entry
    /// that no longer proves a live generation; remove the file when none
    /// is left.
    pub(crate) fn release(&self) -> io::Result<()> {
        let lock = self.lock()?;
        let contents = self.read(&lock)?;
        if let Trust::Untrusted(why) = &contents.trust {
            report::debug!("pid file {} left alone on exit: {why}", self.path.display());
            return Ok(());
        }
        let ctx = Context::new(contents.trust)?;
        let parsed = contents.parsed;
        let named = parsed.first_line == Some(ctx.me.pid)
            || parsed.entries.iter().any(|e| e.identity == ctx.me);
        if !named {
            return Ok(()); // a newer generation's file
        }
        let entries = self.still_valid(parsed, &ctx);
        self.write(&lock, &entries)
    }

    /// The entries that still pass `verify` (never ourselves).
    fn still_valid(&self, parsed: Parsed, ctx: &Context) -> Vec<Entry> {
        parsed
            .entries
            .into_iter()
            .filter(|e| match verify(&e.identity, ctx) {
                Verdict::Signal => true,
                Verdict::Refuse(why) => {
                    if e.identity.pid != ctx.me.pid {
                        report::debug!(
                            "pid file {}: dropping {}: {why}",
                            self.path.display(),
                            e.identity.pid
                        );
                    }
                    false
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir() -> PathBuf {
        crate::test_support::temp_dir("test")
    }

    /// A `sleep 30` child, killed and reaped on drop.
    struct Sleeper(std::process::Child);
    impl Sleeper {
        fn new() -> Sleeper {
            Sleeper(
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap(),
            )
        }
        fn pid(&self) -> i32 {
            self.0.id() as i32
        }
        fn identity(&self) -> ProcessIdentity {
            ProcessIdentity::of(self.pid()).unwrap().unwrap().identity
        }
    }
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn line(standing: &str, id: &ProcessIdentity) -> String {
        format!(
            "{MAGIC} {standing} {} {} {}\n",
            id.pid, id.start_time, id.boot_id
        )
    }

    fn entry(standing: Standing, pid: i32, start_time: u64) -> Entry {
        Entry {
            standing,
            identity: ProcessIdentity {
                pid,
                start_time,
                boot_id: "b".into(),
            },
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let entries = vec![
            entry(Standing::Newest, 123, 456),
            entry(Standing::Detached, 77, 9),
            entry(Standing::Detached, 78, u64::MAX),
        ];
        let text = render(&entries);
        assert!(text.starts_with("123\n"));
        let parsed = parse(text.as_bytes());
        assert_eq!(parsed.first_line, Some(123));
        assert_eq!(parsed.entries, entries);
        // Without a newest, the first line names the first detached one.
        let detached = &entries[1..];
        let text = render(detached);
        assert!(text.starts_with("77\n"), "{text}");
        assert_eq!(parse(text.as_bytes()).entries, detached);
        // CRLF and surrounding blanks are tolerated.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()).entries, detached);
    }

    #[test]
    fn bad_contents_yield_nothing_signallable() {
        for content in [
            "",
            "\n\n\n",
            "garbage",
            "-1234\n",
            "0\n",
            "1\n",
            "-1\n",
            "99999999999\n",
            "\u{0}\u{ff}\n",
            "12\nseamless-v1 newest -5 1 b\n",
            "12\nseamless-v1 newest -1234 1 b\n",
            "12\nseamless-v1 newest 1 1 b\n",
            "12\nseamless-v1 newest 0 1 b\n",
            "12\nseamless-v1 newest 99999999999 1 b\n",
            "12\nseamless-v1 boss 12 1 b\n",
            "12\nseamless-v2 newest 12 1 b\n",
            "12\nseamless-v1 newest 12 x b\n",
            "12\nseamless-v1 newest 12 -1 b\n",
            "12\nseamless-v1 newest 12 1\n",
            "12\nseamless-v1 newest 12 1 b extra\n",
        ] {
            let parsed = parse(content.as_bytes());
            assert!(parsed.entries.is_empty(), "{content:?}");
            assert!(parsed.first_line.is_none_or(|p| p > 1), "{content:?}");
        }
        let long_boot = format!("12\nseamless-v1 newest 12 1 {}\n", "b".repeat(65));
        assert!(parse(long_boot.as_bytes()).entries.is_empty());
        // Duplicates collapse; the count is bounded.
        let dup = "12\nseamless-v1 newest 12 1 b\nseamless-v1 detached 12 2 b\n";
        assert_eq!(parse(dup.as_bytes()).entries.len(), 1);
        let many: String = (2..1000)
            .map(|p| format!("seamless-v1 detached {p} 1 b\n"))
            .collect();
        assert_eq!(
            parse(format!("2\n{many}").as_bytes()).entries.len(),
            MAX_ENTRIES
        );
    }

    fn context() -> Context {
        let mut ctx = Context::new(Trust::Trusted).unwrap();
        ctx.root = false;
        ctx
    }

    fn info(id: &ProcessIdentity, state: char, uid: u32) -> io::Result<Option<ProcessInfo>> {
        Ok(Some(ProcessInfo {
            identity: id.clone(),
            state,
            uid,
        }))
    }

    #[test]
    fn the_rules_one_by_one() {
        let ctx = context();
        let other = ProcessIdentity {
            pid: ctx.me.pid + 1,
            start_time: 1000,
            boot_id: ctx.me.boot_id.clone(),
        };
        let refused = |v: Verdict, needle: &str| match v {
            Verdict::Refuse(why) => assert!(why.contains(needle), "{why} / {needle}"),
            Verdict::Signal => panic!("signalled; expected a refusal: {needle}"),
        };
        assert_eq!(
            judge(&other, info(&other, 'S', ctx.uid), &ctx),
            Verdict::Signal
        );
        refused(judge(&other, info(&other, 'Z', ctx.uid), &ctx), "zombie");
        refused(judge(&other, info(&other, 'X', ctx.uid), &ctx), "zombie");
        refused(judge(&other, Ok(None), &ctx), "no such process");
        refused(judge(&other, Err(io::Error::other("boom")), &ctx), "boom");
        let mut later = other.clone();
        later.start_time += 1;
        refused(
            judge(&other, info(&later, 'S', ctx.uid), &ctx),
            "start time",
        );
        let mut elsewhere = other.clone();
        elsewhere.boot_id = "another".into();
        refused(
            judge(&elsewhere, info(&other, 'S', ctx.uid), &ctx),
            "another boot",
        );
        let stranger = ctx.uid.wrapping_add(1);
        refused(judge(&other, info(&other, 'S', stranger), &ctx), "uid");
        let mut root = ctx.clone();
        root.root = true;
        assert_eq!(
            judge(&other, info(&other, 'S', stranger), &root),
            Verdict::Signal,
            "root may stop its own generations that changed uid"
        );
        for pid in [i32::MIN, -1234, -1, 0, 1, ctx.pid_max + 1, i32::MAX] {
            let mut bad = other.clone();
            bad.pid = pid;
            refused(
                judge(&bad, info(&bad, 'S', ctx.uid), &ctx),
                "not a valid pid",
            );
        }
        refused(
            judge(&ctx.me, info(&ctx.me, 'R', ctx.uid), &ctx),
            "our own pid",
        );
        let mut untrusted = ctx.clone();
        untrusted.file = Trust::Untrusted("the pid file is a symbolic link".into());
        refused(
            judge(&other, info(&other, 'S', ctx.uid), &untrusted),
            "symbolic link",
        );
        assert!(send_term(0, None).is_err() && send_term(-1, None).is_err());
        assert!(send_term(1, None).is_err());
    }

    #[test]
    fn both_signal_paths_deliver_term() {
        for use_pidfd in [true, false] {
            let mut sleeper = Sleeper::new();
            let pidfd = open_pidfd(sleeper.pid()).unwrap();
            assert!(pidfd.is_some(), "this kernel has pidfds");
            let fd = if use_pidfd { pidfd.as_ref() } else { None };
            send_term(sleeper.pid(), fd).unwrap();
            let status = sleeper.0.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(libc::SIGTERM)
            );
            // Reaped: the pidfd now names a process that is gone.
            if use_pidfd {
                assert_eq!(send_term(sleeper.pid(), pidfd.as_ref()), Err(Errno::ESRCH));
            }
        }
    }

    #[test]
    fn claim_refuses_strangers_and_records_us() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let sleeper = Sleeper::new();
        let real = sleeper.identity();
        let me = ProcessIdentity::current().unwrap();
        let mut wrong_start = real.clone();
        wrong_start.start_time += 1;
        let mut wrong_boot = real.clone();
        wrong_boot.boot_id = "00000000-0000-0000-0000-000000000000".into();
        let mut too_big = real.clone();
        too_big.pid = procfs::pid_max() + 1;
        let cases = [
            (format!("{}\n", sleeper.pid()), "bare pid"),
            (format!("-{}\n", sleeper.pid()), ""),
            ("garbage\n\u{0}\n".to_string(), ""),
            ("0\n".to_string(), ""),
            ("1\n".to_string(), ""),
            (format!("{}\n", me.pid), ""),
            (format!("x\n{}", line("newest", &wrong_start)), "start time"),
            (format!("x\n{}", line("detached", &wrong_boot)), "boot"),
            (format!("x\n{}", line("newest", &me)), ""),
            (
                format!("x\n{}", line("newest", &too_big)),
                "not a valid pid",
            ),
        ];
        let pid_file = PidFile::open(&path).unwrap();
        for (content, reason) in cases {
            std::fs::write(&path, &content).unwrap();
            let claimed = pid_file.claim().unwrap();
            assert!(claimed.signalled.is_empty(), "{content:?}");
            if reason.is_empty() {
                assert!(claimed.refused.is_empty(), "{content:?}: {claimed:?}");
            } else {
                assert_eq!(claimed.refused.len(), 1, "{content:?}");
                assert!(claimed.refused[0].1.contains(reason), "{claimed:?}");
            }
            assert!(procfs::is_alive(sleeper.pid()), "{content:?}");
            let parsed = parse(&std::fs::read(&path).unwrap());
            assert_eq!(parsed.first_line, Some(me.pid));
            assert_eq!(parsed.entries.len(), 1);
            assert_eq!(parsed.entries[0].identity, me);
            assert_eq!(parsed.entries[0].standing, Standing::Newest);
        }
        pid_file.release().unwrap();
        assert!(!path.exists(), "released: no dead pid left behind");
        drop(sleeper);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claim_signals_proven_generations() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let mut newest = Sleeper::new();
        let mut detached = Sleeper::new();
        let (a, b) = (newest.identity(), detached.identity());
        std::fs::write(
            &path,
            format!("{}\n{}{}", a.pid, line("newest", &a), line("detached", &b)),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pid_file = PidFile::open(&path).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert_eq!(claimed.signalled, [a.pid, b.pid], "{claimed:?}");
        assert!(claimed.refused.is_empty());
        for sleeper in [&mut newest, &mut detached] {
            let status = sleeper.0.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(libc::SIGTERM)
            );
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o022, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_untrusted_file_or_a_zombie_is_not_signalled() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let pid_file = PidFile::open(&path).unwrap();
        let sleeper = Sleeper::new();
        let real = sleeper.identity();
        std::fs::write(&path, format!("{}\n{}", real.pid, line("newest", &real))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert!(claimed.signalled.is_empty());
        assert!(claimed.refused[0].1.contains("writable by group or others"));
        assert!(procfs::is_alive(sleeper.pid()));
        drop(sleeper);

        // A zombie with the right identity.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let zombie = loop {
            let info = ProcessIdentity::of(pid).unwrap().unwrap();
            if info.state == 'Z' {
                break info.identity;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        std::fs::write(&path, format!("{pid}\n{}", line("detached", &zombie))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert!(claimed.signalled.is_empty());
        assert!(claimed.refused[0].1.contains("zombie"), "{claimed:?}");
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let sleeper = Sleeper::new();
        let real = sleeper.identity();
        // The target even holds a valid identity: it is still not believed.
        let precious = dir.join("precious");
        let content = format!("{}\n{}", real.pid, line("newest", &real));
        std::fs::write(&precious, &content).unwrap();
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        let pid_file = PidFile::open(&path).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert!(claimed.signalled.is_empty());
        assert!(procfs::is_alive(sleeper.pid()));
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), content);
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_file());
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.entries[0].identity.pid, std::process::id() as i32);

        // release() leaves a symlink alone too.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        pid_file.release().unwrap();
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), content);
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        drop(sleeper);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_location_names_the_path() {
        let dir = temp_dir();
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let linked = dir.join("linked.pid");
        std::os::unix::fs::symlink(&file, dir.join("linked.pid.lock")).unwrap();
        for path in [dir.join("missing/x.pid"), file.join("x.pid"), linked] {
            let e = PidFile::open(&path).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("pid file {}: ", path.display())),
                "{e}"
            );
            assert!(e.contains("cannot create lock file"), "{e}");
            assert!(e.contains("os error"), "{e}");
        }
        // A directory this user may not write to. Root may write to any
        // mode, but not into sysfs, which refuses to create a file
        // (EACCES, or EROFS where a container mounts it read-only) whoever
        // asks: the check runs either way.
        let (forbidden, reasons) = if nix::unistd::geteuid().is_root() {
            let reasons: &[&str] = &["Permission denied", "Read-only file system"];
            (PathBuf::from("/sys"), reasons)
        } else {
            let ro = dir.join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            let reasons: &[&str] = &["Permission denied"];
            (ro, reasons)
        };
        let path = forbidden.join("seamless-test.pid");
        let e = PidFile::open(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("pid file {}: ", path.display())),
            "{e}"
        );
        assert!(reasons.iter().any(|r| e.contains(r)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn add_detached_then_release() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let pid_file = PidFile::open(&path).unwrap();
        let me = ProcessIdentity::current().unwrap();
        let sleeper = Sleeper::new();
        let newest = sleeper.identity();
        let mut dead = newest.clone();
        dead.start_time += 1;
        std::fs::write(
            &path,
            format!(
                "{}\n{}{}",
                newest.pid,
                line("newest", &newest),
                line("detached", &dead)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        pid_file.add_detached().unwrap();
        pid_file.add_detached().unwrap(); // idempotent
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.first_line, Some(newest.pid));
        assert_eq!(
            parsed.entries,
            [
                Entry {
                    standing: Standing::Newest,
                    identity: newest.clone()
                },
                Entry {
                    standing: Standing::Detached,
                    identity: me.clone()
                }
            ]
        );
        // We exit: the newest (alive, ours) stays.
        pid_file.release().unwrap();
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.first_line, Some(newest.pid));
        assert_eq!(parsed.entries.len(), 1);
        // A file that does not name us is not touched.
        let before = std::fs::read(&path).unwrap();
        pid_file.release().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // The newest dies; we are detached alone and exit: no file left.
        drop(sleeper);
        pid_file.add_detached().unwrap();
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.first_line, Some(me.pid));
        assert_eq!(parsed.entries.len(), 1);
        pid_file.release().unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_serializes() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let pid_file = PidFile::open(&path).unwrap();
        let held = pid_file.lock().unwrap();
        // flock locks belong to the open file: a second open waits.
        let e = match pid_file.lock_within(Duration::from_millis(50)) {
            Err(e) => e,
            Ok(_) => panic!("locked twice"),
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let (tx, rx) = std::sync::mpsc::channel();
        let claimer = {
            let path = path.clone();
            std::thread::spawn(move || {
                let claimed = PidFile::open(&path).unwrap().claim();
                tx.send(()).unwrap();
                claimed.unwrap()
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert!(!path.exists(), "claim went ahead while the lock was held");
        drop(held);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        claimer.join().unwrap();
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_claims_serialize() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let pid_file = PidFile::open(&path).unwrap();
                    for _ in 0..10 {
                        pid_file.claim().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.first_line, Some(std::process::id() as i32));
        assert_eq!(parsed.entries.len(), 1);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            leftovers, 2,
            "pid file and lock file only: no temp files left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_nor_yields_pids_below_two(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let parsed = parse(&bytes);
            proptest::prop_assert!(parsed.first_line.is_none_or(|p| p > 1));
            proptest::prop_assert!(parsed.entries.iter().all(|e| e.identity.pid > 1));
        }

        #[test]
        fn parse_of_near_valid_lines(pid in proptest::num::i64::ANY, start in proptest::num::u64::ANY, sep in "[ \t]{1,3}") {
            let text = format!("{pid}\n{MAGIC}{sep}newest{sep}{pid}{sep}{start}{sep}b\n");
            let parsed = parse(text.as_bytes());
            proptest::prop_assert!(parsed.first_line.is_none_or(|p| p > 1));
            proptest::prop_assert!(parsed.entries.iter().all(|e| e.identity.pid > 1));
            proptest::prop_assert_eq!(parsed.entries.len(), usize::from(pid > 1 && pid <= i64::from(i32::MAX)));
        }
    }
}

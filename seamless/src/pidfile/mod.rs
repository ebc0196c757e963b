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
//! - [`PidFile::claim_provisionally`] (stage 2 with a probation): record
//!   ourselves as the newest generation and keep every recorded one that
//!   still passes the checks as `detached`, owed a TERM when the probation
//!   ends ([`PidFile::claim`] then).
//! - [`PidFile::reinstate`] (a successor died during its probation): name
//!   ourselves the newest again, unless a live newer generation already
//!   is.
//! - [`PidFile::add_detached`] (stage 1, in a generation that never called
//!   `started()`): keep the recorded generations that still pass the checks,
//!   add ourselves as `detached`.
//! - [`PidFile::release`] (this generation exits): when the file names us,
//!   remove our entry and every entry that no longer passes the checks;
//!   remove the file when no entry is left. A file that does not name us
//!   belongs to a newer generation and is left alone, as is a file that
//!   fails the file checks. So after a clean exit the pid file never names
//!   a dead or foreign pid.

mod format;
mod judge;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::Error;
use crate::procfs;
use crate::{report, sys};

use format::{parse, render, Entry, Parsed, Standing};
pub(crate) use judge::open_pidfd;
use judge::{terminate, verify, Context, Trust, Verdict};

const MAX_READ: u64 = 64 * 1024;
const LOCK_WAIT: Duration = Duration::from_secs(5);

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

    /// Stage 2 with a probation: record us as the newest generation,
    /// keeping every earlier one that still passes the checks, as
    /// `detached`: none is signalled now. Returns their pids.
    pub(crate) fn claim_provisionally(&self) -> io::Result<Vec<i32>> {
        let lock = self.lock()?;
        let contents = self.read(&lock)?;
        let ctx = Context::new(contents.trust)?;
        let mut entries = self.still_valid(contents.parsed, &ctx);
        for e in &mut entries {
            e.standing = Standing::Detached;
        }
        let kept = entries.iter().map(|e| e.identity.pid).collect();
        entries.insert(
            0,
            Entry {
                standing: Standing::Newest,
                identity: ctx.me,
            },
        );
        self.write(&lock, &entries)?;
        Ok(kept)
    }

    /// A successor died during its probation: this generation, which
    /// serves on, is the newest again, unless a live generation other
    /// than us is recorded as the newest (a later one took over).
    /// Entries that no longer pass the checks (the dead successor) go.
    pub(crate) fn reinstate(&self) -> io::Result<bool> {
        let lock = self.lock()?;
        let contents = self.read(&lock)?;
        let ctx = Context::new(contents.trust)?;
        let mut entries = self.still_valid(contents.parsed, &ctx);
        if entries.iter().any(|e| e.standing == Standing::Newest) {
            return Ok(false);
        }
        entries.insert(
            0,
            Entry {
                standing: Standing::Newest,
                identity: ctx.me,
            },
        );
        self.write(&lock, &entries)?;
        Ok(true)
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

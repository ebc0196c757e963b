//! The pid file handshake between generations.
//!
//! Format: the first line is a plain decimal pid, for monitoring tools; the
//! lines after it record who each pid is:
//!
//! ```text
//! 12345
//! seamless-v1 newest 12345 <start time> <boot id>
//! seamless-v1 detached 12001 <start time> <boot id>
//! ```
//!
//! `newest` is the generation that last called `started()`; `detached`
//! lines are generations asked to restart before they ever called
//! `started()`: still alive, still owed a TERM by the next `started()`.
//!
//! Every read-modify-write holds `flock(LOCK_EX)` on `<pid file>.lock`, so
//! two generations starting at once cannot both believe they are the
//! newest. The file is replaced atomically: written to a temp file in the
//! same directory (`O_EXCL | O_NOFOLLOW`), fsynced, renamed over the path
//! (a symlink planted at the path is replaced, never followed), and the
//! directory is fsynced.
//!
//! A recorded pid is signalled only when all of these hold: it is > 1, not
//! ours and not above `pid_max`; the file is a regular file owned by our
//! effective uid and not writable by group or others; the process exists,
//! is not a zombie, has the recorded start time and boot id, and runs as
//! our real uid. Anything else is refused with one log line. A file in the
//! original's format (a bare pid) is never signalled: it proves nothing.

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procfs::{self, ProcessIdentity};
use crate::report;

const MAGIC: &str = "seamless-v1";
const MAX_READ: u64 = 64 * 1024;
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
    /// The first line, when it is a plain pid > 1 (only ever logged).
    pub(crate) first_line: Option<i32>,
    pub(crate) entries: Vec<Entry>,
}

/// Parses pid file content. Never panics; never yields a pid <= 1.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let first_line = lines
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    let entries = lines
        .filter_map(|line| {
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
            if pid <= 1 || f.next().is_some() || boot_id.len() > 64 {
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
        })
        .take(64)
        .collect();
    Parsed {
        first_line,
        entries,
    }
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

/// The rules in the module doc, for one entry. `trusted` says whether the
/// file itself passed its checks.
pub(crate) fn verify(entry: &ProcessIdentity, trusted: bool, me: &ProcessIdentity) -> Verdict {
    let refuse = |why: &str| Verdict::Refuse(why.to_owned());
    if !trusted {
        return refuse("the pid file is not a regular file owned by us and private to us");
    }
    if entry.pid <= 1 || entry.pid > procfs::pid_max() {
        return refuse("not a valid pid");
    }
    if entry.pid == me.pid {
        return refuse("it is our own pid");
    }
    if entry.boot_id != me.boot_id {
        return refuse("recorded during another boot");
    }
    let info = match ProcessIdentity::of(entry.pid) {
        Ok(Some(info)) => info,
        Ok(None) => return refuse("no such process"),
        Err(e) => return Verdict::Refuse(format!("cannot read /proc: {e}")),
    };
    if matches!(info.state, 'Z' | 'X' | 'x') {
        return refuse("the process is a zombie");
    }
    if info.identity.start_time != entry.start_time {
        return refuse("another process has that pid now (start time differs)");
    }
    if info.uid != nix::unistd::getuid().as_raw() {
        return refuse("the process belongs to another user");
    }
    Verdict::Signal
}

/// Why the pid file cannot be used.
#[derive(Debug)]
pub(crate) struct PidFileError {
    path: PathBuf,
    what: String,
    source: io::Error,
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid file {}: {}: {}",
            self.path.display(),
            self.what,
            self.source
        )
    }
}

impl std::error::Error for PidFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// What `claim` did.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) signalled: Vec<i32>,
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
    dir: PathBuf,
    name: OsString,
}

struct Locked {
    _file: File, // the lock is released when the file is closed
}

impl PidFile {
    /// Checks at start-up that the location is usable: the directory
    /// exists and the lock file can be created there.
    pub(crate) fn open(path: &Path) -> Result<PidFile, PidFileError> {
        let error = |what: &str, source: io::Error| PidFileError {
            path: path.to_owned(),
            what: what.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .ok_or_else(|| error("no file name", io::ErrorKind::InvalidInput.into()))?
            .to_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut lock_name = name.clone();
        lock_name.push(".lock");
        let pid_file = PidFile {
            path: path.to_owned(),
            lock_path: dir.join(lock_name),
            dir,
            name,
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
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.lock_path)
    }

    fn lock(&self) -> io::Result<Locked> {
        let file = self.open_lock_file()?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock(2) on an fd we own for the duration of the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Locked { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} stayed locked for {LOCK_WAIT:?}",
                        self.lock_path.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads the file under the lock: what it says, and whether it can be
    /// trusted at all.
    fn read(&self, _lock: &Locked) -> io::Result<(Parsed, bool)> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Parsed::default(), true)),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                report::warning!(
                    "pid file {} is a symbolic link: its content is ignored and it will be replaced",
                    self.path.display()
                );
                return Ok((Parsed::default(), false));
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let trusted = meta.file_type().is_file()
            && meta.uid() == nix::unistd::geteuid().as_raw()
            && meta.mode() & 0o022 == 0;
        let mut bytes = Vec::new();
        if meta.file_type().is_file() {
            file.take(MAX_READ).read_to_end(&mut bytes)?;
        }
        Ok((parse(&bytes), trusted))
    }

    /// Replaces the file atomically with `entries` (removes it when empty).
    fn write(&self, _lock: &Locked, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(&self.name);
        tmp_name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = self.dir.join(tmp_name);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            file.write_all(render(entries).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Stage 2: TERM every proven earlier generation, record us as newest.
    pub(crate) fn claim(&self) -> io::Result<Claimed> {
        let lock = self.lock()?;
        let (parsed, trusted) = self.read(&lock)?;
        let me = ProcessIdentity::current()?;
        let mut claimed = Claimed::default();
        if parsed.entries.is_empty() {
            if let Some(pid) = parsed.first_line.filter(|p| *p != me.pid) {
                claimed.refused.push((
                    pid,
                    "no identity recorded (a bare pid proves nothing)".into(),
                ));
            }
        }
        for entry in &parsed.entries {
            match verify(&entry.identity, trusted, &me) {
                Verdict::Signal => match kill(Pid::from_raw(entry.identity.pid), Signal::SIGTERM) {
                    Ok(()) => claimed.signalled.push(entry.identity.pid),
                    Err(e) => claimed
                        .refused
                        .push((entry.identity.pid, format!("kill failed: {e}"))),
                },
                Verdict::Refuse(why) if entry.identity.pid != me.pid => {
                    claimed.refused.push((entry.identity.pid, why))
                }
                Verdict::Refuse(_) => {}
            }
        }
        self.write(
            &lock,
            &[Entry {
                standing: Standing::Newest,
                identity: me,
            }],
        )?;
        Ok(claimed)
    }

    /// Stage 1 in a generation that never called `started()`: record us as
    /// owed a TERM by the next `started()`.
    pub(crate) fn add_detached(&self) -> io::Result<()> {
        let lock = self.lock()?;
        let (parsed, trusted) = self.read(&lock)?;
        let me = ProcessIdentity::current()?;
        let mut entries: Vec<Entry> = parsed
            .entries
            .into_iter()
            .filter(|e| verify(&e.identity, trusted, &me) == Verdict::Signal)
            .collect();
        entries.push(Entry {
            standing: Standing::Detached,
            identity: me,
        });
        self.write(&lock, &entries)
    }

    /// This generation exits: take it out of the file; remove the file when
    /// no live generation is left in it.
    pub(crate) fn release(&self) -> io::Result<()> {
        let lock = self.lock()?;
        let (parsed, trusted) = self.read(&lock)?;
        if !trusted {
            return Ok(());
        }
        let me = ProcessIdentity::current()?;
        let before = parsed.entries.len();
        let entries: Vec<Entry> = parsed
            .entries
            .into_iter()
            .filter(|e| e.identity != me && verify(&e.identity, true, &me) == Verdict::Signal)
            .collect();
        if entries.len() == before && parsed.first_line != Some(me.pid) {
            return Ok(()); // not ours to touch
        }
        self.write(&lock, &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn temp_dir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "seamless-pidfile-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

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
    }
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn render_and_parse_round_trip() {
        let entries = vec![
            Entry {
                standing: Standing::Newest,
                identity: ProcessIdentity {
                    pid: 123,
                    start_time: 456,
                    boot_id: "b".into(),
                },
            },
            Entry {
                standing: Standing::Detached,
                identity: ProcessIdentity {
                    pid: 77,
                    start_time: 9,
                    boot_id: "b".into(),
                },
            },
        ];
        let text = render(&entries);
        assert!(text.starts_with("123\n"));
        let parsed = parse(text.as_bytes());
        assert_eq!(parsed.first_line, Some(123));
        assert_eq!(parsed.entries, entries);
    }

    #[test]
    fn bad_contents_yield_nothing_signallable() {
        for content in [
            "",
            "garbage",
            "-1234\n",
            "0\n",
            "1\n",
            "-1\n",
            "99999999999\n",
            "12\nseamless-v1 newest -5 1 b\n",
            "12\nseamless-v1 newest 1 1 b\n",
            "12\nseamless-v1 newest 0 1 b\n",
            "12\nseamless-v1 boss 12 1 b\n",
            "12\nseamless-v1 newest 12 x b\n",
            "12\nseamless-v1 newest 12 1 b extra\n",
        ] {
            let parsed = parse(content.as_bytes());
            assert!(parsed.entries.is_empty(), "{content:?}");
            assert!(parsed.first_line.is_none_or(|p| p > 1));
        }
    }

    #[test]
    fn claim_refuses_strangers_and_records_us() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let sleeper = Sleeper::new();
        let real = ProcessIdentity::of(sleeper.pid())
            .unwrap()
            .unwrap()
            .identity;
        let me = ProcessIdentity::current().unwrap();
        let cases = [
            format!("{}\n", sleeper.pid()),
            format!("-{}\n", sleeper.pid()),
            format!(
                "x\n{MAGIC} newest {} {} {}\n",
                real.pid,
                real.start_time + 1,
                real.boot_id
            ),
            format!(
                "x\n{MAGIC} newest {} {} other-boot\n",
                real.pid, real.start_time
            ),
            format!(
                "x\n{MAGIC} newest {} {} {}\n",
                me.pid, me.start_time, me.boot_id
            ),
            format!("x\n{MAGIC} newest 4194305 1 {}\n", real.boot_id),
        ];
        let pid_file = PidFile::open(&path).unwrap();
        for content in cases {
            std::fs::write(&path, &content).unwrap();
            let claimed = pid_file.claim().unwrap();
            assert!(claimed.signalled.is_empty(), "{content:?}");
            assert!(procfs::is_alive(sleeper.pid()));
            let parsed = parse(&std::fs::read(&path).unwrap());
            assert_eq!(parsed.first_line, Some(me.pid));
            assert_eq!(parsed.entries[0].identity, me);
        }
        pid_file.release().unwrap();
        assert!(!path.exists(), "released: no dead pid left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claim_signals_a_proven_generation() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let mut sleeper = Sleeper::new();
        let real = ProcessIdentity::of(sleeper.pid())
            .unwrap()
            .unwrap()
            .identity;
        std::fs::write(
            &path,
            format!(
                "{0}\n{MAGIC} detached {0} {1} {2}\n",
                real.pid, real.start_time, real.boot_id
            ),
        )
        .unwrap();
        let pid_file = PidFile::open(&path).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert_eq!(claimed.signalled, [real.pid]);
        let status = sleeper.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let precious = dir.join("precious");
        std::fs::write(&precious, "keep\n").unwrap();
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        let pid_file = PidFile::open(&path).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert!(claimed.signalled.is_empty());
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep\n");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_location_names_the_path() {
        let dir = temp_dir();
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        for path in [dir.join("missing/x.pid"), file.join("x.pid")] {
            let e = PidFile::open(&path).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_claims_serialize() {
        let dir = temp_dir();
        let path = dir.join("d.pid");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || PidFile::open(&path).unwrap().claim().unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let parsed = parse(&std::fs::read(&path).unwrap());
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
        fn parse_of_near_valid_lines(pid in proptest::num::i64::ANY, start in proptest::num::u64::ANY) {
            let text = format!("{pid}\n{MAGIC} newest {pid} {start} b\n");
            let parsed = parse(text.as_bytes());
            proptest::prop_assert!(parsed.entries.iter().all(|e| e.identity.pid > 1));
        }
    }
}

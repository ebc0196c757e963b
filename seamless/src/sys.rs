//! Small system helpers every other module shares; this module imports no
//! other module of the crate.
//!
//! It owns:
//!
//! - waiting: [`poll_timeout`] (a deadline as `poll(2)` wants it) and
//!   [`readable`];
//! - fds: [`is_open`];
//! - placing a file or a socket at a path atomically: [`place`] creates it
//!   under a temporary name in the same directory, then renames it over
//!   the target, so that a reader finds the old one or the new one, never
//!   nothing and never half of one;
//! - unix socket addresses of any length: [`SocketPath`] (`sun_path` holds
//!   107 bytes; a longer path is reached through `/proc/self/fd/<dir fd>/`);
//! - the peer check of every unix socket that crosses a process boundary:
//!   [`check_peer`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};

/// The room in `sockaddr_un.sun_path`, without the final NUL.
pub(crate) const SUN_PATH_MAX: usize = 107;

/// The `poll(2)` timeout for waiting at most `wait` (`None`: for ever),
/// rounded up to the next millisecond so that a loop polling until a
/// deadline wakes at or after it, never just before; clamped to what poll
/// accepts.
pub(crate) fn poll_timeout(wait: Option<Duration>) -> PollTimeout {
    let Some(wait) = wait else {
        return PollTimeout::NONE;
    };
    let ms = wait.as_nanos().div_ceil(1_000_000);
    i32::try_from(ms)
        .ok()
        .and_then(|ms| PollTimeout::try_from(ms).ok())
        .unwrap_or(PollTimeout::MAX)
}

/// Waits until `fd` is readable (or hung up) or `timeout` passes; returns
/// whether it is. An interrupted wait returns `Ok(false)`.
pub(crate) fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match nix::poll::poll(&mut fds, poll_timeout(Some(timeout))) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether the fd number `fd` is open in this process.
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD reads the flags of an fd number and touches no
    // memory; it fails with EBADF on a number that is not open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether `name` is one of the temporary names [`place`] gives.
pub(crate) fn is_temporary_name(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b".") && name.ends_with(b".tmp")
}

/// Places what `create` makes at `path` atomically: `create` is called
/// with a fresh temporary path in the same directory (`.<name>.<pid>.<n>.tmp`,
/// or `.<pid>.<n>.tmp` when that would not fit a socket address), must
/// create the file or socket there, and its result is renamed over `path`.
/// On any error the temporary file is removed. A `create` that finds its
/// temporary path taken (a leftover of a crashed process that had our pid)
/// may fail with `AlreadyExists`: it is called again with the next name.
pub(crate) fn place<T>(
    path: &Path,
    mut create: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<T> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = parent(path);
    let mut attempts = 0;
    loop {
        let unique = format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut long = OsString::from(".");
        long.push(name);
        long.push(&unique);
        // Short enough for a socket's temporary address, reached through a
        // directory fd (see SocketPath).
        let tmp = if long.len() <= SUN_PATH_MAX - 32 {
            dir.join(long)
        } else {
            dir.join(&unique)
        };
        let made = match create(&tmp) {
            Ok(made) => made,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                attempts += 1;
                continue;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        return Ok(made);
    }
}

/// Writes `contents` to a new file at `path` with `mode` (less the umask)
/// through [`place`]: never through a symlink, fsynced before the rename,
/// the directory fsynced after it.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    place(path, |tmp| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    })?;
    File::open(parent(path))?.sync_all()
}

/// A unix socket address for a path of any length.
///
/// `sun_path` holds 107 bytes. A longer path is reached as
/// `/proc/self/fd/<fd>/<file name>` through a descriptor of its directory,
/// which this value keeps open for as long as the address is used (bind,
/// connect). A file name too long even for that is refused.
pub(crate) struct SocketPath {
    address: PathBuf,
    _dir: Option<File>,
}

impl SocketPath {
    /// The address for `path`.
    pub(crate) fn new(path: &Path) -> io::Result<SocketPath> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(SocketPath {
                address: path.to_owned(),
                _dir: None,
            });
        }
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", path.display()),
            )
        })?;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(parent(path))?;
        let address = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        if address.as_os_str().len() > SUN_PATH_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket file name {:?} is longer than a unix socket address can hold",
                    name
                ),
            ));
        }
        Ok(SocketPath {
            address,
            _dir: Some(dir),
        })
    }

    /// The path to bind or connect to while this value lives.
    pub(crate) fn address(&self) -> &Path {
        &self.address
    }
}

/// The identity of the process at the other end of a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) pid: i32,
    pub(crate) uid: u32,
}

/// Checks that the peer of the unix socket `socket` runs as our effective
/// uid (`SO_PEERCRED`); a stranger is an error of kind `PermissionDenied`
/// naming it.
pub(crate) fn check_peer(socket: &impl AsFd) -> io::Result<Peer> {
    let cred = getsockopt(socket, sockopt::PeerCredentials)?;
    let peer = Peer {
        pid: cred.pid(),
        uid: cred.uid(),
    };
    let euid = nix::unistd::geteuid().as_raw();
    if peer.uid != euid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "pid {} runs as uid {}, not as uid {euid}",
                peer.pid, peer.uid
            ),
        ));
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_round_up_and_clamp() {
        let ms = |t: PollTimeout| i32::from(t);
        assert_eq!(ms(poll_timeout(None)), -1);
        assert_eq!(ms(poll_timeout(Some(Duration::ZERO))), 0);
        assert_eq!(ms(poll_timeout(Some(Duration::from_micros(1)))), 1);
        assert_eq!(ms(poll_timeout(Some(Duration::from_millis(50)))), 50);
        assert_eq!(
            ms(poll_timeout(Some(Duration::from_secs(1 << 40)))),
            i32::MAX
        );
    }

    #[test]
    fn open_fds_are_told_from_closed_ones() {
        let file = File::open("/proc/self/stat").unwrap();
        assert!(is_open(file.as_raw_fd()));
        let raw = file.as_raw_fd();
        drop(file);
        assert!(!is_open(raw));
        assert!(!is_open(-1));
    }

    #[test]
    fn place_replaces_atomically_and_cleans_up() {
        let dir = crate::test_support::temp_dir("sys");
        let path = dir.join("a.pid");
        write_file(&path, b"1\n", 0o644).unwrap();
        write_file(&path, b"2\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2\n");
        let failed: io::Result<()> = place(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("no"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"2\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the file itself: {left:?}");
        // A symlink at the target is replaced, not followed.
        let elsewhere = dir.join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        let link = dir.join("link.pid");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        write_file(&link, b"3\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn temporary_names_are_recognised() {
        let dir = crate::test_support::temp_dir("sys");
        let long = "n".repeat(200);
        for name in ["s.sock", long.as_str()] {
            let seen = place(&dir.join(name), |tmp| {
                std::fs::write(tmp, b"")?;
                Ok(tmp.to_owned())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(is_temporary_name(seen.file_name().unwrap()), "{seen:?}");
            assert!(seen.file_name().unwrap().len() <= SUN_PATH_MAX - 32);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sockets_bind_and_connect_at_paths_longer_than_sun_path() {
        let root = crate::test_support::temp_dir("sys");
        let mut dir = root.clone();
        while dir.as_os_str().len() < 150 {
            dir = dir.join("deeper-and-deeper");
        }
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("long.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let listener = {
            let at = SocketPath::new(&path).unwrap();
            std::os::unix::net::UnixListener::bind(at.address()).unwrap()
        };
        let at = SocketPath::new(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(at.address()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(check_peer(&client).unwrap().pid, std::process::id() as i32);
        assert_eq!(check_peer(&server).unwrap().pid, std::process::id() as i32);
        let _ = std::fs::remove_dir_all(root);
    }
}

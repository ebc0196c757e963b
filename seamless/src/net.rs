//! Listening sockets that survive restarts.
//!
//! [`tcp`], [`unix`] and [`udp`] get their socket, in this order:
//!
//! 1. **handed over** by the previous generation, matched by name (see the
//!    `handover` module); a socket of another kind, or bound for another
//!    address than the one asked for (the configuration changed), is
//!    refused with a log line and the next way is tried;
//! 2. **inherited** from systemd socket activation: `LISTEN_FDS` fds from
//!    3, `LISTEN_PID` naming this process or its launcher, matched by
//!    `LISTEN_FDNAMES` or, without names, by kind and address;
//! 3. **bound** afresh: TCP and UDP with `SO_REUSEADDR` and
//!    `SO_REUSEPORT`; a unix socket at a temporary path in the same
//!    directory, then renamed over the target, so that a socket is at the
//!    path at every moment.
//!
//! Whatever the way, the socket is registered for the next generation.
//!
//! Sockets are returned in **non-blocking** mode, ready for
//! `tokio::net::TcpListener::from_std` and the like. A handed-over socket
//! is one open file shared by both generations, and `O_NONBLOCK` belongs to
//! the open file: one convention for every generation keeps one from
//! switching the other's mode under its feet. Blocking programs wait with
//! [`readable`] before `accept` or `recv`.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::handover;
use crate::{report, runtime};

/// A TCP listener named `name`, for `addr`.
///
/// ```no_run
/// let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn tcp(name: &str, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let wanted = describe("tcp", &addrs);
    let socket = obtain(
        name,
        &wanted,
        |fd| matches_inet(fd, Type::STREAM, &addrs),
        || bind_inet(&addrs, Type::STREAM),
    )?;
    Ok(TcpListener::from(socket))
}

/// A UDP socket named `name`, for `addr`.
///
/// ```no_run
/// let socket = seamless::net::udp("dns", "127.0.0.1:5353")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn udp(name: &str, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let wanted = describe("udp", &addrs);
    let socket = obtain(
        name,
        &wanted,
        |fd| matches_inet(fd, Type::DGRAM, &addrs),
        || bind_inet(&addrs, Type::DGRAM),
    )?;
    Ok(UdpSocket::from(socket))
}

/// A unix stream listener named `name`, at `path`.
///
/// ```no_run
/// let listener = seamless::net::unix("ctl", "/tmp/app.sock")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unix(name: &str, path: impl AsRef<Path>) -> io::Result<UnixListener> {
    let path = path.as_ref();
    let wanted = format!("unix {}", path.display());
    let socket = obtain(
        name,
        &wanted,
        |fd| matches_unix(fd, path),
        || bind_unix(path),
    )?;
    Ok(UnixListener::from(socket))
}

/// Waits until `socket` is readable (a connection to accept, a datagram to
/// read) or `timeout` passes; returns whether it is readable.
///
/// ```no_run
/// # use std::time::Duration;
/// let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
/// while !seamless::shutdown().is_triggered() {
///     if seamless::net::readable(&listener, Duration::from_millis(100))? {
///         if let Ok((stream, _)) = listener.accept() {
///             // serve `stream`
/// #           drop(stream);
///         }
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn readable(socket: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
    match nix::poll::poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What a socket is for, as compared across generations: kind and
/// address as the program asked for them, e.g. `tcp 127.0.0.1:8080`.
fn describe(kind: &str, addrs: &[SocketAddr]) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    format!("{kind} {}", addrs.join(","))
}

/// The three ways, in order, then registration.
fn obtain(
    name: &str,
    wanted: &str,
    fits: impl Fn(&OwnedFd) -> bool,
    bind: impl FnOnce() -> io::Result<OwnedFd>,
) -> io::Result<OwnedFd> {
    let fd = match handed_over(name, wanted, &fits)? {
        Some(fd) => fd,
        None => match activated(name, &fits) {
            Some(fd) => fd,
            None => bind()?,
        },
    };
    let socket = Socket::from(fd);
    socket.set_nonblocking(true)?;
    let fd = OwnedFd::from(socket);
    handover::register(name, wanted, fd.as_fd())?;
    Ok(fd)
}

fn handed_over(
    name: &str,
    wanted: &str,
    fits: &impl Fn(&OwnedFd) -> bool,
) -> io::Result<Option<OwnedFd>> {
    let Some(pid_file) = runtime::pid_file() else {
        return Ok(None);
    };
    let endpoint = handover::endpoint_path(pid_file);
    let received = match handover::fetch(&endpoint, name) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            report::warning!("cannot take socket {name:?} over from the previous generation: {e}; binding afresh");
            return Ok(None);
        }
    };
    if received.address != wanted || !fits(&received.fd) {
        report::warning!(
            "the previous generation's socket {name:?} is {:?}, this one asks for {wanted:?}: binding afresh",
            received.address
        );
        return Ok(None);
    }
    report::debug!("socket {name:?} handed over by the previous generation");
    Ok(Some(received.fd))
}

// ------------------------------------------------------ socket activation

/// fds from systemd already taken by a name in this process.
static TAKEN: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// The fds systemd passed, with their names, if `LISTEN_PID` names one of
/// `ours`.
pub(crate) fn parse_listen_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    ours: &[i32],
) -> Vec<(RawFd, Option<String>)> {
    let Some(pid) = listen_pid.and_then(|p| p.trim().parse::<i32>().ok()) else {
        return Vec::new();
    };
    if !ours.contains(&pid) {
        return Vec::new();
    }
    let Some(count) = listen_fds.and_then(|n| n.trim().parse::<i32>().ok()) else {
        return Vec::new();
    };
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    (0..count.clamp(0, 1024))
        .map(|i| (3 + i, names.get(i as usize).map(|n| (*n).to_owned())))
        .collect()
}

fn activated(name: &str, fits: &impl Fn(&OwnedFd) -> bool) -> Option<OwnedFd> {
    let mut ours = vec![std::process::id() as i32];
    ours.extend(runtime::launcher_pid());
    let var = |k: &str| std::env::var(k).ok();
    let passed = parse_listen_env(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        &ours,
    );
    let named = passed.iter().any(|(_, n)| n.is_some());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for (fd, fd_name) in passed {
        if taken.contains(&fd) || (named && fd_name.as_deref() != Some(name)) {
            continue;
        }
        // Only an open socket is taken.
        // SAFETY: borrowed for the duration of the check only.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if nix::sys::stat::fstat(borrowed).map(|s| s.st_mode & libc::S_IFMT) != Ok(libc::S_IFSOCK) {
            continue;
        }
        let Ok(dup) = borrowed.try_clone_to_owned() else {
            continue;
        };
        if !fits(&dup) {
            if named {
                report::warning!(
                    "systemd socket {name:?} (fd {fd}) is not what this program asks for"
                );
            }
            continue;
        }
        taken.insert(fd);
        report::debug!("socket {name:?} inherited from systemd (fd {fd})");
        // The original fd stays open and marked taken; ours is the dup,
        // close-on-exec.
        return Some(dup);
    }
    None
}

// --------------------------------------------------------- fresh binds

fn bind_inet(addrs: &[SocketAddr], ty: Type) -> io::Result<OwnedFd> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addrs {
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(*addr), ty, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&(*addr).into())?;
            if ty == Type::STREAM {
                socket.listen(1024)?;
            }
            Ok(OwnedFd::from(socket))
        })();
        match attempt {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn bind_unix(path: &Path) -> io::Result<OwnedFd> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "socket path has no file name")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    // Atomic: clients find the old socket or the new one, never nothing.
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(OwnedFd::from(listener))
}

// ------------------------------------------------------------- matching

fn matches_inet(fd: &OwnedFd, ty: Type, addrs: &[SocketAddr]) -> bool {
    let Ok(socket) = fd.try_clone().map(Socket::from) else {
        return false;
    };
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    let Some(local) = local.as_socket() else {
        return false;
    };
    socket.r#type().is_ok_and(|t| t == ty)
        && addrs
            .iter()
            .any(|a| a.ip() == local.ip() && (a.port() == 0 || a.port() == local.port()))
}

fn matches_unix(fd: &OwnedFd, path: &Path) -> bool {
    let Ok(socket) = fd.try_clone().map(Socket::from) else {
        return false;
    };
    let is_unix_stream = socket.r#type().is_ok_and(|t| t == Type::STREAM)
        && socket
            .local_addr()
            .is_ok_and(|a| a.domain() == Domain::UNIX);
    // A socket bound at a temporary path and renamed reports the temporary
    // name; the handover checks the path the program asked for instead.
    let _ = path;
    is_unix_stream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_env_is_parsed_as_systemd_sets_it() {
        let fds = parse_listen_env(Some("42"), Some("2"), Some("web:ctl"), &[42]);
        assert_eq!(fds, [(3, Some("web".into())), (4, Some("ctl".into()))]);
        assert!(parse_listen_env(Some("41"), Some("2"), None, &[42]).is_empty());
        assert!(parse_listen_env(None, Some("2"), None, &[42]).is_empty());
        assert!(parse_listen_env(Some("42"), Some("x"), None, &[42]).is_empty());
        assert!(parse_listen_env(Some("42"), Some("-3"), None, &[42]).is_empty());
        assert_eq!(
            parse_listen_env(Some("7"), Some("1"), None, &[42, 7]),
            [(3, None)]
        );
    }

    #[test]
    fn fresh_tcp_and_udp_binds_share_the_port() {
        let a = tcp("net-test-a", "127.0.0.1:0").unwrap();
        let addr = a.local_addr().unwrap();
        // SO_REUSEPORT: another listener on the same port.
        let b = bind_inet(&[addr], Type::STREAM).unwrap();
        assert!(matches_inet(&b, Type::STREAM, &[addr]));
        assert!(!matches_inet(&b, Type::DGRAM, &[addr]));
        let u = udp("net-test-u", "127.0.0.1:0").unwrap();
        assert!(u.local_addr().is_ok());
        assert!(
            tcp("net-test-a", "127.0.0.1:0").is_err(),
            "names are unique"
        );
        handover::clear_registry_for_tests("net-test-a");
        handover::clear_registry_for_tests("net-test-u");
    }

    #[test]
    fn a_unix_socket_is_replaced_without_a_gap() {
        let dir = std::env::temp_dir().join(format!("seamless-net-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _first = bind_unix(&path).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let prober = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut failures = 0;
                for _ in 0..20_000 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if std::os::unix::net::UnixStream::connect(&path).is_err() {
                        failures += 1;
                    }
                }
                failures
            })
        };
        let mut kept = Vec::new();
        for _ in 0..20 {
            kept.push(bind_unix(&path).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // A connect finds a socket at every moment: the old one until the
        // rename, the new one after (old ones stay open in `kept`).
        assert_eq!(prober.join().unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

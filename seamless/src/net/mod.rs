//! Listening sockets that survive restarts.
//!
//! This module owns how a named socket is obtained. [`tcp`], [`unix`] and
//! [`udp`] get their socket, in this order:
//!
//! 1. **handed over** by the previous generation, matched by name (only
//!    when seamless is active, i.e. runs with a pid file). A socket of
//!    another kind, or bound for another address than the one asked for
//!    (the configuration changed), is refused with one warning and the next
//!    way is tried: never a wrong socket;
//! 2. **inherited** from systemd socket activation: `LISTEN_FDS` fds from
//!    3, `LISTEN_PID` naming this process or its launcher, the fd named
//!    `name` in `LISTEN_FDNAMES` or, among the fds without a name of their
//!    own (no names, or systemd's default: the socket unit's name,
//!    `*.socket`), the first of the right kind and address; it is made
//!    close-on-exec;
//! 3. **bound** afresh: TCP and UDP with `SO_REUSEADDR` and `SO_REUSEPORT`
//!    (TCP listens with a backlog of 1024); a unix socket at a temporary
//!    path in the same directory, then renamed over the target (a stale
//!    socket file there included), so that a socket is at the path at
//!    every moment. A path holding anything but a socket is left alone:
//!    an error.
//!
//! Whatever the way, a close-on-exec duplicate of the socket is kept,
//! under its name, for the next generation: the socket stays open in this
//! process until it exits even if the program drops what it got. A name
//! is used once per process; a second socket of the same name is
//! [`io::ErrorKind::InvalidInput`].
//!
//! # Non-blocking
//!
//! Sockets are returned in **non-blocking** mode, ready for
//! `tokio::net::TcpListener::from_std` and the like. A handed-over socket
//! is one open file shared by both generations while they overlap, and
//! `O_NONBLOCK` belongs to the open file, not to the process: one
//! convention for every generation keeps one from switching the other's
//! mode under its feet (a tokio generation stuck in a blocking `accept`, or
//! a blocking one's `accept` failing with `WouldBlock`). Blocking programs
//! use [`accept`], which blocks until a connection or the shutdown and
//! takes `WouldBlock` as "wait again" (the other generation may have taken
//! the connection first), or wait with [`readable_before_shutdown`] before
//! `recv`. Do not call `set_nonblocking(false)` on them.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use socket2::{Domain, SockRef, Socket, Type};

use crate::{handover, report, sys};

mod registry;

pub(crate) use registry::registry;
use registry::Registry;

/// A TCP listener named `name`, for `addr`: handed over, inherited from
/// systemd, or bound afresh (see the [module documentation](self)).
///
/// `addr` may resolve to several addresses: a socket bound to any of them
/// fits, and a fresh bind takes the first that works. Port 0 accepts a
/// handed-over or inherited socket on any port.
///
/// The listener is non-blocking.
///
/// ```no_run
/// let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
/// // tokio: tokio::net::TcpListener::from_std(listener)?, as it is.
/// // Blocking: until the shutdown begins.
/// while let Some((stream, _)) = seamless::net::accept(&listener)? {
///     drop(stream); // serve it
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn tcp(name: &str, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let wanted = Wanted {
        name,
        target: Target::Inet(Type::STREAM, &addrs),
    };
    obtain(&wanted, &Sources::of_process(), registry()).map(TcpListener::from)
}

/// A UDP socket named `name`, for `addr`: handed over, inherited from
/// systemd, or bound afresh (see the [module documentation](self)).
///
/// The socket is non-blocking.
///
/// ```no_run
/// let socket = seamless::net::udp("dns", "127.0.0.1:5353")?;
/// let mut buf = [0u8; 1500];
/// while seamless::net::readable_before_shutdown(&socket)? {
///     if let Ok((n, from)) = socket.recv_from(&mut buf) {
///         socket.send_to(&buf[..n], from)?;
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn udp(name: &str, addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let wanted = Wanted {
        name,
        target: Target::Inet(Type::DGRAM, &addrs),
    };
    obtain(&wanted, &Sources::of_process(), registry()).map(UdpSocket::from)
}

/// A unix stream listener named `name`, at `path`: handed over, inherited
/// from systemd, or bound afresh at a temporary path and renamed over
/// `path` (see the [module documentation](self)).
///
/// The socket file is never unlinked by seamless: the next generation
/// replaces it. The listener is non-blocking.
///
/// ```no_run
/// let listener = seamless::net::unix("ctl", "/run/app/ctl.sock")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unix(name: &str, path: impl AsRef<Path>) -> io::Result<UnixListener> {
    let wanted = Wanted {
        name,
        target: Target::Unix(path.as_ref()),
    };
    obtain(&wanted, &Sources::of_process(), registry()).map(UnixListener::from)
}

/// Waits until `socket` is readable (a connection to accept, a datagram to
/// read) or `timeout` passes; returns whether it is readable. An
/// interrupted wait returns `Ok(false)`.
///
/// To wait for a connection or the shutdown, whichever comes first, with
/// no timeout to poll on, use [`accept`] or [`readable_before_shutdown`].
///
/// ```no_run
/// # use std::time::Duration;
/// let socket = seamless::net::udp("dns", "127.0.0.1:5353")?;
/// if seamless::net::readable(&socket, Duration::from_secs(1))? {
///     // recv_from
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn readable(socket: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    sys::readable(socket.as_fd(), timeout)
}

/// Blocks until `socket` is readable (`true`) or the shutdown begins
/// (`false`), whichever comes first; a shutdown already begun wins. It
/// sleeps in `poll(2)` on the socket and the shutdown's fd (see
/// [`Shutdown`](crate::Shutdown)), so an idle server never wakes.
///
/// For UDP sockets and anything [`accept`] does not cover.
///
/// ```no_run
/// let socket = seamless::net::udp("dns", "127.0.0.1:5353")?;
/// let mut buf = [0u8; 1500];
/// while seamless::net::readable_before_shutdown(&socket)? {
///     match socket.recv_from(&mut buf) {
///         Ok((n, from)) => drop(socket.send_to(&buf[..n], from)),
///         // The other generation read it first.
///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
///         Err(e) => return Err(e),
///     }
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn readable_before_shutdown(socket: &impl AsFd) -> io::Result<bool> {
    readable_before(crate::shutdown::SHUTDOWN.fd()?, socket.as_fd())
}

/// Whether `socket` became readable before `shutdown` did.
fn readable_before(shutdown: BorrowedFd<'_>, socket: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        let mut fds = [
            PollFd::new(shutdown, PollFlags::POLLIN),
            PollFd::new(socket, PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[0].any().unwrap_or(false) {
            return Ok(false);
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(true);
        }
    }
}

/// Accepts the next connection on `listener`, blocking until one comes
/// or the shutdown begins; `None` once the shutdown has begun.
///
/// The listener stays non-blocking (see [Non-blocking](self#non-blocking)):
/// a connection the other generation took first is waited for again, not
/// returned as `WouldBlock`. The stream returned is in blocking mode
/// (Linux does not pass `O_NONBLOCK` on to accepted sockets) and
/// close-on-exec.
///
/// ```no_run
/// let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
/// seamless::started();
/// while let Some((stream, _peer)) = seamless::net::accept(&listener)? {
///     std::thread::spawn(move || {
///         // serve `stream`; it may outlive the shutdown's start
/// #       drop(stream);
///     });
/// }
/// // The shutdown began: stop accepting, let the requests in flight finish.
/// drop(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn accept<L: Accept>(listener: &L) -> io::Result<Option<(L::Stream, L::Addr)>> {
    accept_before(crate::shutdown::SHUTDOWN.fd()?, listener)
}

fn accept_before<L: Accept>(
    shutdown: BorrowedFd<'_>,
    listener: &L,
) -> io::Result<Option<(L::Stream, L::Addr)>> {
    while readable_before(shutdown, listener.as_fd())? {
        match listener.accept_now() {
            Ok(accepted) => return Ok(Some(accepted)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // A connection reset while it waited in the queue is that
            // client's loss, not the listener's.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// A listener [`accept`] takes connections from: std's [`TcpListener`] and
/// [`UnixListener`], as [`tcp`] and [`unix`] return them.
pub trait Accept: AsFd + sealed::Sealed {
    /// The connection: [`std::net::TcpStream`] or
    /// [`std::os::unix::net::UnixStream`].
    type Stream;
    /// The peer's address.
    type Addr;
    /// One `accept(2)`, which may fail with `WouldBlock`.
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)>;
}

impl Accept for TcpListener {
    type Stream = std::net::TcpStream;
    type Addr = SocketAddr;
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)> {
        self.accept()
    }
}

impl Accept for UnixListener {
    type Stream = std::os::unix::net::UnixStream;
    type Addr = std::os::unix::net::SocketAddr;
    fn accept_now(&self) -> io::Result<(Self::Stream, Self::Addr)> {
        self.accept()
    }
}

mod sealed {
    /// Keeps [`Accept`](super::Accept) to the listeners seamless knows.
    pub trait Sealed {}
    impl Sealed for std::net::TcpListener {}
    impl Sealed for std::os::unix::net::UnixListener {}
}

// ---------------------------------------------------------------- origin

/// Where this process's sockets may come from besides a fresh bind, as
/// the daemon's start-up learned it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The previous generation's handover endpoint (seamless is active).
    pub(crate) endpoint: Option<PathBuf>,
    /// The launcher's pid: systemd's `LISTEN_PID` may name it.
    pub(crate) launcher: Option<i32>,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

/// Set once by the daemon's start-up, before user code runs. Before it
/// (or in a process that never split), sockets are bound or inherited by
/// this process's own pid only.
pub(crate) fn set_origin(origin: Origin) {
    let _ = ORIGIN.set(origin);
}

/// The previous generation's endpoint, once the daemon's start-up set it.
pub(crate) fn origin_endpoint() -> Option<PathBuf> {
    ORIGIN.get()?.endpoint.clone()
}

// ------------------------------------------------------------ internals

/// What the program asks for.
struct Wanted<'a> {
    name: &'a str,
    target: Target<'a>,
}

enum Target<'a> {
    /// `Type::STREAM` (TCP) or `Type::DGRAM` (UDP), for any of the
    /// addresses.
    Inet(Type, &'a [SocketAddr]),
    /// A unix stream socket at a path.
    Unix(&'a Path),
}

impl Wanted<'_> {
    /// Kind and address as compared across generations, e.g.
    /// `tcp 127.0.0.1:8080` or `unix /run/app.sock`. Keep the format: the
    /// previous generation may run an older version.
    fn describe(&self) -> String {
        match self.target {
            Target::Inet(ty, addrs) => {
                let kind = if ty == Type::STREAM { "tcp" } else { "udp" };
                let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                format!("{kind} {}", addrs.join(","))
            }
            Target::Unix(path) => format!("unix {}", path.display()),
        }
    }

    fn socket_type(&self) -> Type {
        match self.target {
            Target::Inet(ty, _) => ty,
            Target::Unix(_) => Type::STREAM,
        }
    }

    /// Whether `fd` is the socket asked for; if not, what it is instead.
    fn fits(&self, fd: BorrowedFd<'_>) -> Result<(), String> {
        let socket = SockRef::from(&fd);
        let ty = socket.r#type().map_err(|e| format!("not a socket ({e})"))?;
        let domain = socket
            .domain()
            .map_err(|e| format!("of unknown domain ({e})"))?;
        let local = socket
            .local_addr()
            .map_err(|e| format!("of unknown address ({e})"))?;
        let what = describe_socket(ty, domain, &local);
        if ty != self.socket_type() {
            return Err(what);
        }
        if ty == Type::STREAM && !socket.is_listener().unwrap_or(false) {
            return Err(format!("{what}, not listening"));
        }
        match self.target {
            Target::Inet(_, addrs) => {
                let fits = local.as_socket().is_some_and(|local| {
                    addrs.iter().any(|a| {
                        a.ip() == local.ip() && (a.port() == 0 || a.port() == local.port())
                    })
                });
                if !fits || !(domain == Domain::IPV4 || domain == Domain::IPV6) {
                    return Err(what);
                }
            }
            Target::Unix(path) => {
                let fits = domain == Domain::UNIX
                    && local
                        .as_pathname()
                        .is_some_and(|bound| same_unix_path(bound, path));
                if !fits {
                    return Err(what);
                }
            }
        }
        Ok(())
    }

    fn bind(&self) -> io::Result<OwnedFd> {
        match self.target {
            Target::Inet(ty, addrs) => bind_inet(addrs, ty),
            Target::Unix(path) => bind_unix(path),
        }
    }
}

fn describe_socket(ty: Type, domain: Domain, local: &socket2::SockAddr) -> String {
    let kind = match (domain, ty) {
        (Domain::UNIX, Type::STREAM) => "unix stream",
        (Domain::UNIX, Type::DGRAM) => "unix datagram",
        (_, Type::STREAM) => "tcp",
        (_, Type::DGRAM) => "udp",
        _ => "other",
    };
    let at = if let Some(a) = local.as_socket() {
        a.to_string()
    } else if let Some(p) = local.as_pathname() {
        p.display().to_string()
    } else {
        "an unnamed address".to_owned()
    };
    format!("a {kind} socket at {at}")
}

/// Where a socket may come from besides a fresh bind.
struct Sources<'a> {
    /// The previous generation's handover endpoint.
    endpoint: Option<PathBuf>,
    /// fds passed by systemd, with their names.
    systemd: Vec<(RawFd, Option<String>)>,
    /// systemd fds this process has taken already.
    taken: &'a Mutex<Vec<RawFd>>,
}

/// systemd fds taken by this process: each is owned once.
static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

impl Sources<'static> {
    fn of_process() -> Sources<'static> {
        let origin = ORIGIN.get().cloned().unwrap_or_default();
        let endpoint = origin.endpoint;
        let mut ours = vec![std::process::id() as i32];
        ours.extend(origin.launcher);
        let var = |k: &str| std::env::var(k).ok();
        let systemd = parse_listen_env(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            &ours,
        );
        Sources {
            endpoint,
            systemd,
            taken: &TAKEN,
        }
    }
}

/// The three ways, in order, then registration.
fn obtain(
    wanted: &Wanted<'_>,
    sources: &Sources<'_>,
    registry: &Arc<Registry>,
) -> io::Result<OwnedFd> {
    // First, so that a duplicate name changes nothing (a unix bind would
    // replace the first socket's file).
    let reservation = registry.reserve(wanted.name)?;
    let fd = match handed_over(wanted, sources.endpoint.as_deref()) {
        Some(fd) => fd,
        None => match activated(wanted, &sources.systemd, sources.taken) {
            Some(fd) => fd,
            None => {
                let fd = wanted.bind()?;
                report::debug!(
                    "socket {:?} bound afresh: {}",
                    wanted.name,
                    wanted.describe()
                );
                fd
            }
        },
    };
    SockRef::from(&fd).set_nonblocking(true)?;
    reservation.fill(&wanted.describe(), fd.as_fd())?;
    Ok(fd)
}

fn handed_over(wanted: &Wanted<'_>, endpoint: Option<&Path>) -> Option<OwnedFd> {
    let name = wanted.name;
    let received = match handover::fetch(endpoint?, name) {
        Ok(Some(received)) => received,
        Ok(None) => return None,
        Err(e) => {
            report::warning!(
                "cannot take socket {name:?} over from the previous generation: {e}; trying the next way"
            );
            return None;
        }
    };
    let asked = wanted.describe();
    if received.address != asked {
        report::warning!(
            "the previous generation's socket {name:?} is for {:?}, this one asks for {asked:?} (configuration changed?): not taken over, binding afresh",
            received.address
        );
        return None;
    }
    if let Err(what) = wanted.fits(received.fd.as_fd()) {
        report::warning!(
            "the previous generation's socket {name:?} is {what}, this one asks for {asked:?}: not taken over, binding afresh"
        );
        return None;
    }
    report::debug!("socket {name:?} handed over by the previous generation");
    Some(received.fd)
}

// ------------------------------------------------------ socket activation

/// The fds systemd passed (from 3), with their names, if `listen_pid`
/// names one of `ours`. Names count only when there is one per fd, as
/// `sd_listen_fds_with_names` has it.
fn parse_listen_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    ours: &[i32],
) -> Vec<(RawFd, Option<String>)> {
    const FIRST: RawFd = 3; // SD_LISTEN_FDS_START
    let Some(pid) = listen_pid.and_then(|p| p.trim().parse::<i32>().ok()) else {
        return Vec::new();
    };
    if pid <= 0 || !ours.contains(&pid) {
        return Vec::new();
    }
    let Some(count) = listen_fds.and_then(|n| n.trim().parse::<i32>().ok()) else {
        return Vec::new();
    };
    let count = count.clamp(0, 65_536);
    let names: Option<Vec<&str>> = listen_fdnames
        .map(|n| n.split(':').collect::<Vec<_>>())
        .filter(|n| n.len() == count as usize);
    (0..count)
        .map(|i| {
            let name = names.as_ref().map(|n| n[i as usize].to_owned());
            (FIRST + i, name)
        })
        .collect()
}

fn activated(
    wanted: &Wanted<'_>,
    passed: &[(RawFd, Option<String>)],
    taken: &Mutex<Vec<RawFd>>,
) -> Option<OwnedFd> {
    if passed.is_empty() {
        return None;
    }
    let name = wanted.name;
    let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
    for (fd, fd_name) in passed {
        let fd = *fd;
        // Without `FileDescriptorName=`, systemd names an fd after its
        // socket unit (`web.socket`): a name nobody chose, so kind and
        // address decide, as for an fd without a name.
        let chosen = fd_name.as_deref().filter(|n| !n.ends_with(".socket"));
        if taken.contains(&fd) || chosen.is_some_and(|n| n != name) {
            continue;
        }
        if !sys::is_open(fd) {
            continue;
        }
        // SAFETY: the fd is open (just checked) and systemd passed it to
        // this process; it is borrowed only for the checks below, while
        // `taken` is locked, and nothing in this crate closes it meanwhile.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Err(what) = wanted.fits(borrowed) {
            if chosen.is_some() {
                report::warning!(
                    "systemd passed socket {name:?} (fd {fd}), but it is {what}, this program asks for {:?}: not taken, binding afresh",
                    wanted.describe()
                );
            }
            continue;
        }
        if let Err(e) = SockRef::from(&borrowed).set_cloexec(true) {
            report::warning!(
                "systemd socket {name:?} (fd {fd}): cannot make it close-on-exec: {e}"
            );
            continue;
        }
        taken.push(fd);
        report::debug!("socket {name:?} inherited from systemd (fd {fd})");
        // SAFETY: socket activation hands the passed fds to the process;
        // `taken` makes sure this one is owned once, from here on by the
        // caller.
        return Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    None
}

// --------------------------------------------------------- fresh binds

fn bind_inet(addrs: &[SocketAddr], ty: Type) -> io::Result<OwnedFd> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addrs {
        let attempt = (|| -> io::Result<OwnedFd> {
            let socket = Socket::new(Domain::for_address(*addr), ty, None)?; // close-on-exec
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
            Err(e) => last = io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")),
        }
    }
    Err(last)
}

fn bind_unix(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: not replacing it",
                    path.display()
                ),
            ))
        }
        _ => {}
    }
    // Atomic: a client finds the old socket or the new one, never nothing.
    let listener = sys::place(path, |tmp| UnixListener::bind(tmp))?; // close-on-exec
    Ok(OwnedFd::from(listener))
}

/// Whether a unix socket bound at `bound` serves `wanted`: bound there, or
/// bound at one of our temporary names in the same directory and renamed
/// there.
fn same_unix_path(bound: &Path, wanted: &Path) -> bool {
    if bound == wanted {
        return true;
    }
    let (Some(bound_name), Some(wanted_name)) = (bound.file_name(), wanted.file_name()) else {
        return false;
    };
    let dir = |p: &Path| {
        let d = sys::parent(p);
        d.canonicalize().unwrap_or_else(|_| d.to_owned())
    };
    if dir(bound) != dir(wanted) {
        return false;
    }
    bound_name == wanted_name || sys::is_temporary_name(bound_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cloexec;
    use std::net::{TcpStream, UdpSocket};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    fn temp_dir() -> PathBuf {
        crate::test_support::temp_dir("net")
    }

    fn sources<'a>(endpoint: Option<&Path>, taken: &'a Mutex<Vec<RawFd>>) -> Sources<'a> {
        Sources {
            endpoint: endpoint.map(Path::to_owned),
            systemd: Vec::new(),
            taken,
        }
    }

    fn tcp_in(
        registry: &Arc<Registry>,
        sources: &Sources<'_>,
        name: &str,
        addr: SocketAddr,
    ) -> io::Result<TcpListener> {
        let addrs = [addr];
        let wanted = Wanted {
            name,
            target: Target::Inet(Type::STREAM, &addrs),
        };
        obtain(&wanted, sources, registry).map(TcpListener::from)
    }

    fn same_socket(a: &impl AsRawFd, b: &impl AsRawFd) -> bool {
        let link = |fd: RawFd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        link(a.as_raw_fd()) == link(b.as_raw_fd())
    }

    #[test]
    fn accept_returns_connections_until_the_shutdown_then_none() {
        let latch: &'static crate::shutdown::Latch =
            Box::leak(Box::new(crate::shutdown::Latch::new()));
        let shutdown = latch.fd().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (stream, peer) = accept_before(shutdown, &listener)
            .unwrap()
            .expect("a connection");
        assert_eq!(peer, client.local_addr().unwrap());
        let flags = nix::fcntl::fcntl(&stream, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
        assert!(
            !flags.contains(nix::fcntl::OFlag::O_NONBLOCK),
            "a blocking stream"
        );
        assert!(cloexec(&stream));

        // Nothing queued: it blocks until the shutdown.
        let waiter = std::thread::spawn(move || accept_before(latch.fd().unwrap(), &listener));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it blocks while nothing comes");
        latch.open();
        assert!(waiter.join().unwrap().unwrap().is_none());

        // A shutdown already begun wins over a waiting connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let _queued = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(readable(&listener, Duration::from_secs(1)).unwrap());
        assert!(accept_before(shutdown, &listener).unwrap().is_none());
    }

    /// Serializes the tests that set `LISTEN_*` in the environment.
    static ENV: Mutex<()> = Mutex::new(());

    #[test]
    fn listen_env_is_parsed_as_systemd_sets_it() {
        let fds = parse_listen_env(Some("42"), Some("2"), Some("web:ctl"), &[42]);
        assert_eq!(fds, [(3, Some("web".into())), (4, Some("ctl".into()))]);
        assert!(parse_listen_env(Some("41"), Some("2"), None, &[42]).is_empty());
        assert!(parse_listen_env(None, Some("2"), None, &[42]).is_empty());
        assert!(parse_listen_env(Some("42"), None, None, &[42]).is_empty());
        assert!(parse_listen_env(Some("42"), Some("x"), None, &[42]).is_empty());
        assert!(parse_listen_env(Some("42"), Some("-3"), None, &[42]).is_empty());
        assert!(parse_listen_env(Some("0"), Some("1"), None, &[0]).is_empty());
        // LISTEN_PID may name the launcher.
        assert_eq!(
            parse_listen_env(Some("7"), Some("1"), None, &[42, 7]),
            [(3, None)]
        );
        // Names that do not match the count are ignored.
        assert_eq!(
            parse_listen_env(Some("42"), Some("2"), Some("web"), &[42]),
            [(3, None), (4, None)]
        );
    }

    #[test]
    fn fresh_tcp_and_udp_binds_share_the_port() {
        let registry = Registry::new();
        let taken = Mutex::new(Vec::new());
        let src = sources(None, &taken);
        let a = tcp_in(&registry, &src, "a", "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        // SO_REUSEPORT: another listener on the same port.
        let b = tcp_in(&registry, &src, "b", addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        assert!(cloexec(&a) && cloexec(&b));
        let mut flags = nix::fcntl::fcntl(a.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        flags &= libc::O_NONBLOCK;
        assert_ne!(flags, 0, "non-blocking");
        let udp_addrs = ["127.0.0.1:0".parse().unwrap()];
        let u = obtain(
            &Wanted {
                name: "u",
                target: Target::Inet(Type::DGRAM, &udp_addrs),
            },
            &src,
            &registry,
        )
        .map(UdpSocket::from)
        .unwrap();
        let wanted = Wanted {
            name: "x",
            target: Target::Inet(Type::STREAM, &udp_addrs),
        };
        assert!(wanted.fits(a.as_fd()).is_ok());
        assert!(wanted
            .fits(u.as_fd())
            .unwrap_err()
            .starts_with("a udp socket"));
        // Names are unique in a process.
        let err = tcp_in(&registry, &src, "a", "127.0.0.1:0".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_duplicate_unix_name_leaves_the_first_socket_in_place() {
        let dir = temp_dir();
        let path = dir.join("s.sock");
        let registry = Registry::new();
        let taken = Mutex::new(Vec::new());
        let src = sources(None, &taken);
        let unix = |name| {
            obtain(
                &Wanted {
                    name,
                    target: Target::Unix(&path),
                },
                &src,
                &registry,
            )
        };
        let first = UnixListener::from(unix("ctl").unwrap());
        assert!(unix("ctl").is_err());
        let _client = UnixStream::connect(&path).unwrap();
        assert!(readable(&first, Duration::from_secs(1)).unwrap());
        first.accept().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn handover_takes_the_same_socket_and_queue() {
        let dir = temp_dir();
        let endpoint_path = dir.join("app.pid.handover");
        let taken = Mutex::new(Vec::new());
        // The old generation.
        let old = Registry::new();
        let old_listener = tcp_in(
            &old,
            &sources(None, &taken),
            "web",
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = old_listener.local_addr().unwrap();
        let _endpoint = handover::open_endpoint(&endpoint_path, old.clone()).unwrap();
        let _queued = TcpStream::connect(addr).unwrap();
        // The new generation asks for the same thing: 127.0.0.1:0.
        let new = Registry::new();
        let src = sources(Some(&endpoint_path), &taken);
        let listener = tcp_in(&new, &src, "web", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(same_socket(&listener, &old_listener));
        assert!(cloexec(&listener));
        assert!(readable(&listener, Duration::from_secs(1)).unwrap());
        listener
            .accept()
            .expect("the connection queued before the handover");
        // A name the old generation does not have: bound afresh.
        let other = tcp_in(&new, &src, "admin", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(!same_socket(&other, &old_listener));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_address_or_kind_is_bound_afresh() {
        let dir = temp_dir();
        let endpoint_path = dir.join("ep");
        let taken = Mutex::new(Vec::new());
        let old = Registry::new();
        let old_src = sources(None, &taken);
        let old_listener = tcp_in(&old, &old_src, "web", "127.0.0.1:0".parse().unwrap()).unwrap();
        let old_addr = old_listener.local_addr().unwrap();
        let udp_addrs = ["127.0.0.1:0".parse().unwrap()];
        let old_udp = obtain(
            &Wanted {
                name: "dns",
                target: Target::Inet(Type::DGRAM, &udp_addrs),
            },
            &old_src,
            &old,
        )
        .unwrap();
        let _endpoint = handover::open_endpoint(&endpoint_path, old.clone()).unwrap();

        let new = Registry::new();
        let src = sources(Some(&endpoint_path), &taken);
        // Another port: a fresh socket, not the old one.
        let moved = tcp_in(&new, &src, "web", "127.0.0.2:0".parse().unwrap()).unwrap();
        assert!(!same_socket(&moved, &old_listener));
        assert_eq!(moved.local_addr().unwrap().ip().to_string(), "127.0.0.2");
        // Same name, another kind: asked as TCP, the old one is UDP.
        let kind = tcp_in(&new, &src, "dns", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(!same_socket(&kind, &old_udp));
        // A lying old generation (right address text, wrong socket) is
        // caught by the check of the fd itself.
        let liar = Registry::new();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        liar.reserve("web")
            .unwrap()
            .fill(&format!("tcp {old_addr}"), udp.as_fd())
            .unwrap();
        let liar_path = dir.join("liar");
        let _liar_endpoint = handover::open_endpoint(&liar_path, liar).unwrap();
        let src = sources(Some(&liar_path), &taken);
        let fresh = tcp_in(&Registry::new(), &src, "web", old_addr).unwrap();
        assert!(!same_socket(&fresh, &udp));
        assert_eq!(fresh.local_addr().unwrap(), old_addr, "SO_REUSEPORT");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_sockets_are_handed_over_despite_their_temporary_name() {
        let dir = temp_dir();
        let path = dir.join("app.sock");
        let endpoint_path = dir.join("ep");
        let taken = Mutex::new(Vec::new());
        let unix = |registry: &Arc<Registry>, src: &Sources<'_>, path: &Path| {
            obtain(
                &Wanted {
                    name: "ctl",
                    target: Target::Unix(path),
                },
                src,
                registry,
            )
            .map(UnixListener::from)
        };
        let old = Registry::new();
        let old_listener = unix(&old, &sources(None, &taken), &path).unwrap();
        let _endpoint = handover::open_endpoint(&endpoint_path, old).unwrap();
        let _queued = UnixStream::connect(&path).unwrap();
        let src = sources(Some(&endpoint_path), &taken);
        let listener = unix(&Registry::new(), &src, &path).unwrap();
        assert!(same_socket(&listener, &old_listener));
        listener.accept().unwrap();
        // Another path: bound afresh.
        let other = unix(&Registry::new(), &src, &dir.join("other.sock")).unwrap();
        assert!(!same_socket(&other, &old_listener));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_unix_socket_is_replaced_without_a_gap() {
        let dir = temp_dir();
        let path = dir.join("s.sock");
        // A stale socket file: nobody listens.
        drop(UnixListener::bind(&path).unwrap());
        assert_eq!(
            UnixStream::connect(&path).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        let first = bind_unix(&path).unwrap();
        UnixStream::connect(&path).expect("the stale file was replaced");
        let stop = Arc::new(AtomicBool::new(false));
        let tries = Arc::new(AtomicUsize::new(0));
        let prober = {
            let (path, stop, tries) = (path.clone(), stop.clone(), tries.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) && tries.load(Ordering::SeqCst) < 100_000 {
                    tries.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = UnixStream::connect(&path) {
                        failures.push(e.kind());
                    }
                }
                failures
            })
        };
        // Each socket stays open (the old generation still holds it) while
        // the next one is renamed over the path. Queued connections are
        // drained, so that a full backlog never makes the prober wait.
        let drain = |kept: &[UnixListener]| {
            for listener in kept {
                while listener.accept().is_ok() {}
            }
        };
        let mut kept = vec![UnixListener::from(first)];
        kept[0].set_nonblocking(true).unwrap();
        for _ in 0..50 {
            // Rebind while the prober is busy connecting.
            let seen = tries.load(Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while tries.load(Ordering::SeqCst) < seen + 20 && std::time::Instant::now() < deadline {
                drain(&kept);
                std::thread::yield_now();
            }
            let next = UnixListener::from(bind_unix(&path).unwrap());
            next.set_nonblocking(true).unwrap();
            kept.push(next);
            drain(&kept);
        }
        stop.store(true, Ordering::SeqCst);
        while !prober.is_finished() {
            drain(&kept);
            std::thread::yield_now();
        }
        let failures = prober.join().unwrap();
        assert!(tries.load(Ordering::SeqCst) >= 50 * 20);
        assert_eq!(failures, [], "a connect found no socket");
        // Only the target is left in the directory: no temporary files.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.sock"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_not_replaced() {
        let dir = temp_dir();
        let path = dir.join("important");
        std::fs::write(&path, "data").unwrap();
        assert_eq!(
            bind_unix(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn systemd_fds_are_picked_by_name_or_by_kind_and_address() {
        // fds are passed as systemd would, but at free numbers: `activated`
        // takes the list, not the environment.
        let web = TcpListener::bind("127.0.0.1:0").unwrap();
        let web_addr = web.local_addr().unwrap();
        let dns = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (web_fd, dns_fd) = (web.into_raw_fd(), dns.into_raw_fd());
        let taken = Mutex::new(Vec::new());
        let want_web = [web_addr];
        let web_wanted = Wanted {
            name: "web",
            target: Target::Inet(Type::STREAM, &want_web),
        };
        // Named: the name decides; the wrong kind under the name is refused.
        let named = [
            (dns_fd, Some("web".to_owned())),
            (web_fd, Some("other".to_owned())),
        ];
        assert!(activated(&web_wanted, &named, &taken).is_none());
        let named = [
            (dns_fd, Some("dns".to_owned())),
            (web_fd, Some("web".to_owned())),
        ];
        let got = activated(&web_wanted, &named, &taken).expect("by name");
        assert_eq!(got.as_raw_fd(), web_fd);
        assert!(cloexec(&got));
        // Taken once only.
        assert!(activated(&web_wanted, &named, &taken).is_none());
        drop(got);
        // Unnamed: kind and address decide.
        taken.lock().unwrap().clear();
        let dns = UdpSocket::from(
            // SAFETY: dns_fd came from into_raw_fd above and is owned by
            // nothing else.
            unsafe { OwnedFd::from_raw_fd(dns_fd) },
        );
        let dns_addr = [dns.local_addr().unwrap()];
        let dns_fd = dns.into_raw_fd();
        let unnamed = [(dns_fd, None)];
        assert!(activated(&web_wanted, &unnamed, &taken).is_none());
        let dns_wanted = Wanted {
            name: "whatever",
            target: Target::Inet(Type::DGRAM, &dns_addr),
        };
        let got = activated(&dns_wanted, &unnamed, &taken).expect("by kind and address");
        assert_eq!(got.as_raw_fd(), dns_fd);
        drop(got);
        // systemd's default name, the socket unit's: kind and address
        // decide, next to an fd named by `FileDescriptorName=`.
        taken.lock().unwrap().clear();
        let web = TcpListener::bind("127.0.0.1:0").unwrap();
        let want_web = [web.local_addr().unwrap()];
        let web_wanted = Wanted {
            name: "web",
            target: Target::Inet(Type::STREAM, &want_web),
        };
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let web_fd = web.into_raw_fd();
        let default_named = [
            (other.as_raw_fd(), Some("admin".to_owned())),
            (web_fd, Some("myapp.socket".to_owned())),
        ];
        let got = activated(&web_wanted, &default_named, &taken).expect("by kind and address");
        assert_eq!(got.as_raw_fd(), web_fd);
    }

    #[test]
    fn systemd_fds_are_taken_from_the_real_environment() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A free fd number; systemd numbers from 3, so the fds before ours
        // get names that no test asks for.
        let fd = nix::fcntl::fcntl(listener.as_fd(), nix::fcntl::FcntlArg::F_DUPFD(500)).unwrap();
        drop(listener);
        let count = fd - 2;
        let mut names = vec!["seamless-test-not-ours"; count as usize];
        names[(fd - 3) as usize] = "seamless-test-sd-web";
        std::env::set_var("LISTEN_PID", std::process::id().to_string());
        std::env::set_var("LISTEN_FDS", count.to_string());
        std::env::set_var("LISTEN_FDNAMES", names.join(":"));
        let result = tcp("seamless-test-sd-web", addr);
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        let got = result.unwrap();
        assert_eq!(got.as_raw_fd(), fd, "the fd systemd passed, not a new one");
        assert_eq!(got.local_addr().unwrap(), addr);
        assert!(cloexec(&got));
    }
}

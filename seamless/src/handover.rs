//! A generation's endpoint, and its client.
//!
//! This module owns the wire between processes of one service and knows
//! nothing of what is served (the daemon answers through a [`Service`];
//! `net`'s registry is a [`Lookup`]):
//!
//! - the **endpoint**: a unix stream socket, bound at a temporary path,
//!   made mode 0600 and renamed into place, served by a thread named
//!   `seamless-handover` until the [`Endpoint`] is dropped, when its file
//!   is removed if it is still ours (same inode). Each generation opens one
//!   at start-up at [`control_path`] (`<pid file>.<pid>.ctl`), and at
//!   stage 1 also links it at [`endpoint_path`] (`<pid file>.handover`),
//!   where the next generation looks. Paths longer than a unix socket
//!   address can hold are no obstacle ([`sys::SocketPath`]);
//! - the **client**: [`ask`] sends one request and reads one answer;
//!   [`fetch`] asks for a socket by name.
//!
//! The requests and answers are those of [`crate::wire`]: versioned lines,
//! one request per connection, fds attached with `SCM_RIGHTS`. A peer that
//! speaks another version is refused with a log line naming its pid.
//!
//! # Against hostile or broken peers
//!
//! - Both sides check the other's uid (`SO_PEERCRED`) against our
//!   effective uid; a stranger is logged and hung up on, unanswered.
//! - A request must arrive whole within 2 s and is at most 512 bytes;
//!   anything longer, not UTF-8 or late is dropped with the connection.
//! - A peer whose request is already there when it is accepted is answered
//!   at once; any other gets a short-lived thread of its own (16 at most at
//!   once), so a peer that never speaks holds up nobody.
//! - Every fd the server opens for a connection (the accepted stream, the
//!   duplicates it sends) is closed when the connection ends. The client
//!   receives with `MSG_CMSG_CLOEXEC`, takes at most the fds it asked for,
//!   reads a bounded answer, and closes anything extra.
//!
//! Both generations then hold the same socket: one accept queue, nothing
//! reset when the old generation stops accepting.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::wire::{self, Head, Refusal, Request};
use crate::{report, sys};

/// The longest socket name, in bytes.
pub(crate) const MAX_NAME: usize = wire::MAX_NAME;
/// The most fds an answer may carry.
pub(crate) const MAX_FDS: usize = 16;
/// How long a peer may take to send its whole request.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`fetch`] may take, connect to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer to a listener request.
const MAX_LISTENER_ANSWER: usize = 4096;
/// Peers served on threads of their own at once, per endpoint.
const MAX_IN_FLIGHT: usize = 16;
/// How long the serving thread pauses after a failed poll or accept
/// (EMFILE and the like), so as not to spin; it waits on nothing else.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What the endpoint serves: the sockets this generation may hand on.
pub(crate) trait Lookup: Send + Sync + 'static {
    /// A fresh duplicate of the socket named `name`, with the kind and
    /// address the program asked for (e.g. `tcp 127.0.0.1:8080`).
    fn lookup(&self, name: &str) -> io::Result<Option<(String, OwnedFd)>>;
}

/// An answer to send: its head, a body, fds.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) head: Head,
    pub(crate) body: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Reply {
    pub(crate) fn head(head: Head) -> Reply {
        Reply {
            head,
            body: Vec::new(),
            fds: Vec::new(),
        }
    }

    pub(crate) fn refused(reason: impl Into<String>) -> Reply {
        Reply::head(Head::Refused(reason.into()))
    }

    /// The answer to `listener <name>`.
    pub(crate) fn listener(sockets: &dyn Lookup, name: &str) -> Reply {
        match sockets.lookup(name) {
            Ok(None) => Reply::head(Head::None),
            Ok(Some((address, fd))) => Reply {
                head: Head::Ok(address),
                body: Vec::new(),
                fds: vec![fd],
            },
            Err(e) => Reply::refused(format!("cannot duplicate socket {name:?}: {e}")),
        }
    }
}

/// What answers the requests an endpoint receives.
pub(crate) trait Service: Send + Sync + 'static {
    /// The answer to `request` from `peer` (already checked: our uid).
    fn answer(&self, peer: sys::Peer, request: Request) -> Reply;
}

/// An endpoint that hands on sockets, and nothing else.
#[cfg(test)]
struct Listeners(Arc<dyn Lookup>);

#[cfg(test)]
impl Service for Listeners {
    fn answer(&self, _peer: sys::Peer, request: Request) -> Reply {
        match request {
            Request::Listener(name) => Reply::listener(&*self.0, &name),
            _ => Reply::refused("not served by this endpoint"),
        }
    }
}

/// A socket name must fit a request: 1 to [`MAX_NAME`] bytes, no newline,
/// no NUL.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    if !wire::name_ok(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid name {name:?}: 1 to {MAX_NAME} bytes, no newline or NUL"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- paths

/// Where the previous generation's endpoint is linked at stage 1:
/// `<pid_file>.handover`, next to it. A file name too long to be reached
/// as a socket address even through a directory fd (see
/// [`sys::SocketPath`]) is replaced by `.<hash>.handover`, the same in
/// every generation.
pub(crate) fn endpoint_path(pid_file: &Path) -> PathBuf {
    sys::parent(pid_file).join(short_name(pid_file, ".handover"))
}

/// Where the generation `pid` keeps its endpoint from start-up to exit:
/// `<pid_file>.<pid>.ctl` (or `.<hash>.<pid>.ctl`, see [`endpoint_path`]).
pub(crate) fn control_path(pid_file: &Path, pid: i32) -> PathBuf {
    sys::parent(pid_file).join(short_name(pid_file, &format!(".{pid}.ctl")))
}

/// Every `(pid, path)` of a [`control_path`] of `pid_file` found in its
/// directory (alive or stale), sorted by pid.
pub(crate) fn control_paths(pid_file: &Path) -> io::Result<Vec<(i32, PathBuf)>> {
    let probe = short_name(pid_file, ".1.ctl");
    let prefix = probe.strip_suffix("1.ctl").unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sys::parent(pid_file))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|n| n.strip_suffix(".ctl"))
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        found.push((pid, entry.path()));
    }
    found.sort();
    Ok(found)
}

fn short_name(pid_file: &Path, suffix: &str) -> String {
    let base = pid_file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let name = format!("{base}{suffix}");
    if name.len() <= MAX_ENDPOINT_NAME && !base.contains(['\u{fffd}']) {
        return name;
    }
    // FNV-1a of the pid file's name: stable across builds and versions,
    // unlike std's hasher.
    let hash = pid_file
        .file_name()
        .unwrap_or_default()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!(".{hash:016x}{suffix}")
}

/// The longest endpoint file name: `/proc/self/fd/NNNNNNNN/` plus this
/// fits a socket address.
const MAX_ENDPOINT_NAME: usize = sys::SUN_PATH_MAX - 24;

// ------------------------------------------------------------- endpoint

/// A running endpoint. Dropping it (or [`Endpoint::close`]) stops serving
/// and removes its file and its links, where they are still this
/// endpoint's.
pub(crate) struct Endpoint {
    path: PathBuf,
    dev: u64,
    ino: u64,
    links: Vec<PathBuf>,
    /// Made readable to stop the serving thread, which waits on it and
    /// the listener only: an idle endpoint never wakes.
    stop: Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Stops serving and removes the socket file (see `Drop`).
    #[allow(dead_code)] // the daemon drops its endpoint; tests close it
    pub(crate) fn close(self) {}

    /// Makes the endpoint reachable at `path` too: a hard link to the
    /// socket, placed atomically (a socket is reached through any of its
    /// names).
    pub(crate) fn link(&mut self, path: &Path) -> io::Result<()> {
        sys::place(path, |tmp| std::fs::hard_link(&self.path, tmp))?;
        self.links.push(path.to_owned());
        Ok(())
    }

    /// Removes the links made by [`Endpoint::link`] that are still ours;
    /// the endpoint goes on serving at its own path.
    pub(crate) fn unlink(&mut self) {
        for path in std::mem::take(&mut self.links) {
            self.remove_if_ours(&path);
        }
    }

    fn remove_if_ours(&self, path: &Path) {
        // Only if it is still ours: a later endpoint may have replaced it.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Opens an endpoint at `path` that hands on the sockets `sockets` finds.
#[cfg(test)]
pub(crate) fn open_endpoint(path: &Path, sockets: Arc<dyn Lookup>) -> io::Result<Endpoint> {
    open_service(path, Arc::new(Listeners(sockets)))
}

/// Opens an endpoint at `path` answered by `service`.
pub(crate) fn open_service(path: &Path, service: Arc<dyn Service>) -> io::Result<Endpoint> {
    let listener = sys::place(path, |tmp| {
        let listener = UnixListener::bind(sys::SocketPath::new(tmp)?.address())?;
        // Mode 0600 before the endpoint can be found at `path`; SO_PEERCRED
        // guards the moment before.
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    })?;
    let meta = std::fs::symlink_metadata(path)?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("seamless-handover".into())
            .spawn(move || serve(&listener, &stop, &service))
    };
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == meta.ino()) {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    Ok(Endpoint {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
        links: Vec::new(),
        stop,
        thread: Some(thread),
    })
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            match self.stop.write(1) {
                Ok(_) => {
                    let _ = t.join();
                }
                // Not waited for: the thread would never learn to stop.
                Err(e) => report::warning!("endpoint: cannot stop its thread: {e}"),
            }
        }
        self.unlink();
        self.remove_if_ours(&self.path.clone());
    }
}

fn serve(listener: &UnixListener, stop: &EventFd, service: &Arc<dyn Service>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                report::warning!("endpoint: poll failed: {e}");
                std::thread::sleep(ERROR_PAUSE);
                continue;
            }
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // EMFILE and the like: do not spin.
                report::warning!("endpoint: accept failed: {e}");
                std::thread::sleep(ERROR_PAUSE);
                continue;
            }
        };
        // The usual peer has sent its whole request by the time it is
        // accepted: answer it here.
        if request_ready(&stream) {
            answer_logged(stream, &**service);
            continue;
        }
        // Anyone else gets a thread of its own, a bounded number of them:
        // a peer that never speaks holds only its own thread, for at most
        // PEER_TIMEOUT.
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            report::warning!("endpoint: too many slow peers at once; one hung up on");
            continue; // `stream` closed here
        }
        let (service, count) = (service.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new()
            .name("seamless-handover-peer".into())
            .spawn(move || {
                answer_logged(stream, &*service);
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            // The closure, and the stream with it, is dropped.
            in_flight.fetch_sub(1, Ordering::SeqCst);
            report::warning!("endpoint: cannot start a thread: {e}");
        }
    }
}

/// Whether the peer's whole request (or more than a request can be, or
/// its end of the connection) is already there.
fn request_ready(stream: &UnixStream) -> bool {
    let mut peek = [0u8; wire::MAX_REQUEST + 1];
    match socket::recv(
        stream.as_raw_fd(),
        &mut peek,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(n) => n > wire::MAX_REQUEST || peek[..n].contains(&b'\n'),
        Err(nix::errno::Errno::EAGAIN) => false,
        Err(_) => true, // answer() meets the error and gives up at once
    }
}

fn answer_logged(stream: UnixStream, service: &dyn Service) {
    if let Err(e) = answer(&stream, service) {
        report::debug!("endpoint: request failed: {e}");
    }
    // `stream` is closed here, whatever happened.
}

fn answer(stream: &UnixStream, service: &dyn Service) -> io::Result<()> {
    let peer = match sys::check_peer(stream) {
        Ok(peer) => peer,
        Err(e) => {
            report::warning!("endpoint: refused a peer: {e}");
            return Ok(());
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(PEER_TIMEOUT))?;
    let line = read_request(stream, Instant::now() + PEER_TIMEOUT)?;
    let reply = match Request::parse(&line) {
        Ok(request) => service.answer(peer, request),
        Err(refusal @ Refusal::Version(_)) => {
            report::warning!(
                "endpoint: refused pid {}: {refusal}; this generation goes on serving",
                peer.pid
            );
            Reply::refused(refusal.to_string())
        }
        Err(refusal) => {
            report::debug!("endpoint: refused pid {}: {refusal}", peer.pid);
            Reply::refused(refusal.to_string())
        }
    };
    let mut payload = reply.head.encode().into_bytes();
    payload.extend_from_slice(&reply.body);
    let sent = if reply.fds.is_empty() {
        0
    } else {
        let fds: Vec<RawFd> = reply.fds.iter().map(|fd| fd.as_raw_fd()).collect();
        socket::sendmsg::<()>(
            stream.as_raw_fd(),
            &[io::IoSlice::new(&payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)?
    };
    // The fds travel with the first bytes; the rest is plain data.
    send_all(stream, &payload[sent..])
    // The reply's fds, our duplicates, are closed here.
}

/// Reads one request line, at most [`wire::MAX_REQUEST`] bytes, all before
/// `deadline`; returns it without its newline.
fn read_request(mut stream: &UnixStream, deadline: Instant) -> io::Result<String> {
    let mut buf = [0u8; wire::MAX_REQUEST];
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].iter().position(|b| *b == b'\n') {
            let line = std::str::from_utf8(&buf[..end])
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not UTF-8"))?;
            return Ok(line.to_owned());
        }
        if len == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request longer than {} bytes", wire::MAX_REQUEST),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn send_all(stream: &UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match socket::send(stream.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// --------------------------------------------------------------- client

/// An answer received.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) head: Head,
    pub(crate) body: Vec<u8>,
    /// Close-on-exec.
    pub(crate) fds: Vec<OwnedFd>,
}

/// What a client may receive: the longest answer, the most fds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) answer: usize,
    pub(crate) fds: usize,
    pub(crate) timeout: Duration,
}

/// Sends `request` to the endpoint at `path` and reads its answer.
///
/// `Ok(None)` when there is no endpoint (no file, or nobody listening); an
/// error when the endpoint misbehaves (another uid, another protocol
/// version, a malformed or oversized answer, more fds than `limits`
/// allow, too slow).
pub(crate) fn ask(path: &Path, request: &Request, limits: Limits) -> io::Result<Option<Answer>> {
    let deadline = Instant::now() + limits.timeout;
    // Close-on-exec. A unix connect waits for room in a full backlog up to
    // SO_SNDTIMEO.
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_write_timeout(Some(limits.timeout))?;
    match socket.connect(&SockAddr::unix(sys::SocketPath::new(path)?.address())?) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the endpoint accepts no connection",
            ))
        }
        Err(e) => return Err(e),
    }
    let stream = UnixStream::from(OwnedFd::from(socket));
    if let Err(e) = sys::check_peer(&stream) {
        return Err(io::Error::new(
            e.kind(),
            format!("the endpoint {}: {e}", path.display()),
        ));
    }
    send_all(&stream, request.encode().as_bytes())?;

    let mut reply = vec![0u8; limits.answer.min(64 * 1024)];
    let (mut len, fds, truncated) = receive_first(&stream, &mut reply, deadline)?;
    if truncated || fds.len() > limits.fds {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the endpoint sent more fds than the {} asked for",
                limits.fds
            ),
        ));
    }
    // The rest of the answer, until the server hangs up. Plain reads: the
    // kernel closes any fd sent along with later bytes.
    loop {
        if len == reply.len() {
            if reply.len() > limits.answer {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an answer longer than {} bytes", limits.answer),
                ));
            }
            reply.resize((reply.len() * 2).min(limits.answer + 1), 0);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "answer too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        match (&stream).read(&mut reply[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the endpoint hung up without answering",
        ));
    }
    let (head, body) = Head::parse(&reply[..len]).map_err(|refusal| {
        if let Refusal::Version(_) = refusal {
            report::warning!("the endpoint {}: {refusal}", path.display());
        }
        io::Error::new(io::ErrorKind::InvalidData, refusal.to_string())
    })?;
    Ok(Some(Answer {
        head,
        body: body.to_vec(),
        fds,
    }))
}

/// Tells the endpoint at `path` something, if it is there; errors are
/// logged (debug) and otherwise ignored. Bounded to 1 s.
pub(crate) fn tell(path: &Path, request: &Request) {
    let limits = Limits {
        answer: 1024,
        fds: 0,
        timeout: Duration::from_secs(1),
    };
    match ask(path, request, limits) {
        Ok(Some(Answer {
            head: Head::Refused(reason),
            ..
        })) => report::debug!("{} refused {request:?}: {reason}", path.display()),
        Err(e) => report::debug!("cannot tell {} {request:?}: {e}", path.display()),
        _ => {}
    }
}

/// What the previous generation handed over.
#[derive(Debug)]
pub(crate) struct Received {
    /// The socket, close-on-exec.
    pub(crate) fd: OwnedFd,
    /// Kind and address the previous generation asked for, e.g.
    /// `tcp 127.0.0.1:8080`.
    pub(crate) address: String,
}

/// Asks the endpoint at `path` for the socket named `name`.
///
/// `Ok(None)` when there is no endpoint (no file, or nobody listening) or
/// it has no socket by that name; an error when the endpoint misbehaves
/// or refuses (another uid, another protocol version, a malformed answer,
/// not exactly one fd, too slow).
pub(crate) fn fetch(path: &Path, name: &str) -> io::Result<Option<Received>> {
    check_name(name)?;
    let limits = Limits {
        answer: MAX_LISTENER_ANSWER,
        fds: 1,
        timeout: FETCH_TIMEOUT,
    };
    let Some(answer) = ask(path, &Request::Listener(name.to_owned()), limits)? else {
        return Ok(None);
    };
    let count = answer.fds.len();
    match answer.head {
        Head::Ok(address) if count == 1 && answer.body.is_empty() => Ok(Some(Received {
            fd: answer.fds.into_iter().next().expect("one fd"),
            address,
        })),
        Head::Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected one socket from the handover endpoint, received {count}"),
        )),
        Head::None => Ok(None),
        Head::Refused(reason) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the previous generation refused: {reason}"),
        )),
    }
    // Unused fds, if any, are closed on return.
}

/// The first read of the answer, with the fds that came along (owned,
/// close-on-exec) and whether some were cut off.
fn receive_first(
    stream: &UnixStream,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
        }
        stream.set_read_timeout(Some(left))?;
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))
            }
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel has just installed these fds in our
                // table for this message; nothing else knows them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
        return Ok((msg.bytes, fds, truncated));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cloexec;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::BorrowedFd;
    use std::sync::Mutex;

    fn temp_dir() -> PathBuf {
        crate::test_support::temp_dir("ho")
    }

    /// What a generation offers, as `net`'s registry would.
    #[derive(Default)]
    struct Offered(Mutex<Vec<(String, String, OwnedFd)>>);

    impl Lookup for Offered {
        fn lookup(&self, name: &str) -> io::Result<Option<(String, OwnedFd)>> {
            let offered = self.0.lock().unwrap();
            let Some((_, address, fd)) = offered.iter().find(|(n, _, _)| n == name) else {
                return Ok(None);
            };
            Ok(Some((address.clone(), fd.try_clone()?)))
        }
    }

    fn offered() -> Arc<Offered> {
        Arc::new(Offered::default())
    }

    fn register(offered: &Offered, name: &str, address: &str, fd: BorrowedFd<'_>) {
        let dup = fd.try_clone_to_owned().unwrap();
        let entry = (name.to_owned(), address.to_owned(), dup);
        offered.0.lock().unwrap().push(entry);
    }

    /// The inode behind an fd, as `/proc/self/fd` shows it.
    fn link(fd: RawFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap()
    }

    /// fds of this process open on the same socket as `fd`.
    fn fds_on(fd: RawFd) -> usize {
        let target = link(fd);
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| *l == target)
            .count()
    }

    /// Sockets bound in `dir`, the endpoint's directory: its listener and
    /// the server's end of each connection still open. (The kernel shows
    /// the path the listener was bound at: the temporary one.)
    fn endpoint_sockets(dir: &Path) -> usize {
        let dir = format!("{}/", dir.to_str().unwrap());
        std::fs::read_to_string("/proc/net/unix")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .count()
    }

    #[test]
    fn endpoint_path_is_next_to_the_pid_file() {
        assert_eq!(
            endpoint_path(Path::new("/run/app.pid")),
            Path::new("/run/app.pid.handover")
        );
        assert_eq!(
            control_path(Path::new("/run/app.pid"), 42),
            Path::new("/run/app.pid.42.ctl")
        );
        // Each generation's endpoint is found again by pid, whatever the
        // length of the pid file's name.
        let dir = temp_dir();
        for name in ["app.pid", &"n".repeat(200)] {
            let pid_file = dir.join(name);
            for pid in [42, 4_194_304] {
                let path = control_path(&pid_file, pid);
                assert!(path.file_name().unwrap().len() <= MAX_ENDPOINT_NAME);
                std::fs::write(&path, b"").unwrap();
            }
            std::fs::write(dir.join(format!("{name}.x.ctl")), b"").unwrap();
            let found: Vec<i32> = control_paths(&pid_file)
                .unwrap()
                .into_iter()
                .map(|(pid, _)| pid)
                .collect();
            assert_eq!(found, [42, 4_194_304], "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tcp_listener_is_handed_over_with_its_queue() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let registry = offered();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        register(&registry, "web", &format!("tcp {addr}"), listener.as_fd());
        let endpoint = open_endpoint(&path, registry.clone()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Queued before the handover, accepted through the received socket.
        let mut client = TcpStream::connect(addr).unwrap();
        let got = fetch(&path, "web").unwrap().expect("handed over");
        assert_eq!(got.address, format!("tcp {addr}"));
        assert!(cloexec(&got.fd));
        assert_eq!(link(got.fd.as_raw_fd()), link(listener.as_raw_fd()));
        let received = TcpListener::from(got.fd);
        let (mut conn, peer) = received.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        client.write_all(b"x").unwrap();
        let mut byte = [0u8];
        conn.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        endpoint.close();
        assert!(!path.exists(), "endpoint file removed");
        assert!(fetch(&path, "web").unwrap().is_none(), "no endpoint: None");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_and_udp_sockets_are_handed_over() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let registry = offered();
        let sock_path = dir.join("app.sock");
        let unix = UnixListener::bind(&sock_path).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        register(&registry, "ctl", "unix x", unix.as_fd());
        register(&registry, "dns", "udp x", udp.as_fd());
        let _endpoint = open_endpoint(&path, registry).unwrap();

        let got = fetch(&path, "ctl").unwrap().expect("unix handed over");
        assert_eq!(got.address, "unix x");
        let _client = UnixStream::connect(&sock_path).unwrap();
        let received = UnixListener::from(got.fd);
        received.accept().unwrap();

        let got = fetch(&path, "dns").unwrap().expect("udp handed over");
        let received = UdpSocket::from(got.fd);
        assert_eq!(received.local_addr().unwrap(), udp_addr);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"ping", udp_addr).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = received.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Answers `state` with bytes and fds, as the daemon does.
    struct Stateful(Vec<u8>, Vec<OwnedFd>);

    impl Service for Stateful {
        fn answer(&self, peer: sys::Peer, request: Request) -> Reply {
            assert_eq!(peer.pid, std::process::id() as i32);
            match request {
                Request::State(name) if name == "keys" => Reply {
                    head: Head::Ok(String::new()),
                    body: self.0.clone(),
                    fds: self.1.iter().map(|fd| fd.try_clone().unwrap()).collect(),
                },
                _ => Reply::head(Head::None),
            }
        }
    }

    #[test]
    fn bytes_and_fds_travel_within_the_limits() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let files: Vec<OwnedFd> = (0..3)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap().into())
            .collect();
        let body = vec![7u8; 200_000];
        let _endpoint = open_service(&path, Arc::new(Stateful(body.clone(), files))).unwrap();
        let limits = Limits {
            answer: 300_000,
            fds: 3,
            timeout: Duration::from_secs(5),
        };
        let request = Request::State("keys".into());
        let answer = ask(&path, &request, limits).unwrap().unwrap();
        assert_eq!(answer.head, Head::Ok(String::new()));
        assert_eq!(answer.body, body);
        assert_eq!(answer.fds.len(), 3);
        assert!(answer.fds.iter().all(cloexec));
        // More than the client allows: refused, fds closed.
        let small = Limits {
            answer: 1000,
            ..limits
        };
        assert_eq!(
            ask(&path, &request, small).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let fewer = Limits { fds: 2, ..limits };
        assert_eq!(
            ask(&path, &request, fewer).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let other = Request::State("other".into());
        assert_eq!(
            ask(&path, &other, limits).unwrap().unwrap().head,
            Head::None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_version_is_refused_with_our_version_named() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let _endpoint = open_endpoint(&path, offered()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"seamless/3 listener web\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert_eq!(
            answer,
            "seamless/2 refused protocol version mismatch: the peer speaks seamless/3, this generation seamless/2\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unknown_name_gets_none() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let _endpoint = open_endpoint(&path, offered()).unwrap();
        assert!(fetch(&path, "unknown").unwrap().is_none());
        // A stale socket file, nobody listening: None too.
        let stale = dir.join("stale");
        drop(UnixListener::bind(&stale).unwrap());
        assert!(fetch(&stale, "web").unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_names_are_refused_before_connecting() {
        for bad in ["", "a\nb", "nul\0", &"n".repeat(MAX_NAME + 1)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
            assert_eq!(
                fetch(Path::new("/nonexistent"), bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        assert!(check_name(&"n".repeat(MAX_NAME)).is_ok());
    }

    #[test]
    fn a_replaced_endpoint_file_is_left_alone() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let first = open_endpoint(&path, offered()).unwrap();
        let second = open_endpoint(&path, offered()).unwrap();
        first.close();
        assert!(path.exists(), "the second endpoint's file stays");
        second.close();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_peers_cannot_block_crash_or_leak() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let registry = offered();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        register(&registry, "web", "tcp x", listener.as_fd());
        let _endpoint = open_endpoint(&path, registry).unwrap();

        // Garbage: hung up on, no fd.
        let mut garbage = UnixStream::connect(&path).unwrap();
        garbage.set_read_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
        garbage.write_all(&[0xff, 0xfe, b'\n']).unwrap();
        let mut answer = Vec::new();
        let _ = garbage.read_to_end(&mut answer);
        assert!(answer.is_empty());
        // A huge name: refused, the server goes on.
        let mut huge = UnixStream::connect(&path).unwrap();
        huge.set_read_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
        huge.set_write_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
        let _ = huge.write_all(&vec![b'a'; 100_000]);
        let mut answer = Vec::new();
        let _ = huge.read_to_end(&mut answer);
        assert!(answer.is_empty());
        // Half a request, then silence; and no request at all.
        let mut half = UnixStream::connect(&path).unwrap();
        half.write_all(b"we").unwrap();
        let silent: Vec<UnixStream> = (0..4)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        // A good client is still served at once.
        let started = Instant::now();
        assert!(fetch(&path, "web").unwrap().is_some());
        assert!(started.elapsed() < Duration::from_secs(1));
        // The silent ones are hung up on after PEER_TIMEOUT.
        for mut s in silent.into_iter().chain([half]) {
            s.set_read_timeout(Some(PEER_TIMEOUT * 3)).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(s.read(&mut buf).unwrap(), 0, "hung up on");
        }
        assert!(started.elapsed() < PEER_TIMEOUT * 2);

        // No fd leaks over a burst of fetches, on either side: the handed
        // socket has as many fds as before (ours and the registry's), and
        // the endpoint has only its listener left.
        let before = fds_on(listener.as_raw_fd());
        assert_eq!(before, 2);
        for _ in 0..50 {
            let got = fetch(&path, "web").unwrap().unwrap();
            assert_eq!(fds_on(listener.as_raw_fd()), 3);
            drop(got);
            assert!(fetch(&path, "nothing").unwrap().is_none());
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while (endpoint_sockets(&dir) != 1 || fds_on(listener.as_raw_fd()) != before)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fds_on(listener.as_raw_fd()), before);
        assert_eq!(endpoint_sockets(&dir), 1, "only the listener is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_misbehaving_endpoint_gives_at_most_one_fd() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let fake = UnixListener::bind(&path).unwrap();
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let before = fds_on(a.as_raw_fd());
        let server = std::thread::spawn(move || {
            let replies: [(&[u8], usize); 4] = [
                (b"seamless/2 ok tcp x\n", 2),
                (b"seamless/2 ok tcp x\n", 0),
                (b"?", 1),
                (b"seamless/2 none\n", 1),
            ];
            for (payload, count) in replies {
                let (s, _) = fake.accept().unwrap();
                let mut line = [0u8; 64];
                let _ = (&s).read(&mut line).unwrap();
                let fds = vec![a.as_raw_fd(); count];
                let cmsgs: Vec<ControlMessage<'_>> = if count > 0 {
                    vec![ControlMessage::ScmRights(&fds)]
                } else {
                    Vec::new()
                };
                socket::sendmsg::<()>(
                    s.as_raw_fd(),
                    &[io::IoSlice::new(payload)],
                    &cmsgs,
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
            }
            a
        });
        assert_eq!(
            fetch(&path, "web").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            fetch(&path, "web").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            fetch(&path, "web").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert!(
            fetch(&path, "web").unwrap().is_none(),
            "fd with `none` dropped"
        );
        let a = server.join().unwrap();
        assert_eq!(fds_on(a.as_raw_fd()), before, "extra fds were closed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peer_of_another_user_gets_nothing() {
        if !nix::unistd::geteuid().is_root() {
            crate::test_support::not_run("running a peer as another user needs root");
            return;
        }
        let dir = temp_dir();
        let path = dir.join("ep");
        let registry = offered();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        register(&registry, "ho-uid", "x", listener.as_fd());
        let _endpoint = open_endpoint(&path, registry).unwrap();
        // Let anyone connect, so that only SO_PEERCRED stands in the way.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: the child makes only async-signal-safe calls (setgid,
        // setuid, socket, connect, write, recvmsg, _exit) on memory
        // prepared before the fork; the parent waits for it.
        let child = unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let mut code = 2;
                if libc::setgid(65534) == 0 && libc::setuid(65534) == 0 {
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    let mut addr: libc::sockaddr_un = std::mem::zeroed();
                    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                    for (i, b) in c_path.as_bytes().iter().enumerate() {
                        addr.sun_path[i] = *b as libc::c_char;
                    }
                    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                    if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                        libc::write(fd, b"ho-uid\n".as_ptr().cast(), 7);
                        let mut data = [0u8; 300];
                        let mut control = [0u8; 64];
                        let mut iov = libc::iovec {
                            iov_base: data.as_mut_ptr().cast(),
                            iov_len: data.len(),
                        };
                        let mut msg: libc::msghdr = std::mem::zeroed();
                        msg.msg_iov = &mut iov;
                        msg.msg_iovlen = 1;
                        msg.msg_control = control.as_mut_ptr().cast();
                        msg.msg_controllen = control.len() as _;
                        let n = libc::recvmsg(fd, &mut msg, 0);
                        // 0: closed (or reset: the request was left unread)
                        // without a byte; an fd only ever comes with one.
                        code = if n <= 0 { 0 } else { 1 };
                    } else {
                        code = 3;
                    }
                }
                libc::_exit(code);
            }
            pid
        };
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child), 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

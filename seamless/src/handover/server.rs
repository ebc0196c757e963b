//! A generation's endpoint: the unix socket, its thread (asleep on the
//! socket and a stop eventfd), the peer check and the bounded per-peer
//! threads that read one request and answer it through a [`Service`].

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self, ControlMessage, MsgFlags};

use super::*;
use crate::wire::{self, Refusal, Request};
use crate::{report, sys};

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

pub(super) fn serve(listener: &UnixListener, stop: &EventFd, service: &Arc<dyn Service>) {
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
pub(super) fn request_ready(stream: &UnixStream) -> bool {
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

pub(super) fn answer_logged(stream: UnixStream, service: &dyn Service) {
    if let Err(e) = answer(&stream, service) {
        report::debug!("endpoint: request failed: {e}");
    }
    // `stream` is closed here, whatever happened.
}

pub(super) fn answer(stream: &UnixStream, service: &dyn Service) -> io::Result<()> {
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
pub(super) fn read_request(mut stream: &UnixStream, deadline: Instant) -> io::Result<String> {
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

pub(super) fn send_all(stream: &UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match socket::send(stream.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

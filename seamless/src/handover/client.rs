//! The endpoint's clients: `ask` (one request, one answer with its fds),
//! `tell` (a report whose answer does not matter) and `fetch` (a socket
//! by name, for the next generation).

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags};
use socket2::{Domain, SockAddr, Socket, Type};

use super::server::send_all;
use super::*;
use crate::wire::{Head, Request};
use crate::{report, sys};

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
pub(super) fn receive_first(
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

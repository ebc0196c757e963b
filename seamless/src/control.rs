//! The launcher–daemon contract: how the daemon is marked and started,
//! and the control channel between the two.
//!
//! A `SOCK_SEQPACKET` socket pair replaces the original's signal protocol
//! (USR2 down, CHLD up). Messages are one byte each, so they can never be
//! confused with the kernel's SIGCHLD for a child that stopped or died, and
//! a message sent before the daemon is ready to read it simply waits in the
//! socket buffer. The pair doubles as a lifeline: when the launcher dies,
//! however it dies, the daemon reads end-of-file.
//!
//! A daemon forked from its launcher (the usual way) gets its end in
//! memory. A daemon the launcher had to execute afresh (see `launcher`)
//! learns its end from the environment variable [`ENV_VAR`],
//! `"<launcher pid>:<fd>"`, which it removes from its own environment.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

/// Marks an executed process as the daemon of a launcher:
/// `"<launcher pid>:<fd>"`.
pub(crate) const ENV_VAR: &str = "SEAMLESS_DAEMON";

/// Signals the daemon starts with blocked (the forked child blocks them
/// once the launcher's handlers are undone; an executed daemon has them
/// blocked between fork and exec); the daemon unblocks them once its own
/// handlers are installed, so a restart requested during start-up is
/// neither lost nor fatal.
pub(crate) const BLOCKED_IN_CHILD: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR2];

/// What one side tells the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// Launcher to daemon: the supervisor asked for a restart (stage 1).
    RestartRequested,
    /// Daemon to launcher: stage 1 is done, exit so the supervisor starts
    /// the next generation.
    Detached,
    /// Daemon to launcher: `started()` was called (stage 2 done).
    Started,
    /// Daemon to launcher: the graceful shutdown (stage 3) has begun.
    Stopping,
    /// Daemon to launcher: its probation passed; the previous generations
    /// were sent TERM.
    Passed,
}

impl Message {
    fn byte(self) -> u8 {
        match self {
            Message::RestartRequested => b'R',
            Message::Detached => b'D',
            Message::Started => b'S',
            Message::Stopping => b'X',
            Message::Passed => b'P',
        }
    }

    fn from_byte(b: u8) -> Option<Message> {
        Some(match b {
            b'R' => Message::RestartRequested,
            b'D' => Message::Detached,
            b'S' => Message::Started,
            b'X' => Message::Stopping,
            b'P' => Message::Passed,
            _ => return None,
        })
    }
}

/// What reading the channel gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Message(Message),
    /// Nothing waiting right now.
    Nothing,
    /// The other side is gone.
    Closed,
}

/// One end of the control channel.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Creates the pair: the launcher's end, and the daemon's end, both
    /// close-on-exec and non-blocking (when the daemon is executed, the
    /// launcher clears the flag on the daemon's end in the child only).
    pub(crate) fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Takes the daemon's end described by [`ENV_VAR`], after checking that
    /// the fd really is a socket, and marks it close-on-exec so that the
    /// user's own child processes do not inherit it.
    pub(crate) fn from_inherited(fd: RawFd) -> io::Result<Channel> {
        // An fd number we did not inherit must not be taken over.
        if !crate::sys::is_open(fd) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("fd {fd} named by {ENV_VAR} is not open"),
            ));
        }
        // SAFETY: the launcher created this fd for us and nothing else in
        // this process owns it; we take ownership exactly once (start-up).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let stat = nix::sys::stat::fstat(&fd)?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fd {} named by {ENV_VAR} is not a socket", fd.as_raw_fd()),
            ));
        }
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok(Channel { fd })
    }

    pub(crate) fn send(&self, message: Message) -> io::Result<()> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        loop {
            match socket::send(self.fd.as_raw_fd(), &[message.byte()], flags) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads one message without blocking. Unknown bytes are skipped.
    pub(crate) fn receive(&self) -> Received {
        let mut buf = [0u8; 16];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Received::Closed,
                Ok(_) => match Message::from_byte(buf[0]) {
                    Some(m) => return Received::Message(m),
                    None => continue,
                },
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Received::Nothing,
                Err(_) => return Received::Closed,
            }
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Parses the value of [`ENV_VAR`].
pub(crate) fn parse_env(value: &str) -> Option<(i32, RawFd)> {
    let (pid, fd) = value.split_once(':')?;
    let pid: i32 = pid.parse().ok()?;
    let fd: RawFd = fd.parse().ok()?;
    (pid > 0 && fd > 2).then_some((pid, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_round_trip_and_rejects() {
        assert_eq!(parse_env("123:7"), Some((123, 7)));
        for bad in [
            "", ":", "123", "x:7", "0:7", "-5:7", "12:1", "12:-3", "12:7:9",
        ] {
            assert_eq!(parse_env(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_pass_and_eof_is_seen() {
        let (a, b) = Channel::pair().unwrap();
        assert_eq!(b.receive(), Received::Nothing);
        a.send(Message::RestartRequested).unwrap();
        a.send(Message::Started).unwrap();
        assert_eq!(b.receive(), Received::Message(Message::RestartRequested));
        assert_eq!(b.receive(), Received::Message(Message::Started));
        drop(a);
        assert_eq!(b.receive(), Received::Closed);
    }
}

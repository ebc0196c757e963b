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

mod client;
mod paths;
mod server;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::sys;
use crate::wire::{self, Head, Refusal, Request};

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
struct Listeners(std::sync::Arc<dyn Lookup>);

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

pub(crate) use client::{ask, fetch, tell, Limits};
pub(crate) use paths::{control_path, control_paths, endpoint_path};
#[cfg(test)]
pub(crate) use server::open_endpoint;
pub(crate) use server::{open_service, Endpoint};

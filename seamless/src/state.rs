//! State handed from one generation to the next: named bytes, with file
//! descriptors if need be (TLS session-ticket keys, a cache's index, a
//! memfd), carried over the old generation's endpoint like its sockets.
//!
//! The old generation [`offer`]s state, best in an `on_shutdown_request`
//! handler (stage 1 runs them before the endpoint is linked for the next
//! generation). The new one [`take`]s it before `started()`. What to do
//! when the state is missing, oversized or undecodable is the
//! application's choice: refusing it (returning an error, exiting) before
//! `started()` makes the restart fail cleanly, the old generation still
//! serving, and `seamless restart` reports the failure.
//!
//! Limits: [`MAX_BYTES`] bytes and [`MAX_FDS`] fds per name, [`MAX_NAMES`]
//! names; a name is 1 to 255 bytes without newline or NUL.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::handover::{self, Limits, Reply};
use crate::wire::{Head, Request};
use crate::{net, report};

/// The most bytes one named state may hold.
pub const MAX_BYTES: usize = 1 << 20;
/// The most fds one named state may carry.
pub const MAX_FDS: usize = handover::MAX_FDS;
/// The most names offered at once.
pub const MAX_NAMES: usize = 64;
const TAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// State received from the previous generation.
#[derive(Debug)]
#[non_exhaustive]
pub struct State {
    /// The bytes offered.
    pub bytes: Vec<u8>,
    /// The fds offered, in their order; close-on-exec.
    pub fds: Vec<OwnedFd>,
}

/// An offer: name, bytes, fds.
type Offer = (String, Vec<u8>, Vec<OwnedFd>);

static OFFERED: Mutex<Vec<Offer>> = Mutex::new(Vec::new());

fn offered_lock() -> MutexGuard<'static, Vec<Offer>> {
    OFFERED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Offers `bytes` and `fds` under `name` to the next generation, which
/// reads them with [`take`] while this generation hands over (stage 1 to
/// its shutdown). Offering a name again replaces what it held. The fds are
/// duplicated: the caller keeps its own.
///
/// Errors: an invalid name, more than [`MAX_BYTES`] bytes or [`MAX_FDS`]
/// fds, more than [`MAX_NAMES`] names, or a failed duplication.
///
/// ```
/// // In an `on_shutdown_request` handler, say:
/// let count: u64 = 41;
/// seamless::state::offer("count", count.to_le_bytes(), &[])?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn offer(
    name: &str,
    bytes: impl Into<Vec<u8>>,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    handover::check_name(name)?;
    let bytes = bytes.into();
    if bytes.len() > MAX_BYTES || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "state {name:?}: {} bytes and {} fds, at most {MAX_BYTES} and {MAX_FDS}",
                bytes.len(),
                fds.len()
            ),
        ));
    }
    let fds = fds
        .iter()
        .map(|fd| fd.as_fd().try_clone_to_owned())
        .collect::<io::Result<Vec<_>>>()?;
    let mut offered = offered_lock();
    offered.retain(|(n, _, _)| n != name);
    if offered.len() >= MAX_NAMES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("more than {MAX_NAMES} states offered"),
        ));
    }
    offered.push((name.to_owned(), bytes, fds));
    Ok(())
}

/// The endpoint's answer to `state <name>`.
pub(crate) fn reply(name: &str) -> Reply {
    let offered = offered_lock();
    let Some((_, bytes, fds)) = offered.iter().find(|(n, _, _)| n == name) else {
        return Reply::head(Head::None);
    };
    match fds.iter().map(|fd| fd.try_clone()).collect() {
        Ok(fds) => Reply {
            head: Head::Ok(String::new()),
            body: bytes.clone(),
            fds,
        },
        Err(e) => Reply::refused(format!("cannot duplicate the fds of state {name:?}: {e}")),
    }
}

/// Takes the state the previous generation offered under `name`.
///
/// `Ok(None)` when there is no previous generation handing over (a first
/// start, or seamless disabled) or it offered nothing by that name. An
/// error when the previous generation's endpoint misbehaves, refuses (for
/// instance it speaks another protocol version) or sends more than the
/// limits. Call it before `started()`; the state stays offered, so a
/// successor that crashes and is started again can take it again.
///
/// ```no_run
/// let count = match seamless::state::take("count")? {
///     Some(state) => u64::from_le_bytes(state.bytes.try_into().map_err(|_| {
///         std::io::Error::other("the counter is not 8 bytes")
///     })?),
///     None => 0,
/// };
/// # let _ = count;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn take(name: &str) -> io::Result<Option<State>> {
    handover::check_name(name)?;
    let Some(endpoint) = net::origin_endpoint() else {
        report::debug!("state {name:?}: no previous generation to take it from");
        return Ok(None);
    };
    let limits = Limits {
        answer: MAX_BYTES + 1024,
        fds: MAX_FDS,
        timeout: TAKE_TIMEOUT,
    };
    let Some(answer) = handover::ask(&endpoint, &Request::State(name.to_owned()), limits)? else {
        return Ok(None);
    };
    match answer.head {
        Head::Ok(_) => Ok(Some(State {
            bytes: answer.body,
            fds: answer.fds,
        })),
        Head::None => Ok(None),
        Head::Refused(reason) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the previous generation refused state {name:?}: {reason}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_bounded_and_replaced() {
        let big = vec![0u8; MAX_BYTES + 1];
        assert!(offer("big", big, &[]).is_err());
        assert!(offer("bad\nname", b"x".to_vec(), &[]).is_err());
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        offer("t-one", b"first".to_vec(), &[file.as_fd()]).unwrap();
        offer("t-one", b"second".to_vec(), &[]).unwrap();
        let reply = reply("t-one");
        assert_eq!(reply.head, Head::Ok(String::new()));
        assert_eq!(reply.body, b"second");
        assert!(reply.fds.is_empty());
        assert_eq!(super::reply("t-none").head, Head::None);
    }
}

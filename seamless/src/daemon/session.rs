//! The daemon's public face in user code: [`started`] (stage 2) and the
//! [`Session`] that ends with `main`.

use super::{DAEMON, WAKE_STARTED};
use crate::report;
use crate::shutdown::HANDLERS_DONE;

/// Tells seamless that this generation is up and serving (stage 2): the
/// listening sockets are bound and requests can be answered.
///
/// With a probation set, the previous generation is sent TERM when the
/// probation ends, and serves on should this one exit before.
///
/// It returns at once; seamless's control thread then takes the pid file
/// under its lock, sends SIGTERM to every earlier generation it proves to
/// be one (same start time, same boot, same user), records this one, and
/// tells the launcher (which reports `READY=1` to systemd). It does nothing
/// in a plain process, after the first call, or in a generation that was
/// itself asked to restart before it got here.
///
/// ```no_run
/// let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
/// seamless::started();
/// # drop(listener);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn started() {
    match DAEMON.get() {
        Some(daemon) => {
            let _ = nix::unistd::write(&daemon.wake.1, &[WAKE_STARTED]);
        }
        None => report::debug!("started() before the launcher split: nothing to do"),
    }
}

/// The daemon's side of seamless, from the launcher split to the end of
/// `main`. Ending it ([`finish`](Session::finish), or dropping it) waits
/// for the shutdown handlers when a shutdown is under way, then removes
/// this generation from the pid file.
///
/// The wait never outlasts `shutdown_timeout` (past it the process exits
/// with status 1, naming the handler still running). Without one, a
/// handler that never returns keeps `main` from ending: set
/// `shutdown_timeout` if a handler can hang. A session dropped while a
/// panic unwinds does not wait at all: it only leaves the pid file.
///
/// ```no_run
/// let session = seamless::Builder::new("/tmp/app.pid").start();
/// seamless::started();
/// seamless::shutdown().wait();
/// session.finish();
/// ```
#[must_use = "keep the session until the end of main"]
#[derive(Debug)]
pub struct Session {
    finished: bool,
}

impl Session {
    /// A session that has not ended.
    pub(super) fn new() -> Session {
        Session { finished: false }
    }

    /// Ends the session: see [`Session`].
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let Some(daemon) = DAEMON.get() else { return };
        if daemon.machine().shutdown_since().is_some() {
            if std::thread::panicking() {
                report::warning!(
                    "main is unwinding from a panic: the shutdown handlers are not waited for"
                );
            } else {
                // Past the deadline the control thread exits the process.
                HANDLERS_DONE.wait();
            }
        }
        daemon.release();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

//! Zero-downtime restarts for servers run under an ordinary service
//! supervisor (daemontools, runit, s6, supervisord, systemd).
//!
//! ```no_run
//! #[seamless::daemon(pid_file = "/run/myapp.pid")]
//! fn main() -> std::io::Result<()> {
//!     // Handed over by the previous generation, inherited from systemd,
//!     // or bound afresh; non-blocking.
//!     let listener = seamless::net::tcp("web", "127.0.0.1:8080")?;
//!     seamless::started(); // the previous generation may go now
//!     // Sleeps until a connection or the shutdown: None once it began.
//!     while let Some((stream, _)) = seamless::net::accept(&listener)? {
//!         // serve `stream` (on a thread), finish it even after the
//!         // shutdown began
//! #       drop(stream);
//!     }
//!     Ok(())
//! } // main waits here for the shutdown handlers
//!
//! #[seamless::on_shutdown]
//! fn drain() { /* stage 3: flush, close pools */ }
//! ```
//!
//! # How it works
//!
//! The process the supervisor starts becomes the **launcher**: it never
//! runs user code; it forks a copy of itself, the **daemon**, and stands
//! between the two. A TERM from the supervisor reaches the launcher,
//! which asks the daemon to prepare a restart (stage 1: the
//! [`on_shutdown_request`](macro@on_shutdown_request) handlers run, the
//! listening sockets are offered for handover). Once the daemon is ready,
//! the launcher exits; the supervisor starts a new generation, which takes
//! the sockets over ([`net`]) and calls [`started`] (stage 2): the pid file
//! handshake sends TERM to the old generation, whose [`Shutdown`] fires and
//! whose [`on_shutdown`](macro@on_shutdown) handlers run (stage 3) while it
//! finishes the requests in flight.
//!
//! Everything the attributes do is available without macros through
//! [`Builder`]. Handlers marked with the attributes are collected at link
//! time; for each stage they run sorted by their full path, then the
//! closures registered with [`on_shutdown()`] and [`on_shutdown_request()`]
//! in registration order.
//!
//! | signal or event | reaching the launcher | reaching the daemon |
//! | --- | --- | --- |
//! | TERM | restart (stage 1 in the daemon) | graceful stop (stage 3) |
//! | INT | forwarded, unless a terminal sent it to the whole group | graceful stop |
//! | USR2 | forwarded | restart (stage 1) |
//! | other catchable signals | forwarded | their usual meaning |
//! | the daemon exits | the launcher exits the same way | — |
//! | the launcher dies | — | graceful stop |
//!
//! # Features
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `hyper` | `hyper::serve`: any hyper service, HTTP/1.1 and HTTP/2 on one port, shut down by [`shutdown()`] with a drain that fails no request on a keep-alive connection |
//! | `axum` | `axum::serve`: the same for an axum app, read like `axum::serve` |
//! | `rustls` | `Serve::tls` for both: HTTPS (ALPN h2 and http/1.1) with the handshake in each connection's task; `tls::Ticketer`, session-ticket keys handed to the next generation so that sessions resume across restarts |
//! | `actix` | `actix::serve` and the `actix::CloseOnShutdown` middleware: an actix-web server stopped without failing a request |
//!
//! All are off by default; without them the crate depends on neither
//! tokio nor hyper nor actix.
//!
//! # Platforms
//!
//! | platform | status |
//! | --- | --- |
//! | Linux | supported and tested end to end (daemontools, runit, s6, supervisord, systemd) |
//! | other Unix | not supported yet: process identity is read from `/proc` |
//!
//! # Hazards
//!
//! - **A supervisor's stop is a restart.** TERM is read as a restart: the
//!   old generation detaches and shuts down after `handover_timeout` if no
//!   successor comes. A stop takes up to `handover_timeout` plus the drain.
//! - **systemd** needs `KillMode=process` (the default kills the detached
//!   old generation with the unit's cgroup) and `Restart=always` (the
//!   launcher exits 0 on a restart). supervisord needs `autorestart=true`.
//! - **A launcher as a container's pid 1** ends the container when it steps
//!   aside. Run a supervisor as pid 1.
//! - **Code before `main`** (constructors) runs in both processes; start no
//!   thread there: the launcher split must happen while the process has
//!   one thread.
//! - **Shared `O_NONBLOCK`.** A handed-over socket is one open file in two
//!   processes; [`net`] returns every socket non-blocking so that no
//!   generation changes the other's mode.
//! - **Pid files** are trusted only as far as they prove: see
//!   [`started`].
//! - **Logging.** Messages go to the `log` facade (target `seamless`); the
//!   launcher never sees the user's logger, so without one, warnings and
//!   errors go to stderr.

// On docs.rs, the items of a feature say which feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The module map, from the top down; a module imports only modules below
// it (see ARCHITECTURE.md).
#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix; // seamless::actix::serve, CloseOnShutdown
pub mod admin; // the generations seen from outside (the `seamless` tool)
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum; // seamless::axum::serve
mod builder; // the launcher split: Builder, try_start, start
mod config; // settings
mod control; // the launcher–daemon contract
mod daemon; // the daemon's stages and Session
mod error; // the start-up error
mod handlers; // handler registry
mod handover; // the endpoint of a generation, and its client
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub mod hyper; // seamless::hyper::serve
mod launcher; // the launcher process
pub mod net; // named sockets and their registry
mod notify; // sd_notify
mod pidfile; // the pid file handshake
mod procfs; // process identity
mod progname; // the daemon's kernel name, its launcher's
mod report; // log facade
#[cfg(feature = "hyper")]
mod serve; // the polite drain behind hyper and axum
mod shutdown; // the Shutdown latch
mod signals; // signal pipe
pub mod state; // state handed to the next generation
mod sys; // shared fd, poll and file helpers
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls; // session-ticket keys handed to the next generation
mod wire; // the endpoint's versioned line format

pub use builder::Builder;
pub use config::{OnPidFileError, PidFilePath, Signal};
pub use daemon::{started, Session};
pub use error::Error;
pub use handlers::{on_shutdown, on_shutdown_request};
/// Rewrites `fn main` so that the launcher split runs first.
///
/// See the crate documentation and the README for the arguments.
pub use seamless_macros::daemon;
/// Runs the marked function in the launcher, right after the daemon was
/// started.
pub use seamless_macros::on_child_launch;
/// Runs the marked function at stage 3, the graceful shutdown.
pub use seamless_macros::on_shutdown;
/// Runs the marked function at stage 1, when a restart was requested.
pub use seamless_macros::on_shutdown_request;
#[allow(deprecated)]
pub use shutdown::wait;
pub use shutdown::{shutdown, wait_for_shutdown_handlers, Shutdown};

#[doc(hidden)]
pub mod __private;

// The package's README (the crates.io page): its examples compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

#[cfg(test)]
mod test_support {
    //! What the unit tests of several modules share.

    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Whether `fd` is close-on-exec.
    pub(crate) fn cloexec(fd: &impl std::os::fd::AsFd) -> bool {
        let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    /// A fresh directory of this test process's own, under the system's
    /// temporary directory.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "seamless-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Says that a check did not run, and why. In CI (`CI` set, but not
    /// to `false` or `0`) the test fails; elsewhere the line goes straight
    /// to the terminal, past the harness's capture, which would hide it
    /// for a test that passes.
    #[track_caller]
    pub(crate) fn not_run(why: &str) {
        use std::io::Write;
        let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"));
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let at = std::panic::Location::caller();
        if in_ci {
            panic!("NOT RUN in CI ({test}, {at}): {why}");
        }
        let _ = writeln!(std::io::stderr(), "NOT RUN ({test}, {at}): {why}");
    }
}

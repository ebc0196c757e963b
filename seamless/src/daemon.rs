//! The daemon's stages, driven by one control thread.
//!
//! The control thread (`seamless-control`) polls the signal pipe and the
//! control channel to the launcher, and keeps the deadlines:
//!
//! - **Stage 1**, a restart was requested (the launcher's message, or USR2
//!   sent straight to the daemon): run the `on_shutdown_request` handlers,
//!   open the listener handover endpoint, record this generation in the pid
//!   file if it never called `started()`, tell the launcher it may exit.
//!   The daemon is now detached and keeps serving.
//! - **Stage 2** is [`started`], called by the user in the new generation:
//!   it wakes the control thread, which runs the pid file handshake (TERM
//!   to every earlier generation) off the caller's path, so that serving
//!   starts at once.
//! - **Stage 3**, the graceful shutdown, begins on TERM or INT, when the
//!   launcher is gone without a restart (it was killed), or
//!   `handover_timeout` after stage 1: [`Shutdown`](crate::Shutdown) fires
//!   and the `on_shutdown` handlers run on their own thread. Past
//!   `shutdown_timeout` the process exits, naming what was still running.
//!
//! A plain process (seamless disabled) has the same thread with TERM and INT
//! only: no launcher, no pid file, no restart.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::builder::{Config, Session};
use crate::control::{Channel, Message, Received};
use crate::handlers::{self, Stage};
use crate::pidfile::PidFile;
use crate::report;
use crate::shutdown::{HANDLERS_DONE, SHUTDOWN};
use crate::signals::{self, SignalPipe};
use crate::{handover, launcher};

struct Daemon {
    config: Config,
    role: Role,
    launcher_pid: Option<i32>,
    channel: Option<Channel>,
    pid_file: Option<PidFile>,
    state: Mutex<State>,
    /// `started()` writes a byte here to wake the control thread.
    wake: (OwnedFd, OwnedFd),
}

#[derive(Default)]
struct State {
    started: bool,
    /// `started()` was called; the handshake is still to run.
    claim_pending: bool,
    detached_at: Option<Instant>,
    shutdown_at: Option<Instant>,
    endpoint: Option<handover::Endpoint>,
    /// The shutdown handler running now, for the timeout's log line.
    running_handler: Option<String>,
    /// The launcher's end closed without a restart.
    launcher_lost: bool,
}

static DAEMON: OnceLock<Daemon> = OnceLock::new();

/// The part this process plays in the restart protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Seamless is disabled (no pid file, or an unusable one and
    /// `OnPidFileError::RunPlain`): a plain process.
    Plain,
    /// The daemon: child of a launcher, runs the user's code.
    Daemon,
}

/// The pid file of this daemon, if seamless is active (for `net`).
pub(crate) fn pid_file() -> Option<&'static std::path::Path> {
    let daemon = DAEMON.get().filter(|d| d.role == Role::Daemon)?;
    daemon.config.pid_file.as_deref()
}

/// The pid of this daemon's launcher, if this process is a daemon (for
/// `net`: systemd's `LISTEN_PID` names the launcher).
pub(crate) fn launcher_pid() -> Option<i32> {
    DAEMON.get()?.launcher_pid
}

/// When this process must be done with its shutdown: `shutdown_timeout`
/// after stage 3 began, if both are known (for the drain in `serve`).
#[cfg(feature = "hyper")]
pub(crate) fn shutdown_deadline() -> Option<Instant> {
    let daemon = DAEMON.get()?;
    let began = daemon.lock().shutdown_at?;
    Some(began + daemon.config.shutdown_timeout?)
}

fn install(daemon: Daemon) -> &'static Daemon {
    if DAEMON.set(daemon).is_err() {
        panic!(
            "seamless is started once per process: Builder::start or #[seamless::daemon] ran twice"
        );
    }
    DAEMON.get().expect("just set")
}

/// Start-up of the daemon, the launcher's child.
pub(crate) fn start_daemon(config: Config, launcher_pid: i32, fd: RawFd) -> Session {
    if nix::unistd::getppid().as_raw() != launcher_pid {
        // The launcher died before we got here (say, a SIGKILL during
        // start-up). Becoming a launcher ourselves would fork a grandchild
        // nobody supervises; the supervisor is already starting a new one.
        report::error!("launcher {launcher_pid} is gone before its daemon started; exiting");
        std::process::exit(1);
    }
    let channel = match Channel::from_inherited(fd) {
        Ok(c) => Some(c),
        Err(e) => {
            report::error!("cannot use the control channel from the launcher: {e}; exiting");
            std::process::exit(1);
        }
    };
    let pid_file = open_pid_file(&config);
    let daemon = install(Daemon {
        config,
        role: Role::Daemon,
        launcher_pid: Some(launcher_pid),
        channel,
        pid_file,
        state: Mutex::new(State::default()),
        wake: wake_pipe(),
    });
    spawn_control(daemon, &launcher::BLOCKED_IN_CHILD);
    Session { finished: false }
}

/// Start-up of a plain process (seamless disabled).
pub(crate) fn start_plain(config: Config) -> Session {
    let daemon = install(Daemon {
        config,
        role: Role::Plain,
        launcher_pid: None,
        channel: None,
        pid_file: None,
        state: Mutex::new(State::default()),
        wake: wake_pipe(),
    });
    spawn_control(daemon, &[libc::SIGTERM, libc::SIGINT]);
    Session { finished: false }
}

fn wake_pipe() -> (OwnedFd, OwnedFd) {
    match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
        Ok(pipe) => pipe,
        Err(e) => {
            report::error!("cannot create the control thread's pipe: {e}; exiting");
            std::process::exit(1);
        }
    }
}

fn open_pid_file(config: &Config) -> Option<PidFile> {
    let path = config.pid_file.as_ref()?;
    match PidFile::open(path) {
        Ok(p) => Some(p),
        Err(e) => {
            report::error!("{e}; this generation will not take part in the pid file handshake");
            None
        }
    }
}

fn spawn_control(daemon: &'static Daemon, caught: &[i32]) {
    let signals = match SignalPipe::install(caught) {
        Ok(s) => s,
        Err(e) => {
            report::error!("cannot install signal handlers: {e}; exiting");
            std::process::exit(1);
        }
    };
    // Signals that arrived while the launcher kept them blocked are
    // delivered now, into the pipe, and handled by the control thread.
    if let Err(e) = signals::unblock(caught) {
        report::error!("cannot unblock signals: {e}");
    }
    let spawned = std::thread::Builder::new()
        .name("seamless-control".into())
        .spawn(move || daemon.control_loop(signals));
    if let Err(e) = spawned {
        report::error!("cannot start the seamless control thread: {e}; exiting");
        std::process::exit(1);
    }
}

impl Daemon {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the launcher's end should still be polled.
    fn attached(&self) -> bool {
        let state = self.lock();
        self.channel.is_some() && state.detached_at.is_none() && !state.launcher_lost
    }

    fn control_loop(&'static self, signals: SignalPipe) {
        loop {
            let attached = self.attached();
            {
                let mut fds = vec![
                    PollFd::new(signals.fd(), PollFlags::POLLIN),
                    PollFd::new(self.wake.0.as_fd(), PollFlags::POLLIN),
                ];
                if let (true, Some(channel)) = (attached, &self.channel) {
                    fds.push(PollFd::new(channel.as_fd(), PollFlags::POLLIN));
                }
                match nix::poll::poll(&mut fds, self.poll_timeout()) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        report::error!("seamless control poll failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            }
            self.run_pending_claim();
            for delivery in signals.drain() {
                match delivery.signal {
                    libc::SIGUSR2 => self.request_restart("SIGUSR2"),
                    signal => self.begin_shutdown(&format!("received {}", signals::name(signal))),
                }
            }
            if attached {
                self.read_channel();
            }
            self.check_deadlines();
        }
    }

    fn read_channel(&'static self) {
        let Some(channel) = &self.channel else { return };
        loop {
            match channel.receive() {
                Received::Message(Message::RestartRequested) => {
                    self.request_restart("the launcher (SIGTERM from the supervisor)")
                }
                Received::Message(_) => {}
                Received::Nothing => return,
                Received::Closed => {
                    let was_detached = {
                        let mut state = self.lock();
                        state.launcher_lost = true;
                        state.detached_at.is_some()
                    };
                    if !was_detached {
                        self.begin_shutdown("the launcher is gone");
                    }
                    return;
                }
            }
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        let state = self.lock();
        let mut deadline = None;
        if let (Some(at), None) = (state.detached_at, state.shutdown_at) {
            deadline = Some(at + self.config.handover_timeout);
        }
        if let (Some(at), Some(limit)) = (state.shutdown_at, self.config.shutdown_timeout) {
            deadline = Some(at + limit);
        }
        signals::poll_timeout(deadline.map(|d| d.saturating_duration_since(Instant::now())))
    }

    fn check_deadlines(&'static self) {
        let now = Instant::now();
        let (handover_due, shutdown_overdue) = {
            let state = self.lock();
            let handover_due = matches!((state.detached_at, state.shutdown_at),
                (Some(at), None) if now >= at + self.config.handover_timeout);
            let overdue = match (state.shutdown_at, self.config.shutdown_timeout) {
                (Some(at), Some(limit)) if now >= at + limit => {
                    Some((limit, state.running_handler.clone()))
                }
                _ => None,
            };
            (handover_due, overdue)
        };
        if handover_due {
            self.begin_shutdown(&format!(
                "no new generation took over within handover_timeout ({:?})",
                self.config.handover_timeout
            ));
        }
        if let Some((limit, handler)) = shutdown_overdue {
            match handler {
                Some(name) if !HANDLERS_DONE.is_open() => report::error!(
                    "shutdown_timeout ({limit:?}) passed while shutdown handler {name} was still running; exiting"
                ),
                _ => report::error!(
                    "shutdown_timeout ({limit:?}) passed and main has not returned; exiting"
                ),
            }
            self.release();
            std::process::exit(1);
        }
    }

    /// Stage 1.
    fn request_restart(&'static self, by: &str) {
        if self.role != Role::Daemon {
            return;
        }
        {
            let state = self.lock();
            if state.detached_at.is_some() || state.shutdown_at.is_some() {
                report::debug!("restart requested by {by} again: ignored");
                return;
            }
        }
        report::info!("restart requested by {by}: preparing (stage 1)");
        handlers::run(Stage::ShutdownRequest, Vec::new(), &|_| {});
        {
            let mut state = self.lock();
            if state.shutdown_at.is_some() {
                return;
            }
            if !state.started {
                // Never took over: make sure the generation that will call
                // started() TERMs this one too, not only the one in the pid
                // file.
                if let Some(pid_file) = &self.pid_file {
                    if let Err(e) = pid_file.add_detached() {
                        report::warning!("cannot record this generation in the pid file: {e}");
                    }
                }
            }
            if let Some(path) = &self.config.pid_file {
                match handover::open_endpoint(&handover::endpoint_path(path)) {
                    Ok(endpoint) => state.endpoint = Some(endpoint),
                    Err(e) => report::warning!(
                        "cannot open the listener handover endpoint: {e}; the next generation binds afresh"
                    ),
                }
            }
            state.detached_at = Some(Instant::now());
        }
        if let Some(channel) = &self.channel {
            if let Err(e) = channel.send(Message::Detached) {
                report::debug!("cannot tell the launcher: {e}");
            }
        }
        if let (Some(signal), Some(launcher)) = (self.config.parent_signal, self.launcher_pid) {
            if nix::unistd::getppid().as_raw() == launcher {
                if let Ok(sig) = nix::sys::signal::Signal::try_from(signal) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher), sig);
                }
            }
        }
    }

    /// Stage 2, the caller's part: mark it and wake the control thread.
    fn started(&self) {
        if self.role != Role::Daemon {
            return;
        }
        let mut state = self.lock();
        if state.started {
            return;
        }
        if state.detached_at.is_some() || state.shutdown_at.is_some() {
            report::info!(
                "started() called after this generation was asked to restart: a newer generation takes over"
            );
            return;
        }
        state.started = true;
        state.claim_pending = true;
        drop(state);
        let _ = nix::unistd::write(&self.wake.1, &[1]);
    }

    /// Stage 2, on the control thread: the pid file handshake, then tell
    /// the launcher (which reports READY=1 to systemd). A stage 1 that
    /// comes later sees `started` and leaves the pid file alone: this
    /// generation is then the newest on record, and the next one TERMs it.
    fn run_pending_claim(&self) {
        let mut drained = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake.0, &mut drained), Ok(n) if n > 0) {}
        if !std::mem::take(&mut self.lock().claim_pending) {
            return;
        }
        if let Some(pid_file) = &self.pid_file {
            match pid_file.claim() {
                Ok(claimed) => claimed.report(),
                Err(e) => report::error!("pid file handshake failed: {e}"),
            }
        }
        if let Some(channel) = &self.channel {
            let _ = channel.send(Message::Started);
        }
    }

    /// Stage 3.
    fn begin_shutdown(&'static self, reason: &str) {
        let endpoint = {
            let mut state = self.lock();
            if state.shutdown_at.is_some() {
                report::debug!("{reason}: the shutdown is already under way");
                return;
            }
            state.shutdown_at = Some(Instant::now());
            state.endpoint.take()
        };
        drop(endpoint);
        report::info!("graceful shutdown: {reason}");
        if self.attached() {
            if let Some(channel) = &self.channel {
                let _ = channel.send(Message::Stopping);
            }
        }
        SHUTDOWN.open();
        let spawned = std::thread::Builder::new()
            .name("seamless-shutdown".into())
            .spawn(move || {
                handlers::run(Stage::Shutdown, Vec::new(), &|name| {
                    self.lock().running_handler = Some(name.to_owned());
                });
                self.lock().running_handler = None;
                HANDLERS_DONE.open();
            });
        if let Err(e) = spawned {
            report::error!("cannot start the shutdown handlers' thread: {e}");
            HANDLERS_DONE.open();
        }
    }

    /// This generation leaves the pid file and the handover endpoint.
    fn release(&self) {
        let endpoint = self.lock().endpoint.take();
        drop(endpoint);
        if let Some(pid_file) = &self.pid_file {
            if let Err(e) = pid_file.release() {
                report::warning!("cannot update the pid file on exit: {e}");
            }
        }
    }
}

/// Tells seamless that this generation is up and serving (stage 2): the
/// listening sockets are bound and requests can be answered.
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
        Some(daemon) => daemon.started(),
        None => report::debug!("started() before the launcher split: nothing to do"),
    }
}

/// The end of `main` (see [`Session`]).
pub(crate) fn finish() {
    let Some(daemon) = DAEMON.get() else { return };
    if SHUTDOWN.is_open() {
        HANDLERS_DONE.wait();
    }
    daemon.release();
}

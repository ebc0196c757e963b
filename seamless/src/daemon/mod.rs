//! The daemon's side of seamless: its start-up, its stages, driven by one
//! control thread, and the [`Session`] that ends with `main`.
//!
//! The control thread (`seamless-control`) polls the signal pipe, the
//! control channel to the launcher and a wake-up pipe for [`started`], and
//! keeps the deadlines. Every decision is made by [`Machine::step`], a pure
//! function of the state, one [`Event`] and the time, which returns the
//! [`Action`]s the thread then carries out:
//!
//! - **Stage 1**, a restart was requested (the launcher's message, or USR2
//!   sent straight to the daemon): run the `on_shutdown_request` handlers,
//!   record this generation in the pid file if it never called `started()`,
//!   open the listener handover endpoint, tell the launcher it may exit.
//!   The daemon is now detached and keeps serving.
//! - **Stage 2** is [`started`], called by the user in the new generation:
//!   it wakes the control thread, which runs the pid file handshake (TERM
//!   to every earlier generation) off the caller's path, so that serving
//!   starts at once.
//! - **Stage 3**, the graceful shutdown, begins on TERM or INT, when the
//!   launcher is gone without a restart (it was killed), or
//!   `handover_timeout` after stage 1: [`Shutdown`](crate::Shutdown) fires
//!   and the `on_shutdown` handlers run on their own thread. Past
//!   `shutdown_timeout` the process exits with status 1, naming what was
//!   still running: the one exit this crate makes after start-up.
//!
//! A plain process (seamless disabled) has the same thread with TERM and INT
//! only: no launcher, no pid file, no restart.
//!
//! With a pid file, each generation also keeps an endpoint from start-up
//! to exit (`<pid file>.<pid>.ctl`, see [`crate::handover`]). It answers
//! `status` (role, since when, until when, listeners, successors) and
//! `restart` (a TERM to the launcher, as from the supervisor) to `seamless`, the
//! command-line tool; from stage 1 to stage 3 it is also linked at
//! `<pid file>.handover`, where the next generation takes the listeners
//! and [state](crate::state), and where the next launcher reports the
//! daemon it spawned and how that daemon ended if it ended before
//! `started()`. The successors are remembered for `status`.

mod machine;
mod service;
mod session;

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use crate::config::Config;
use crate::control::{Channel, Message, Received, BLOCKED_IN_CHILD};
use crate::error::Error;
use crate::handlers::{self, Stage};
use crate::handover::{self, Endpoint};
use crate::pidfile::PidFile;
use crate::shutdown::{self, HANDLERS_DONE, SHUTDOWN};
use crate::signals::{self, SignalPipe};
use crate::wire::{Ended, Request};
use crate::{net, progname, report, sys};

use machine::{Action, Event, Machine};
use service::ControlService;
pub use session::{started, Session};

// ------------------------------------------------------------------- I/O

/// The daemon's process-wide state: set once by the launcher split.
static DAEMON: OnceLock<Daemon> = OnceLock::new();

struct Daemon {
    config: Config,
    /// The launcher, in a daemon; `None` in a plain process.
    launcher: Option<Launcher>,
    pid_file: Option<PidFile>,
    machine: Mutex<Machine>,
    /// What only the control thread and the shutdown thread touch.
    shared: Mutex<Shared>,
    /// `started()` writes a byte here to wake the control thread.
    wake: (OwnedFd, OwnedFd),
    /// When seamless started in this process: a starting generation's
    /// "since".
    born: Instant,
}

/// A daemon's launcher: its pid and the control channel to it.
struct Launcher {
    pid: i32,
    channel: Channel,
}

#[derive(Default)]
struct Shared {
    /// This generation's endpoint (`<pid file>.<pid>.ctl`), from start-up.
    endpoint: Option<Endpoint>,
    /// The next generations, as far as they made themselves known.
    successors: Vec<Successor>,
    /// The shutdown handler running now, for the timeout's log line.
    running_handler: Option<String>,
    /// Events from the endpoint's threads for the control thread (woken
    /// by [`WAKE_INBOX`]).
    inbox: Vec<Event>,
    /// The successor on probation and its pidfd, readable once it is gone.
    /// Shared with the poll of the control thread, which holds no lock
    /// while it waits.
    watch: Option<(i32, Arc<OwnedFd>)>,
}

/// A later generation: a daemon a launcher reported spawning, or a peer
/// that fetched a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Successor {
    pid: i32,
    ended: Option<Ended>,
    /// It ended this long into its probation.
    into_probation: Option<Duration>,
}

/// The most successors remembered (the oldest are forgotten).
const MAX_SUCCESSORS: usize = 32;

/// The daemon's end of the control channel, as it got it.
#[derive(Debug)]
pub(crate) enum ChannelEnd {
    /// Executed by the launcher: the fd named by `SEAMLESS_DAEMON`.
    Inherited(RawFd),
    /// Forked from the launcher, which handed it over in memory.
    Forked(Channel),
}

/// Start-up of the daemon, the launcher's child.
pub(crate) fn start_daemon(
    config: Config,
    launcher: i32,
    end: ChannelEnd,
) -> Result<Session, Error> {
    if nix::unistd::getppid().as_raw() != launcher {
        // The launcher died before we got here (say, a SIGKILL during
        // start-up). Becoming a launcher ourselves would fork a grandchild
        // nobody supervises; the supervisor is already starting a new one.
        return Err(Error::LauncherGone {
            launcher: launcher as u32, // a pid: positive
        });
    }
    let channel = match end {
        ChannelEnd::Inherited(fd) => {
            // Before any other thread exists: threads started without a
            // name of their own inherit it. (A forked daemon has its
            // launcher's name already.)
            progname::take_from(launcher);
            Channel::from_inherited(fd).map_err(Error::ControlChannel)?
        }
        ChannelEnd::Forked(channel) => channel,
    };
    let pid_file = open_pid_file(&config);
    net::set_origin(net::Origin {
        endpoint: config.pid_file.as_deref().map(handover::endpoint_path),
        launcher: Some(launcher),
    });
    let machine = Machine::new(&config, true);
    let daemon = install(Daemon {
        config,
        launcher: Some(Launcher {
            pid: launcher,
            channel,
        }),
        pid_file,
        machine: Mutex::new(machine),
        shared: Mutex::default(),
        wake: wake_pipe()?,
        born: Instant::now(),
    });
    daemon.open_endpoint();
    spawn_control(daemon, &BLOCKED_IN_CHILD)?;
    Ok(Session::new())
}

/// Start-up of a plain process (seamless disabled).
pub(crate) fn start_plain(config: Config) -> Result<Session, Error> {
    net::set_origin(net::Origin::default());
    let machine = Machine::new(&config, false);
    let daemon = install(Daemon {
        config,
        launcher: None,
        pid_file: None,
        machine: Mutex::new(machine),
        shared: Mutex::default(),
        wake: wake_pipe()?,
        born: Instant::now(),
    });
    spawn_control(daemon, &[libc::SIGTERM, libc::SIGINT])?;
    Ok(Session::new())
}

fn install(daemon: Daemon) -> &'static Daemon {
    if DAEMON.set(daemon).is_err() {
        panic!(
            "seamless is started once per process: Builder::start or #[seamless::daemon] ran twice"
        );
    }
    DAEMON.get().expect("just set")
}

fn wake_pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(|e| Error::WakePipe(e.into()))
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

fn spawn_control(daemon: &'static Daemon, caught: &[i32]) -> Result<(), Error> {
    // Made now, so that `Shutdown::as_fd` cannot fail later.
    SHUTDOWN.fd().map_err(Error::ShutdownFd)?;
    let signals = SignalPipe::install(caught).map_err(Error::Signals)?;
    // Signals that arrived while the launcher kept them blocked are
    // delivered now, into the pipe, and handled by the control thread.
    signals::unblock(caught).map_err(Error::Signals)?;
    std::thread::Builder::new()
        .name("seamless-control".into())
        .spawn(move || daemon.control_loop(signals))
        .map_err(Error::Thread)?;
    Ok(())
}

impl Daemon {
    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn control_loop(&'static self, signals: SignalPipe) -> ! {
        loop {
            let (deadline, attached) = {
                let machine = self.machine();
                (machine.next_deadline(), machine.attached)
            };
            let timeout =
                sys::poll_timeout(deadline.map(|d| d.saturating_duration_since(Instant::now())));
            self.wait(&signals, attached, timeout);
            // `started()` first: a restart requested at the same moment
            // finds this generation started.
            let mut events = Vec::new();
            let (started, restart) = self.woken();
            if started {
                events.push(Event::Started);
            }
            if restart {
                events.push(Event::RestartAsked);
            }
            events.append(&mut self.shared().inbox);
            if let Some(pid) = self.successor_gone() {
                events.push(Event::SuccessorGone(pid));
            }
            for delivery in signals.drain() {
                events.push(match delivery.signal {
                    libc::SIGUSR2 => Event::RestartRequested("SIGUSR2"),
                    signal => Event::Terminate(format!("received {}", signals::name(signal))),
                });
            }
            if attached {
                events.extend(self.read_channel());
            }
            events.push(Event::Tick);
            for event in events {
                let actions = self.machine().step(event, Instant::now());
                for action in actions {
                    self.carry_out(action);
                }
            }
        }
    }

    fn wait(&self, signals: &SignalPipe, attached: bool, timeout: nix::poll::PollTimeout) {
        let shared = self.shared();
        let mut fds = vec![
            PollFd::new(signals.fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.0.as_fd(), PollFlags::POLLIN),
        ];
        if let (true, Some(launcher)) = (attached, &self.launcher) {
            fds.push(PollFd::new(launcher.channel.as_fd(), PollFlags::POLLIN));
        }
        let watch = shared.watch.as_ref().map(|(_, fd)| Arc::clone(fd));
        drop(shared);
        if let Some(fd) = &watch {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                report::error!("seamless control poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The successor on probation, if its pidfd says it is gone (the
    /// watch ends then).
    fn successor_gone(&self) -> Option<i32> {
        let mut shared = self.shared();
        let (pid, fd) = shared.watch.as_ref()?;
        if !sys::readable(fd.as_fd(), Duration::ZERO).unwrap_or(false) {
            return None;
        }
        let pid = *pid;
        shared.watch = None;
        Some(pid)
    }

    /// Whether `started()` ([`WAKE_STARTED`]) and the endpoint
    /// ([`WAKE_RESTART`]) wrote to the wake-up pipe (drained here; a
    /// [`WAKE_INBOX`] only wakes the loop).
    fn woken(&self) -> (bool, bool) {
        let mut drained = [0u8; 64];
        let (mut started, mut restart) = (false, false);
        while let Ok(n @ 1..) = nix::unistd::read(&self.wake.0, &mut drained) {
            started |= drained[..n].contains(&WAKE_STARTED);
            restart |= drained[..n].contains(&WAKE_RESTART);
        }
        (started, restart)
    }

    /// Opens this generation's endpoint; without it, `seamless` cannot
    /// reach this generation and the next one binds afresh.
    fn open_endpoint(&'static self) {
        let Some(pid_file) = &self.config.pid_file else {
            return;
        };
        let path = handover::control_path(pid_file, std::process::id() as i32);
        match handover::open_service(&path, Arc::new(ControlService(self))) {
            Ok(endpoint) => self.shared().endpoint = Some(endpoint),
            Err(e) => report::warning!(
                "cannot open this generation's endpoint {}: {e}; `seamless` cannot reach it and the next generation will bind afresh",
                path.display()
            ),
        }
    }

    fn read_channel(&self) -> Vec<Event> {
        let Some(Launcher { channel, .. }) = &self.launcher else {
            return Vec::new();
        };
        let mut events = Vec::new();
        loop {
            match channel.receive() {
                Received::Message(Message::RestartRequested) => events.push(
                    Event::RestartRequested("the launcher (SIGTERM from the supervisor)"),
                ),
                Received::Message(_) => {}
                Received::Nothing => return events,
                Received::Closed => {
                    events.push(Event::LauncherLost);
                    return events;
                }
            }
        }
    }

    fn carry_out(&'static self, action: Action) {
        match action {
            Action::RunShutdownRequestHandlers => {
                handlers::run(Stage::ShutdownRequest, Vec::new(), &|_| {});
            }
            Action::RecordDetached => {
                if let Some(pid_file) = &self.pid_file {
                    if let Err(e) = pid_file.add_detached() {
                        report::warning!("cannot record this generation in the pid file: {e}");
                    }
                }
            }
            Action::OpenEndpoint => {
                let Some(path) = &self.config.pid_file else {
                    return;
                };
                let path = handover::endpoint_path(path);
                let linked = match &mut self.shared().endpoint {
                    Some(endpoint) => endpoint.link(&path),
                    None => Err(std::io::Error::other("this generation has no endpoint")),
                };
                if let Err(e) = linked {
                    report::warning!(
                        "cannot open the listener handover endpoint {}: {e}; the next generation binds afresh",
                        path.display()
                    );
                }
            }
            Action::Send(message) => {
                if let Some(launcher) = &self.launcher {
                    if let Err(e) = launcher.channel.send(message) {
                        report::debug!("cannot tell the launcher {message:?}: {e}");
                    }
                }
            }
            Action::TermLauncher => match self.launcher.as_ref().map(|l| l.pid) {
                Some(launcher) if nix::unistd::getppid().as_raw() == launcher => {
                    let pid = nix::unistd::Pid::from_raw(launcher);
                    if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM) {
                        report::warning!("cannot send SIGTERM to launcher {launcher}: {e}");
                    }
                }
                _ => report::warning!("`seamless restart`: the launcher is gone; nothing restarts"),
            },
            Action::SignalParent => {
                if let (Some(signal), Some(launcher)) = (self.config.parent_signal, &self.launcher)
                {
                    if nix::unistd::getppid().as_raw() == launcher.pid {
                        let pid = nix::unistd::Pid::from_raw(launcher.pid);
                        let _ = nix::sys::signal::kill(pid, signal);
                    }
                }
            }
            Action::Claim => {
                if let Some(pid_file) = &self.pid_file {
                    match pid_file.claim() {
                        Ok(claimed) => claimed.report(),
                        Err(e) => report::error!("pid file handshake failed: {e}"),
                    }
                }
            }
            Action::ClaimProvisionally => {
                if let Some(pid_file) = &self.pid_file {
                    match pid_file.claim_provisionally() {
                        Ok(kept) if !kept.is_empty() => report::info!(
                            "the pid file names this generation; {kept:?} serve on until the probation ends"
                        ),
                        Ok(_) => {}
                        Err(e) => report::error!("pid file handshake failed: {e}"),
                    }
                }
            }
            Action::AnnounceProbation(length) => {
                if let Some(path) = &self.config.pid_file {
                    let ms = length.as_millis().clamp(1, u64::MAX as u128) as u64;
                    handover::tell(&handover::endpoint_path(path), &Request::Probation(ms));
                }
            }
            Action::StopWatching => self.shared().watch = None,
            Action::SuccessorFailed { pid, how, into } => {
                let me = std::process::id();
                let how_text = how.map(|h| format!(" ({h})")).unwrap_or_default();
                let line = format!(
                    "successor {pid} died {:.1}s into its probation{how_text}; generation {me} serves again",
                    into.as_secs_f64()
                );
                report::warning!("{line}");
                crate::notify::Notifier::from_env().status(&line);
                // The pid file first, so that whoever reads the outcome
                // finds it naming this generation.
                if let Some(pid_file) = &self.pid_file {
                    match pid_file.reinstate() {
                        Ok(true) => {}
                        Ok(false) => report::info!(
                            "the pid file names a newer live generation: left as it is"
                        ),
                        Err(e) => report::warning!(
                            "cannot name this generation in the pid file again: {e}"
                        ),
                    }
                }
                self.successor(pid, how, Some(into));
            }
            Action::BeginShutdown(reason) => self.begin_shutdown(&reason),
            Action::GiveUp(limit) => {
                match self.shared().running_handler.clone() {
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
    }

    /// Stage 3: the handover link goes (the endpoint answers `status`
    /// until the exit), `Shutdown` fires, the handlers run.
    fn begin_shutdown(&'static self, reason: &str) {
        if let Some(endpoint) = &mut self.shared().endpoint {
            endpoint.unlink();
        }
        report::info!("graceful shutdown: {reason}");
        let since = self.machine().shutdown_since();
        shutdown::set_deadline(since.zip(self.config.shutdown_timeout).map(|(s, t)| s + t));
        SHUTDOWN.open();
        let spawned = std::thread::Builder::new()
            .name("seamless-shutdown".into())
            .spawn(move || {
                handlers::run(Stage::Shutdown, Vec::new(), &|name| {
                    self.shared().running_handler = Some(name.to_owned());
                });
                self.shared().running_handler = None;
                HANDLERS_DONE.open();
            });
        if let Err(e) = spawned {
            report::error!("cannot start the shutdown handlers' thread: {e}");
            HANDLERS_DONE.open();
        }
    }

    /// This generation leaves the pid file and the handover endpoint.
    fn release(&self) {
        let endpoint = self.shared().endpoint.take();
        drop(endpoint);
        if let Some(pid_file) = &self.pid_file {
            if let Err(e) = pid_file.release() {
                report::warning!("cannot update the pid file on exit: {e}");
            }
        }
    }
}

/// What `started()` writes into the wake-up pipe.
const WAKE_STARTED: u8 = b'S';
/// What the endpoint writes into it for `seamless restart`.
const WAKE_RESTART: u8 = b'R';
/// What the endpoint writes into it after it put an event in the inbox.
const WAKE_INBOX: u8 = b'I';

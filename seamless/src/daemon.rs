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

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags};

use crate::config::Config;
use crate::control::{Channel, Message, Received, BLOCKED_IN_CHILD};
use crate::error::Error;
use crate::handlers::{self, Stage};
use crate::handover::{self, Endpoint, Reply, Service};
use crate::pidfile::PidFile;
use crate::shutdown::{HANDLERS_DONE, SHUTDOWN};
use crate::signals::{self, SignalPipe};
use crate::wire::{self, Ended, Head, Request};
use crate::{net, procfs, progname, report, state, sys};

// ---------------------------------------------------------------- machine

/// Where this generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving (or starting): `started` says whether `started()` was called.
    Running { started: bool },
    /// Stage 1 is done: detached from the launcher, serving until the next
    /// generation TERMs this one or `handover_timeout` passes.
    Detached { since: Instant, started: bool },
    /// Stage 3.
    ShuttingDown { since: Instant },
}

/// What happens to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A restart was requested (stage 1), by whom.
    RestartRequested(&'static str),
    /// `seamless restart` asked for a restart through the endpoint.
    RestartAsked,
    /// The program called `started()`.
    Started,
    /// TERM or INT: a graceful stop, and why.
    Terminate(String),
    /// The launcher's end of the control channel closed.
    LauncherLost,
    /// Time passed: deadlines are checked.
    Tick,
}

/// What the daemon does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Stage 1's handlers (they run on the control thread).
    RunShutdownRequestHandlers,
    /// Record this generation as `detached` in the pid file, so that the
    /// generation that calls `started()` TERMs it too.
    RecordDetached,
    OpenEndpoint,
    Send(Message),
    /// The configured parent signal to the launcher, if it still is our
    /// parent.
    SignalParent,
    /// TERM to the launcher, if it still is our parent: a restart exactly
    /// as the supervisor's TERM makes one (the launcher's deadlines and
    /// systemd notifications included).
    TermLauncher,
    /// Stage 2: the pid file handshake.
    Claim,
    /// Stage 3: close the endpoint, fire `Shutdown`, run the handlers.
    BeginShutdown(String),
    /// `shutdown_timeout` passed: leave the pid file, exit with status 1.
    GiveUp(Duration),
}

/// The daemon's decisions: no I/O, no clock of its own.
#[derive(Debug)]
struct Machine {
    phase: Phase,
    /// When `started()` took effect.
    started_at: Option<Instant>,
    /// A daemon (with a launcher and the restart protocol), or a plain
    /// process.
    daemon: bool,
    /// The launcher's end of the control channel is open.
    attached: bool,
    /// The configured parent signal exists.
    parent_signal: bool,
    handover_timeout: Duration,
    shutdown_timeout: Option<Duration>,
}

impl Machine {
    fn new(config: &Config, daemon: bool) -> Machine {
        Machine {
            phase: Phase::Running { started: false },
            started_at: None,
            daemon,
            attached: daemon,
            parent_signal: config.parent_signal.is_some(),
            handover_timeout: config.handover_timeout,
            shutdown_timeout: config.shutdown_timeout,
        }
    }

    /// When the next [`Event::Tick`] is due.
    fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { .. } => None,
            Phase::Detached { since, .. } => Some(since + self.handover_timeout),
            Phase::ShuttingDown { since } => self.shutdown_timeout.map(|limit| since + limit),
        }
    }

    /// When stage 3 began, if it has.
    fn shutdown_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::ShuttingDown { since } => Some(since),
            _ => None,
        }
    }

    /// Where this generation stands, as `seamless status` names it: the
    /// role, since when, and until when it lasts at most.
    fn role(&self) -> (&'static str, Option<Instant>, Option<Instant>) {
        match self.phase {
            Phase::Running { started: false } => ("starting", None, None),
            Phase::Running { started: true } => ("serving", self.started_at, None),
            Phase::Detached { since, .. } => {
                ("detached", Some(since), Some(since + self.handover_timeout))
            }
            Phase::ShuttingDown { since } => (
                "draining",
                Some(since),
                self.shutdown_timeout.map(|limit| since + limit),
            ),
        }
    }

    /// Whether a `restart` request may be taken now, or why not.
    fn may_restart(&self) -> Result<(), &'static str> {
        match self.phase {
            _ if !self.daemon => Err("seamless is disabled in this process"),
            Phase::Running { .. } if self.attached => Ok(()),
            Phase::Running { .. } => Err("the launcher is gone"),
            Phase::Detached { .. } => Err("a restart is already under way"),
            Phase::ShuttingDown { .. } => Err("this generation is shutting down"),
        }
    }

    fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::RestartRequested(by) => self.restart_requested(by, now),
            Event::RestartAsked => match self.may_restart() {
                Ok(()) => vec![Action::TermLauncher],
                Err(why) => {
                    report::info!("`seamless restart` ignored: {why}");
                    Vec::new()
                }
            },
            Event::Started => self.started(now),
            Event::Terminate(reason) => self.shut_down(reason, now),
            Event::LauncherLost => {
                let was_attached = std::mem::replace(&mut self.attached, false);
                match self.phase {
                    Phase::Running { .. } if was_attached => {
                        self.shut_down("the launcher is gone".into(), now)
                    }
                    // Expected after stage 1: the launcher stepped aside.
                    _ => Vec::new(),
                }
            }
            Event::Tick => self.tick(now),
        }
    }

    fn restart_requested(&mut self, by: &str, now: Instant) -> Vec<Action> {
        let Phase::Running { started } = self.phase else {
            report::debug!("restart requested by {by} again: ignored");
            return Vec::new();
        };
        if !self.daemon {
            return Vec::new();
        }
        report::info!("restart requested by {by}: preparing (stage 1)");
        self.phase = Phase::Detached {
            since: now,
            started,
        };
        let mut actions = vec![Action::RunShutdownRequestHandlers];
        if !started {
            // Never took over: make sure the generation that will call
            // started() TERMs this one too, not only the one in the pid file.
            actions.push(Action::RecordDetached);
        }
        actions.push(Action::OpenEndpoint);
        if self.attached {
            actions.push(Action::Send(Message::Detached));
            if self.parent_signal {
                actions.push(Action::SignalParent);
            }
        }
        actions
    }

    fn started(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            _ if !self.daemon => Vec::new(),
            Phase::Running { started: false } => {
                self.phase = Phase::Running { started: true };
                self.started_at = Some(now);
                let mut actions = vec![Action::Claim];
                if self.attached {
                    actions.push(Action::Send(Message::Started));
                }
                actions
            }
            Phase::Running { started: true } => Vec::new(),
            Phase::Detached { .. } | Phase::ShuttingDown { .. } => {
                report::info!(
                    "started() called after this generation was asked to restart: a newer generation takes over"
                );
                Vec::new()
            }
        }
    }

    fn shut_down(&mut self, reason: String, now: Instant) -> Vec<Action> {
        if let Phase::ShuttingDown { .. } = self.phase {
            report::debug!("{reason}: the shutdown is already under way");
            return Vec::new();
        }
        self.phase = Phase::ShuttingDown { since: now };
        let mut actions = Vec::new();
        if self.attached {
            actions.push(Action::Send(Message::Stopping));
        }
        actions.push(Action::BeginShutdown(reason));
        actions
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Detached { since, .. } if now >= since + self.handover_timeout => {
                let reason = format!(
                    "no new generation took over within handover_timeout ({:?})",
                    self.handover_timeout
                );
                self.shut_down(reason, now)
            }
            Phase::ShuttingDown { since } => match self.shutdown_timeout {
                Some(limit) if now >= since + limit => vec![Action::GiveUp(limit)],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

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
}

/// A later generation: a daemon a launcher reported spawning, or a peer
/// that fetched a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Successor {
    pid: i32,
    ended: Option<Ended>,
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
        return Err(Error::LauncherGone { launcher });
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
    Ok(Session { finished: false })
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
    Ok(Session { finished: false })
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
        .map_err(|e| Error::Thread(e.into()))
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
        let mut fds = vec![
            PollFd::new(signals.fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.0.as_fd(), PollFlags::POLLIN),
        ];
        if let (true, Some(launcher)) = (attached, &self.launcher) {
            fds.push(PollFd::new(launcher.channel.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                report::error!("seamless control poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Whether `started()` ([`WAKE_STARTED`]) and the endpoint
    /// ([`WAKE_RESTART`]) wrote to the wake-up pipe (drained here).
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

/// The endpoint's answers: this generation's status, restart requests,
/// and from stage 1 on, its listeners and state for the next generation.
struct ControlService(&'static Daemon);

impl Service for ControlService {
    fn answer(&self, peer: sys::Peer, request: Request) -> Reply {
        let daemon = self.0;
        let handing_over = matches!(daemon.machine().phase, Phase::Detached { .. });
        match request {
            Request::Listener(name) if handing_over => {
                daemon.successor(peer.pid, None);
                Reply::listener(&**net::registry(), &name)
            }
            Request::State(name) if handing_over => state::reply(&name),
            Request::Listener(_) | Request::State(_) => {
                Reply::refused("this generation is not handing over")
            }
            Request::Status => Reply {
                head: Head::Ok(String::new()),
                body: daemon.status().encode().into_bytes(),
                fds: Vec::new(),
            },
            Request::Restart => match daemon.machine().may_restart() {
                Ok(()) => {
                    report::info!("restart requested through the endpoint by pid {}", peer.pid);
                    let _ = nix::unistd::write(&daemon.wake.1, &[WAKE_RESTART]);
                    Reply::head(Head::Ok(String::new()))
                }
                Err(why) => Reply::refused(why),
            },
            Request::Spawned(pid) => {
                report::debug!("launcher {} spawned daemon {pid}", peer.pid);
                daemon.successor(pid, None);
                Reply::head(Head::Ok(String::new()))
            }
            Request::Exited(pid, how) => {
                report::warning!(
                    "the next generation's daemon {pid} ended before started() ({how}); this generation goes on serving"
                );
                daemon.successor(pid, Some(how));
                Reply::head(Head::Ok(String::new()))
            }
        }
    }
}

impl Daemon {
    /// Records what is known of a successor.
    fn successor(&self, pid: i32, ended: Option<Ended>) {
        let mut shared = self.shared();
        let known = &mut shared.successors;
        match known.iter_mut().find(|s| s.pid == pid) {
            Some(s) => s.ended = ended.or(s.ended),
            None => {
                if known.len() >= MAX_SUCCESSORS {
                    known.remove(0);
                }
                known.push(Successor { pid, ended });
            }
        }
    }

    fn status(&self) -> wire::Status {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let wall_ms = |at: Instant| {
            let at = if at <= now {
                wall.checked_sub(now - at)
            } else {
                wall.checked_add(at - now)
            };
            at.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
        };
        let (role, since, until, attached) = {
            let machine = self.machine();
            let (role, since, until) = machine.role();
            let since = since.or((role == "starting").then_some(self.born));
            (role, since, until, machine.attached)
        };
        let successors = self
            .shared()
            .successors
            .iter()
            .map(|s| {
                let what = match s.ended {
                    Some(Ended::Status(code)) => format!("exited status {code}"),
                    Some(Ended::Signal(signal)) => format!("killed signal {signal}"),
                    None if procfs::is_alive(s.pid) => "running".into(),
                    None => "gone".into(),
                };
                (s.pid, what)
            })
            .collect();
        wire::Status {
            pid: std::process::id() as i32,
            role: role.into(),
            since_ms: since.and_then(wall_ms),
            until_ms: until.and_then(wall_ms),
            launcher: self.launcher.as_ref().map(|l| l.pid).filter(|_| attached),
            handover_timeout_ms: self.config.handover_timeout.as_millis() as u64,
            listeners: net::registry().list(),
            successors,
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
        Some(daemon) => {
            let _ = nix::unistd::write(&daemon.wake.1, &[WAKE_STARTED]);
        }
        None => report::debug!("started() before the launcher split: nothing to do"),
    }
}

/// When the graceful shutdown must be over: its start plus
/// `shutdown_timeout`, if both are known (for servers that bound their
/// drain by it: `serve`).
#[cfg(any(feature = "hyper", feature = "actix"))]
pub(crate) fn shutdown_deadline() -> Option<Instant> {
    let daemon = DAEMON.get()?;
    let since = daemon.machine().shutdown_since()?;
    Some(since + daemon.config.shutdown_timeout?)
}

/// The daemon's side of seamless, from the launcher split to the end of
/// `main`. Ending it ([`finish`](Session::finish), or dropping it) waits
/// for the shutdown handlers when a shutdown is under way, then removes
/// this generation from the pid file.
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
            HANDLERS_DONE.wait();
        }
        daemon.release();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::new("/tmp/x.pid".into());
        config.handover_timeout = Duration::from_secs(10);
        config.shutdown_timeout = Some(Duration::from_secs(30));
        config
    }

    fn daemon() -> Machine {
        Machine::new(&config(), true)
    }

    const SECOND: Duration = Duration::from_secs(1);

    fn begins_shutdown(actions: &[Action], attached: bool) -> bool {
        let sends = actions.contains(&Action::Send(Message::Stopping));
        sends == attached && matches!(actions.last(), Some(Action::BeginShutdown(_)))
    }

    #[test]
    fn started_claims_once_and_tells_the_launcher() {
        let (mut m, t0) = (daemon(), Instant::now());
        assert_eq!(
            m.step(Event::Started, t0),
            [Action::Claim, Action::Send(Message::Started)]
        );
        assert_eq!(m.step(Event::Started, t0), []);
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn a_restart_of_a_started_generation_detaches_it() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::Started, t0);
        assert_eq!(
            m.step(Event::RestartRequested("test"), t0),
            [
                Action::RunShutdownRequestHandlers,
                Action::OpenEndpoint,
                Action::Send(Message::Detached)
            ]
        );
        assert_eq!(
            m.phase,
            Phase::Detached {
                since: t0,
                started: true
            }
        );
        assert_eq!(m.next_deadline(), Some(t0 + 10 * SECOND));
    }

    #[test]
    fn a_restart_during_start_up_records_the_generation_as_detached() {
        let (mut m, t0) = (daemon(), Instant::now());
        assert_eq!(
            m.step(Event::RestartRequested("test"), t0),
            [
                Action::RunShutdownRequestHandlers,
                Action::RecordDetached,
                Action::OpenEndpoint,
                Action::Send(Message::Detached)
            ]
        );
        // Too late to take over: a newer generation does.
        assert_eq!(m.step(Event::Started, t0), []);
    }

    #[test]
    fn the_parent_signal_follows_the_message() {
        let mut config = config();
        config.parent_signal = Some(nix::sys::signal::Signal::SIGUSR1);
        let mut m = Machine::new(&config, true);
        let actions = m.step(Event::RestartRequested("test"), Instant::now());
        assert_eq!(
            &actions[actions.len() - 2..],
            [Action::Send(Message::Detached), Action::SignalParent]
        );
    }

    #[test]
    fn a_second_restart_request_is_ignored() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::RestartRequested("test"), t0);
        assert_eq!(m.step(Event::RestartRequested("again"), t0 + SECOND), []);
        m.step(Event::Terminate("TERM".into()), t0 + SECOND);
        assert_eq!(m.step(Event::RestartRequested("late"), t0 + SECOND), []);
    }

    #[test]
    fn term_begins_the_shutdown_once() {
        let (mut m, t0) = (daemon(), Instant::now());
        let actions = m.step(Event::Terminate("received SIGTERM".into()), t0);
        assert!(begins_shutdown(&actions, true), "{actions:?}");
        assert_eq!(m.step(Event::Terminate("again".into()), t0), []);
        assert_eq!(m.shutdown_since(), Some(t0));
    }

    #[test]
    fn term_while_detached_is_the_next_generation_taking_over() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::Started, t0);
        m.step(Event::RestartRequested("test"), t0);
        m.step(Event::LauncherLost, t0); // the launcher stepped aside
        let actions = m.step(Event::Terminate("received SIGTERM".into()), t0 + SECOND);
        assert!(begins_shutdown(&actions, false), "{actions:?}");
    }

    #[test]
    fn no_successor_within_the_handover_timeout_shuts_down() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::RestartRequested("test"), t0);
        m.step(Event::LauncherLost, t0);
        assert_eq!(m.step(Event::Tick, t0 + 9 * SECOND), []);
        let actions = m.step(Event::Tick, t0 + 10 * SECOND);
        assert!(begins_shutdown(&actions, false), "{actions:?}");
        assert_eq!(m.next_deadline(), Some(t0 + 40 * SECOND));
    }

    #[test]
    fn losing_the_launcher_while_serving_shuts_down() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::Started, t0);
        let actions = m.step(Event::LauncherLost, t0);
        assert!(begins_shutdown(&actions, false), "{actions:?}");
        // Nothing to tell a launcher that is gone.
        assert_eq!(m.step(Event::Started, t0), []);
    }

    #[test]
    fn losing_the_launcher_while_detached_changes_nothing() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::RestartRequested("test"), t0);
        assert_eq!(m.step(Event::LauncherLost, t0), []);
        assert!(matches!(m.phase, Phase::Detached { .. }));
        assert_eq!(m.step(Event::LauncherLost, t0), []);
    }

    #[test]
    fn a_restart_after_the_launcher_is_lost_is_ignored() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::LauncherLost, t0);
        // Already shutting down: stage 1 would detach nothing.
        assert_eq!(m.step(Event::RestartRequested("SIGUSR2"), t0), []);
    }

    #[test]
    fn past_the_shutdown_timeout_the_daemon_gives_up() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::Terminate("TERM".into()), t0);
        assert_eq!(m.step(Event::Tick, t0 + 29 * SECOND), []);
        assert_eq!(
            m.step(Event::Tick, t0 + 30 * SECOND),
            [Action::GiveUp(30 * SECOND)]
        );
    }

    #[test]
    fn without_a_shutdown_timeout_there_is_no_deadline() {
        let mut config = config();
        config.shutdown_timeout = None;
        let (mut m, t0) = (Machine::new(&config, true), Instant::now());
        m.step(Event::Terminate("TERM".into()), t0);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.step(Event::Tick, t0 + 3600 * SECOND), []);
    }

    #[test]
    fn the_role_and_the_restart_verb_follow_the_phase() {
        let (mut m, t0) = (daemon(), Instant::now());
        assert_eq!(m.role(), ("starting", None, None));
        assert_eq!(m.may_restart(), Ok(()));
        m.step(Event::Started, t0);
        assert_eq!(m.role(), ("serving", Some(t0), None));
        m.step(Event::RestartRequested("test"), t0 + SECOND);
        assert_eq!(
            m.role(),
            ("detached", Some(t0 + SECOND), Some(t0 + 11 * SECOND))
        );
        assert!(m.may_restart().is_err());
        m.step(Event::Terminate("TERM".into()), t0 + 2 * SECOND);
        assert_eq!(
            m.role(),
            ("draining", Some(t0 + 2 * SECOND), Some(t0 + 32 * SECOND))
        );
        assert!(m.may_restart().is_err());
        let mut lost = daemon();
        lost.attached = false;
        assert_eq!(lost.may_restart(), Err("the launcher is gone"));
        assert_eq!(lost.step(Event::RestartAsked, t0), []);
        // Asked while serving: the launcher gets the supervisor's TERM.
        let mut serving = daemon();
        serving.step(Event::Started, t0);
        assert_eq!(
            serving.step(Event::RestartAsked, t0),
            [Action::TermLauncher]
        );
        assert!(Machine::new(&config(), false).may_restart().is_err());
    }

    #[test]
    fn a_plain_process_only_shuts_down() {
        let (mut m, t0) = (Machine::new(&config(), false), Instant::now());
        assert_eq!(m.step(Event::Started, t0), []);
        assert_eq!(m.step(Event::RestartRequested("SIGUSR2"), t0), []);
        assert_eq!(m.phase, Phase::Running { started: false });
        let actions = m.step(Event::Terminate("received SIGINT".into()), t0);
        assert!(begins_shutdown(&actions, false), "{actions:?}");
    }
}

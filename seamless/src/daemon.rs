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
use crate::wire::{self, Ended, Fate, Head, Request};
use crate::{net, pidfile, procfs, progname, report, state, sys};

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

/// While detached: a successor on probation, which this generation
/// serves beside until the probation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Covering {
    pid: i32,
    /// When the successor called `started()` (when we heard of it).
    began: Instant,
    until: Instant,
    /// When its pidfd said it is gone: its launcher's report of how it
    /// ended is awaited until [`REPORT_WAIT`] later.
    gone_at: Option<Instant>,
}

/// How long a successor's launcher is given to report how it ended, once
/// it is seen gone, before this generation goes on without knowing.
const REPORT_WAIT: Duration = Duration::from_millis(250);

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
    /// A successor called `started()` and is on probation this long.
    ProbationBegan { pid: i32, length: Duration },
    /// A successor is gone (its pidfd), how is not known yet.
    SuccessorGone(i32),
    /// A successor's launcher reported how it ended.
    SuccessorEnded(i32, Ended),
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
    /// Stage 2 with a probation: name this generation in the pid file,
    /// signal nobody yet.
    ClaimProvisionally,
    /// Tell the generation handing over that this one is on probation.
    AnnounceProbation(Duration),
    /// A successor failed its probation: record how, say so, name this
    /// generation in the pid file again.
    SuccessorFailed {
        pid: i32,
        how: Option<Ended>,
        into: Duration,
    },
    /// Stop watching the successor's pidfd.
    StopWatching,
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
    /// The configured probation.
    probation: Option<Duration>,
    /// This generation's own probation: when it ends.
    probation_until: Option<Instant>,
    /// A restart requested during the probation, by whom: it begins when
    /// the probation has passed.
    pending_restart: Option<&'static str>,
    /// While detached: the successor on probation.
    covering: Option<Covering>,
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
            probation: config.probation,
            probation_until: None,
            pending_restart: None,
            covering: None,
            handover_timeout: config.handover_timeout,
            shutdown_timeout: config.shutdown_timeout,
        }
    }

    /// When the next [`Event::Tick`] is due.
    fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { .. } => self.probation_until,
            Phase::Detached { since, .. } => Some(match self.covering {
                Some(Covering {
                    gone_at: Some(gone),
                    ..
                }) => gone + REPORT_WAIT,
                Some(c) => c.until + self.handover_timeout,
                None => since + self.handover_timeout,
            }),
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
            Phase::Running { started: true } => match self.probation_until {
                Some(until) => ("probation", self.started_at, Some(until)),
                None => ("serving", self.started_at, None),
            },
            Phase::Detached { since, .. } => ("detached", Some(since), self.next_deadline()),
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
            Event::Terminate(reason) => {
                let mut actions = Vec::new();
                if self.probation_until.take().is_some() {
                    // A TERM is a stop, not a failure: the generations
                    // this one was to replace stop with it.
                    report::info!(
                        "{reason} during the probation: the previous generations are sent TERM too"
                    );
                    actions.push(Action::Claim);
                }
                actions.extend(self.shut_down(reason, now));
                actions
            }
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
            Event::ProbationBegan { pid, length } => match self.phase {
                Phase::Detached { .. } => {
                    report::info!(
                        "successor {pid} called started() and is on probation for {length:?}: this generation serves beside it until then"
                    );
                    self.covering = Some(Covering {
                        pid,
                        began: now,
                        until: now + length,
                        gone_at: None,
                    });
                    Vec::new()
                }
                _ => vec![Action::StopWatching],
            },
            Event::SuccessorGone(pid) => {
                if let Some(c) = &mut self.covering {
                    if c.pid == pid && c.gone_at.is_none() {
                        c.gone_at = Some(now);
                    }
                }
                Vec::new()
            }
            Event::SuccessorEnded(pid, how) => match self.covering {
                Some(c) if c.pid == pid => self.successor_failed(Some(how), now),
                _ => Vec::new(),
            },
            Event::Tick => self.tick(now),
        }
    }

    /// The successor on probation ended: this generation, which never
    /// stopped accepting, serves on, detached again, waiting for the
    /// supervisor's next generation under `handover_timeout`.
    fn successor_failed(&mut self, how: Option<Ended>, now: Instant) -> Vec<Action> {
        let Some(c) = self.covering.take() else {
            return Vec::new();
        };
        if let Phase::Detached { started, .. } = self.phase {
            self.phase = Phase::Detached {
                since: now,
                started,
            };
        }
        vec![
            Action::StopWatching,
            Action::SuccessorFailed {
                pid: c.pid,
                how,
                into: c.gone_at.unwrap_or(now).saturating_duration_since(c.began),
            },
        ]
    }

    fn restart_requested(&mut self, by: &'static str, now: Instant) -> Vec<Action> {
        let Phase::Running { started } = self.phase else {
            report::debug!("restart requested by {by} again: ignored");
            return Vec::new();
        };
        if let Some(until) = self.probation_until {
            if self.pending_restart.is_none() && self.daemon {
                report::info!(
                    "restart requested by {by} during the probation: it begins when the probation ends, in {:?}",
                    until.saturating_duration_since(now)
                );
                self.pending_restart = Some(by);
            }
            return Vec::new();
        }
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
                let mut actions = match self.probation {
                    Some(length) => {
                        report::info!(
                            "started(): on probation for {length:?}; the previous generation serves beside this one until it ends"
                        );
                        self.probation_until = Some(now + length);
                        vec![
                            Action::AnnounceProbation(length),
                            Action::ClaimProvisionally,
                        ]
                    }
                    None => vec![Action::Claim],
                };
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
        self.probation_until = None;
        self.pending_restart = None;
        self.covering = None;
        let mut actions = Vec::new();
        if self.attached {
            actions.push(Action::Send(Message::Stopping));
        }
        actions.push(Action::BeginShutdown(reason));
        actions
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::Running { .. } if self.probation_until.is_some_and(|t| now >= t) => {
                self.probation_until = None;
                report::info!("probation passed: the previous generations are sent TERM");
                let mut actions = vec![Action::Claim];
                if self.attached {
                    actions.push(Action::Send(Message::Passed));
                }
                if let Some(by) = self.pending_restart.take() {
                    actions.extend(self.restart_requested(by, now));
                }
                actions
            }
            Phase::Detached { .. } if self.covering.is_some() => {
                let c = self.covering.expect("checked");
                match c.gone_at {
                    Some(gone) if now >= gone + REPORT_WAIT => self.successor_failed(None, now),
                    Some(_) => Vec::new(),
                    None if now >= c.until + self.handover_timeout => {
                        self.covering = None;
                        let reason = format!(
                            "successor {}'s probation ended and it did not take over within handover_timeout ({:?})",
                            c.pid, self.handover_timeout
                        );
                        self.shut_down(reason, now)
                    }
                    None => Vec::new(),
                }
            }
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
    /// Events from the endpoint's threads for the control thread (woken
    /// by [`WAKE_INBOX`]).
    inbox: Vec<Event>,
    /// The successor on probation and its pidfd, readable once it is gone.
    watch: Option<(i32, OwnedFd)>,
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
        // A duplicate, so that the lock is not held across the poll.
        let watch = shared
            .watch
            .as_ref()
            .and_then(|(_, fd)| fd.try_clone().ok());
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

/// The endpoint's answers: this generation's status, restart requests,
/// and from stage 1 on, its listeners and state for the next generation.
struct ControlService(&'static Daemon);

impl Service for ControlService {
    fn answer(&self, peer: sys::Peer, request: Request) -> Reply {
        let daemon = self.0;
        let handing_over = matches!(daemon.machine().phase, Phase::Detached { .. });
        match request {
            Request::Listener(name) if handing_over => {
                daemon.successor(peer.pid, None, None);
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
                daemon.successor(pid, None, None);
                Reply::head(Head::Ok(String::new()))
            }
            Request::Exited(pid, how) => {
                let on_probation = daemon.machine().covering.is_some_and(|c| c.pid == pid);
                if on_probation {
                    daemon.post(Event::SuccessorEnded(pid, how));
                } else {
                    report::warning!(
                        "the next generation's daemon {pid} ended before started() ({how}); this generation goes on serving"
                    );
                    daemon.successor(pid, Some(how), None);
                }
                Reply::head(Head::Ok(String::new()))
            }
            Request::Probation(ms) if handing_over => {
                // The peer is connected, so its pid is its own: the pidfd
                // cannot name another process.
                match pidfile::open_pidfd(peer.pid) {
                    Ok(Some(fd)) => daemon.shared().watch = Some((peer.pid, fd)),
                    Ok(None) => report::warning!(
                        "no pidfd for successor {}: its end is known only when its launcher reports it",
                        peer.pid
                    ),
                    Err(why) => return Reply::refused(format!("pid {}: {why}", peer.pid)),
                }
                daemon.successor(peer.pid, None, None);
                daemon.post(Event::ProbationBegan {
                    pid: peer.pid,
                    length: Duration::from_millis(ms),
                });
                Reply::head(Head::Ok(String::new()))
            }
            Request::Probation(_) => Reply::refused("this generation is not handing over"),
        }
    }
}

impl Daemon {
    /// Hands an event to the control thread.
    fn post(&self, event: Event) {
        self.shared().inbox.push(event);
        let _ = nix::unistd::write(&self.wake.1, &[WAKE_INBOX]);
    }

    /// Records what is known of a successor.
    fn successor(&self, pid: i32, ended: Option<Ended>, into_probation: Option<Duration>) {
        let mut shared = self.shared();
        let known = &mut shared.successors;
        match known.iter_mut().find(|s| s.pid == pid) {
            Some(s) => {
                s.ended = ended.or(s.ended);
                s.into_probation = into_probation.or(s.into_probation);
            }
            None => {
                if known.len() >= MAX_SUCCESSORS {
                    known.remove(0);
                }
                known.push(Successor {
                    pid,
                    ended,
                    into_probation,
                });
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
        let (role, since, until, attached, covering) = {
            let machine = self.machine();
            let (role, since, until) = machine.role();
            let since = since.or((role == "starting").then_some(self.born));
            (role, since, until, machine.attached, machine.covering)
        };
        let successors = self
            .shared()
            .successors
            .iter()
            .map(|s| {
                let into_probation_ms = s.into_probation.map(|d| d.as_millis() as u64);
                let fate = match (s.ended, covering) {
                    (Some(how), _) => Fate::Ended {
                        how,
                        into_probation_ms,
                    },
                    (None, Some(c)) if c.pid == s.pid && c.gone_at.is_none() => {
                        match wall_ms(c.until) {
                            Some(until_ms) => Fate::Probation { until_ms },
                            None => Fate::Running,
                        }
                    }
                    (None, _) if into_probation_ms.is_none() && procfs::is_alive(s.pid) => {
                        Fate::Running
                    }
                    (None, _) => Fate::Gone { into_probation_ms },
                };
                (s.pid, fate)
            })
            .collect();
        wire::Status {
            pid: std::process::id() as i32,
            role: role.into(),
            since_ms: since.and_then(wall_ms),
            until_ms: until.and_then(wall_ms),
            launcher: self.launcher.as_ref().map(|l| l.pid).filter(|_| attached),
            handover_timeout_ms: self.config.handover_timeout.as_millis() as u64,
            probation_ms: self.config.probation.map_or(0, |p| p.as_millis() as u64),
            listeners: net::registry().list(),
            successors,
        }
    }
}

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

/// When the graceful shutdown must be over: its start plus
/// `shutdown_timeout`, if both are known (for servers that bound their
/// drain by it: `serve`).
#[cfg(feature = "hyper")]
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

    fn on_probation() -> Machine {
        let mut config = config();
        config.probation = Some(5 * SECOND);
        Machine::new(&config, true)
    }

    #[test]
    fn with_a_probation_started_signals_nobody_until_it_passes() {
        let (mut m, t0) = (on_probation(), Instant::now());
        assert_eq!(
            m.step(Event::Started, t0),
            [
                Action::AnnounceProbation(5 * SECOND),
                Action::ClaimProvisionally,
                Action::Send(Message::Started)
            ]
        );
        assert_eq!(m.role(), ("probation", Some(t0), Some(t0 + 5 * SECOND)));
        assert_eq!(m.next_deadline(), Some(t0 + 5 * SECOND));
        assert_eq!(m.step(Event::Tick, t0 + 4 * SECOND), []);
        assert_eq!(
            m.step(Event::Tick, t0 + 5 * SECOND),
            [Action::Claim, Action::Send(Message::Passed)]
        );
        assert_eq!(m.role().0, "serving");
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.step(Event::Tick, t0 + 9 * SECOND), []);
    }

    #[test]
    fn a_restart_during_the_probation_begins_when_it_passes() {
        let (mut m, t0) = (on_probation(), Instant::now());
        m.step(Event::Started, t0);
        assert_eq!(m.may_restart(), Ok(()));
        assert_eq!(m.step(Event::RestartRequested("test"), t0 + SECOND), []);
        assert_eq!(m.step(Event::RestartRequested("again"), t0 + SECOND), []);
        assert_eq!(m.phase, Phase::Running { started: true });
        assert_eq!(
            m.step(Event::Tick, t0 + 5 * SECOND),
            [
                Action::Claim,
                Action::Send(Message::Passed),
                Action::RunShutdownRequestHandlers,
                Action::OpenEndpoint,
                Action::Send(Message::Detached)
            ]
        );
        assert!(matches!(m.phase, Phase::Detached { .. }));
    }

    #[test]
    fn term_during_the_probation_stops_the_previous_generations_too() {
        let (mut m, t0) = (on_probation(), Instant::now());
        m.step(Event::Started, t0);
        let actions = m.step(Event::Terminate("SIGTERM".into()), t0 + SECOND);
        assert_eq!(actions[0], Action::Claim);
        assert!(begins_shutdown(&actions, true));
        // The probation is over with the shutdown: no second claim.
        assert_eq!(m.step(Event::Tick, t0 + 6 * SECOND), []);
    }

    #[test]
    fn losing_the_launcher_during_the_probation_signals_nobody() {
        let (mut m, t0) = (on_probation(), Instant::now());
        m.step(Event::Started, t0);
        let actions = m.step(Event::LauncherLost, t0 + SECOND);
        assert!(!actions.contains(&Action::Claim));
        assert!(begins_shutdown(&actions, false));
    }

    /// A detached generation covering successor 77's probation.
    fn covering(t0: Instant) -> Machine {
        let mut m = daemon();
        m.step(Event::Started, t0);
        m.step(Event::RestartRequested("test"), t0);
        let began = Event::ProbationBegan {
            pid: 77,
            length: 5 * SECOND,
        };
        assert_eq!(m.step(began, t0 + SECOND), []);
        m
    }

    #[test]
    fn a_successor_on_probation_suspends_the_handover_timeout() {
        let t0 = Instant::now();
        let mut m = covering(t0);
        assert_eq!(m.role(), ("detached", Some(t0), Some(t0 + 16 * SECOND)));
        assert_eq!(m.step(Event::Tick, t0 + 11 * SECOND), []);
        // Its probation passed: it sends TERM, as without a probation.
        let actions = m.step(Event::Terminate("SIGTERM".into()), t0 + 6 * SECOND);
        assert!(begins_shutdown(&actions, true));
    }

    #[test]
    fn a_successor_dying_on_probation_leaves_this_generation_serving() {
        let t0 = Instant::now();
        let mut m = covering(t0);
        let died = t0 + 2 * SECOND;
        assert_eq!(
            m.step(Event::SuccessorEnded(77, Ended::Status(101)), died),
            [
                Action::StopWatching,
                Action::SuccessorFailed {
                    pid: 77,
                    how: Some(Ended::Status(101)),
                    into: SECOND
                }
            ]
        );
        // Detached again, with a new handover_timeout for the next one.
        assert_eq!(
            m.phase,
            Phase::Detached {
                since: died,
                started: true
            }
        );
        assert_eq!(m.next_deadline(), Some(died + 10 * SECOND));
        assert_eq!(
            m.step(Event::SuccessorEnded(77, Ended::Status(101)), died),
            []
        );
    }

    #[test]
    fn a_successor_seen_gone_is_given_time_to_be_reported() {
        let t0 = Instant::now();
        let mut m = covering(t0);
        let gone = t0 + 3 * SECOND;
        assert_eq!(m.step(Event::SuccessorGone(77), gone), []);
        assert_eq!(m.next_deadline(), Some(gone + REPORT_WAIT));
        assert_eq!(m.step(Event::Tick, gone + REPORT_WAIT / 2), []);
        assert_eq!(
            m.step(Event::Tick, gone + REPORT_WAIT),
            [
                Action::StopWatching,
                Action::SuccessorFailed {
                    pid: 77,
                    how: None,
                    into: 2 * SECOND
                }
            ]
        );
        assert!(matches!(m.phase, Phase::Detached { .. }));
    }

    #[test]
    fn a_successor_that_passed_but_never_took_over_is_waited_for_no_longer() {
        let t0 = Instant::now();
        let mut m = covering(t0);
        assert_eq!(m.step(Event::Tick, t0 + 15 * SECOND), []);
        assert!(begins_shutdown(
            &m.step(Event::Tick, t0 + 16 * SECOND),
            true
        ));
    }

    #[test]
    fn a_probation_is_covered_only_while_handing_over() {
        let (mut m, t0) = (daemon(), Instant::now());
        m.step(Event::Started, t0);
        let began = Event::ProbationBegan {
            pid: 77,
            length: 5 * SECOND,
        };
        assert_eq!(m.step(began, t0), [Action::StopWatching]);
        assert_eq!(m.covering, None);
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

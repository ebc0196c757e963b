//! The launcher: the process the supervisor started.
//!
//! It never runs user code. It installs its signal handling, starts the
//! daemon (with the daemon's end of the control channel and with
//! [`BLOCKED_IN_CHILD`] blocked until the daemon's handlers exist), runs
//! the `on_child_launch` handlers, then loops on one thread.
//!
//! The daemon is started by `fork()` alone: the child returns from
//! [`run`] with [`Forked`] and goes on as the daemon, so the program is
//! loaded once, not twice. That is safe because the launcher has run no
//! user code and has one thread, which it checks (`/proc/self/stat`) just
//! before: the child is a whole copy of a process that held no lock, and
//! may run ordinary code. Every signal is blocked across the fork; the
//! child gives each signal the launcher caught the disposition exec would
//! have given it (`SignalPipe::undo_in_child`), closes the launcher's pipe
//! and its end of the channel, and sets its mask to [`BLOCKED_IN_CHILD`].
//! It keeps the launcher's argv, kernel name and executable by
//! construction. Should the launcher have more than one thread (a
//! library's constructor may start one before `main`), or should its
//! threads not be countable, it executes `/proc/self/exe` instead, with
//! the role in [`control::ENV_VAR`], as the daemon was always started
//! before.
//!
//! Every decision is made by [`Machine::step`], a pure function of the
//! state, one [`Event`] and the time, which returns the [`Action`]s to
//! take; [`Launcher::run`] only waits for events and carries actions out.
//! The rules:
//!
//! - TERM (the supervisor's stop or restart): ask the daemon to prepare a
//!   restart (stage 1) and give it `prepare_timeout` to answer; a later
//!   TERM is ignored while that is under way, or once the daemon stops.
//! - the daemon answers "detached" (or sends the configured parent signal):
//!   exit 0, so the supervisor starts the next generation while the old
//!   one goes on serving.
//! - no answer in time, or the request cannot be sent: TERM the daemon (a
//!   plain graceful stop).
//! - the daemon exits: exit with the same status, or die of the same
//!   signal, so the supervisor sees a crash as a crash.
//! - any other catchable signal is forwarded to the daemon, except those
//!   the terminal sent to the whole foreground group (the daemon got them
//!   too) and those the daemon or the launcher itself sent.
//! - under systemd, while the daemon stops: extend the stop timeout every
//!   5 s; and `STATUS=` lines say which generation serves and how a
//!   restart went.
//! - the daemon ends before it called `started()`: tell the previous
//!   generation's endpoint how (if one is handing over), so that
//!   `seamless restart` can report it, then pass the status on.
//!
//! The daemon is forked from this, the main, thread, which lives as long
//! as the launcher.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::config::Config;
use crate::control::{self, Channel, Message, Received, BLOCKED_IN_CHILD};
use crate::error::Error;
use crate::handlers::{self, Stage};
use crate::notify::Notifier;
use crate::signals::{self, Delivery, SignalPipe};
use crate::wire::{Ended, Request};
use crate::{handover, procfs, report, sys};

/// Every catchable signal the launcher forwards (the original's list, less
/// SIGILL, SIGFPE and SIGSEGV, which only make sense for the faulting
/// process itself, and less SIGTERM and SIGCHLD, handled here).
const FORWARDED: [i32; 22] = [
    libc::SIGABRT,
    libc::SIGALRM,
    libc::SIGBUS,
    libc::SIGCONT,
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGIO,
    libc::SIGPIPE,
    libc::SIGPROF,
    libc::SIGQUIT,
    libc::SIGSYS,
    libc::SIGTRAP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGVTALRM,
    libc::SIGWINCH,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

/// How often, and by how much, the launcher extends systemd's stop timeout
/// while the daemon drains.
const EXTEND_EVERY: Duration = Duration::from_secs(5);
const EXTEND_BY: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- machine

/// Where a restart request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The daemon serves; nothing asked of it.
    Running,
    /// Asked the daemon to prepare a restart; TERM it at the deadline.
    Preparing { deadline: Instant },
    /// The daemon was told to stop, or began to on its own: wait for it.
    Stopping,
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(Signal),
    /// Not our child any more (someone else reaped it).
    Vanished,
}

/// What happens to the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Signal(Delivery),
    Message(Message),
    /// The daemon's end of the control channel is closed.
    ChannelClosed,
    /// A message could not be sent on the control channel.
    SendFailed,
    Exited(Exit),
    /// Time passed: deadlines are checked.
    Tick,
}

/// A systemd notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    Ready,
    Reloading,
    Stopping,
    ExtendTimeout,
    /// A `STATUS=` line about the daemon.
    Status(Status),
}

/// What a `STATUS=` line says of the daemon (its pid is added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// It called `started()`.
    Serving,
    /// It called `started()` and is on probation for this long.
    OnProbation(Duration),
    /// It passed its probation: the previous generations were sent TERM.
    Passed,
    /// A restart was requested: it prepares.
    Restarting,
    /// It finished stage 1 and serves on, detached.
    HandedOver,
    /// It drains (stage 3).
    Draining,
    /// It ended before calling `started()`: the restart failed.
    EndedBeforeStarted(Ended),
    /// It ended this long into its probation: the restart failed.
    EndedInProbation(Ended, Duration),
}

impl Status {
    fn line(self, daemon: i32) -> String {
        match self {
            Status::Serving => format!("serving: daemon {daemon} has started"),
            Status::OnProbation(length) => format!(
                "serving: daemon {daemon} has started, on probation for {length:?}; the previous generation serves beside it"
            ),
            Status::Passed => format!("serving: daemon {daemon} passed its probation"),
            Status::Restarting => format!("restarting: daemon {daemon} prepares the handover"),
            Status::HandedOver => {
                format!("restarting: daemon {daemon} serves until its successor has started")
            }
            Status::Draining => format!("stopping: daemon {daemon} drains"),
            Status::EndedBeforeStarted(how) => {
                format!("restart failed: daemon {daemon} ended ({how}) before started()")
            }
            Status::EndedInProbation(how, lived) => format!(
                "restart failed: daemon {daemon} ended ({how}) {:.1}s into its probation; the previous generation serves on",
                lived.as_secs_f64()
            ),
        }
    }
}

/// What the launcher does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Send(Message),
    Signal(Signal),
    Notify(Notice),
    /// Tell the previous generation, if one is handing over, how the
    /// daemon ended before it called `started()`.
    ReportEnded(Ended),
    Exit(i32),
    DieOf(Signal),
}

/// The launcher's decisions: no I/O, no clock of its own.
#[derive(Debug)]
struct Machine {
    phase: Phase,
    channel_open: bool,
    /// The daemon called `started()`.
    started: bool,
    /// The configured probation.
    probation: Option<Duration>,
    /// While the daemon is on probation: when it called `started()`, and
    /// when the probation ends.
    on_probation: Option<(Instant, Instant)>,
    /// While the daemon stops under systemd: when to extend the stop
    /// timeout next.
    next_extend: Option<Instant>,
    daemon: i32,
    me: i32,
    parent_signal: Option<Signal>,
    prepare_timeout: Duration,
    /// systemd listens (`NOTIFY_SOCKET`).
    notify: bool,
}

impl Machine {
    fn new(config: &Config, daemon: i32, me: i32, notify: bool) -> Machine {
        Machine {
            phase: Phase::Running,
            channel_open: true,
            started: false,
            probation: config.probation,
            on_probation: None,
            next_extend: None,
            daemon,
            me,
            parent_signal: config.parent_signal,
            prepare_timeout: config.prepare_timeout,
            notify,
        }
    }

    /// When the next [`Event::Tick`] is due.
    fn next_deadline(&self) -> Option<Instant> {
        let prepare = match self.phase {
            Phase::Preparing { deadline } => Some(deadline),
            _ => None,
        };
        prepare.into_iter().chain(self.next_extend).min()
    }

    fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Signal(delivery) => self.on_signal(delivery, now),
            Event::Message(Message::Detached) => self.detached(),
            Event::Message(Message::Started) => {
                self.started = true;
                let status = match self.probation {
                    Some(length) => {
                        self.on_probation = Some((now, now + length));
                        Status::OnProbation(length)
                    }
                    None => Status::Serving,
                };
                vec![
                    Action::Notify(Notice::Ready),
                    Action::Notify(Notice::Status(status)),
                ]
            }
            Event::Message(Message::Passed) => {
                self.on_probation = None;
                vec![Action::Notify(Notice::Status(Status::Passed))]
            }
            Event::Message(Message::Stopping) => {
                let mut actions = vec![
                    Action::Notify(Notice::Stopping),
                    Action::Notify(Notice::Status(Status::Draining)),
                ];
                actions.extend(self.stopping(now));
                actions
            }
            Event::Message(Message::RestartRequested) => Vec::new(),
            Event::ChannelClosed => {
                // The daemon is exiting (or closed its end); its exit
                // status comes with SIGCHLD.
                self.channel_open = false;
                Vec::new()
            }
            Event::SendFailed => match self.phase {
                Phase::Preparing { .. } => self.stop_daemon(now),
                _ => Vec::new(),
            },
            Event::Exited(Exit::Code(code)) => {
                report::debug!("daemon {} exited with status {code}", self.daemon);
                let mut actions = self.ended_early(Ended::Status(code), now);
                actions.push(Action::Exit(code));
                actions
            }
            Event::Exited(Exit::Signal(signal)) => {
                report::warning!("daemon {} was killed by {signal}", self.daemon);
                let mut actions = self.ended_early(Ended::Signal(signal as i32), now);
                actions.push(Action::DieOf(signal));
                actions
            }
            Event::Exited(Exit::Vanished) => {
                report::error!("daemon {} vanished", self.daemon);
                vec![Action::Exit(1)]
            }
            Event::Tick => self.tick(now),
        }
    }

    /// A daemon that ends before `started()`, or during its probation,
    /// fails the restart that started it: say so, to systemd and to the
    /// previous generation (which serves on).
    fn ended_early(&self, how: Ended, now: Instant) -> Vec<Action> {
        let status = match (self.started, self.on_probation) {
            (false, _) => Status::EndedBeforeStarted(how),
            (true, Some((started, _))) => Status::EndedInProbation(how, now - started),
            (true, None) => return Vec::new(),
        };
        vec![
            Action::Notify(Notice::Status(status)),
            Action::ReportEnded(how),
        ]
    }

    fn on_signal(&mut self, delivery: Delivery, now: Instant) -> Vec<Action> {
        let by_process = delivery.sent_by_process();
        let from_daemon = by_process && delivery.pid == self.daemon;
        let from_me = by_process && delivery.pid == self.me;
        let signal = Signal::try_from(delivery.signal).ok();
        if signal.is_some() && signal == self.parent_signal && from_daemon {
            return self.detached();
        }
        match signal {
            Some(Signal::SIGCHLD) | None => Vec::new(), // exits come as Event::Exited
            Some(Signal::SIGTERM) => match self.phase {
                Phase::Running if self.channel_open => {
                    // A daemon on probation prepares once the probation
                    // is over: its deadline starts then.
                    let from = match self.on_probation {
                        Some((_, until)) if until > now => {
                            report::info!(
                                "restart requested: daemon {} prepares when its probation ends, in {:?}",
                                self.daemon,
                                until - now
                            );
                            until
                        }
                        _ => {
                            report::info!(
                                "restart requested: asking daemon {} to prepare",
                                self.daemon
                            );
                            now
                        }
                    };
                    self.phase = Phase::Preparing {
                        deadline: from + self.prepare_timeout,
                    };
                    vec![
                        Action::Notify(Notice::Reloading),
                        Action::Notify(Notice::Status(Status::Restarting)),
                        Action::Send(Message::RestartRequested),
                    ]
                }
                Phase::Running => self.stop_daemon(now),
                _ => {
                    report::debug!("SIGTERM again while a restart is under way: ignored");
                    Vec::new()
                }
            },
            // The terminal signalled the whole foreground group, the daemon
            // included: forwarding would double it.
            Some(_) if from_daemon || from_me || delivery.sent_by_terminal() => Vec::new(),
            Some(signal) => vec![Action::Signal(signal)],
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Phase::Preparing { deadline } = self.phase {
            if now >= deadline {
                report::warning!(
                    "daemon {} did not prepare its restart within {:?}; sending it SIGTERM",
                    self.daemon,
                    self.prepare_timeout
                );
                actions.extend(self.stop_daemon(now));
            }
        }
        if let Some(at) = self.next_extend {
            if now >= at {
                actions.push(Action::Notify(Notice::ExtendTimeout));
                self.next_extend = Some(at + EXTEND_EVERY);
            }
        }
        actions
    }

    /// TERM the daemon: a plain graceful stop.
    fn stop_daemon(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = vec![Action::Signal(Signal::SIGTERM)];
        actions.extend(self.stopping(now));
        actions
    }

    /// The daemon stops: wait for it, keeping systemd's stop timeout
    /// extended while it drains.
    fn stopping(&mut self, now: Instant) -> Vec<Action> {
        self.phase = Phase::Stopping;
        if self.notify && self.next_extend.is_none() {
            self.next_extend = Some(now);
            return self.tick(now);
        }
        Vec::new()
    }

    /// The daemon finished stage 1: step aside so the supervisor starts the
    /// next generation.
    fn detached(&mut self) -> Vec<Action> {
        report::info!(
            "daemon {} is ready for its successor; launcher exits",
            self.daemon
        );
        vec![
            Action::Notify(Notice::Status(Status::HandedOver)),
            Action::Notify(Notice::Stopping),
            Action::Exit(0),
        ]
    }
}

// ------------------------------------------------------------------- I/O

/// Runs the launcher until the daemon detaches or exits. Returns an error
/// if the daemon could not be started, and [`Forked`] in the daemon forked
/// from here, which goes on as the daemon: it never runs the
/// `on_child_launch` handlers, and never becomes a launcher itself.
pub(crate) fn run(
    config: &Config,
    child_launch: Vec<Box<dyn FnOnce() + Send>>,
) -> Result<Forked, Error> {
    let mut launcher = match Launcher::start(config)? {
        Split::Launcher(launcher) => *launcher,
        Split::Daemon(forked) => return Ok(forked),
    };
    handlers::run(Stage::ChildLaunch, child_launch, &|_| {});
    launcher.run()
}

/// What a daemon forked from its launcher starts from: the same inputs an
/// executed daemon reads from [`control::ENV_VAR`].
#[derive(Debug)]
pub(crate) struct Forked {
    /// The launcher's pid.
    pub(crate) launcher: i32,
    /// The daemon's end of the control channel.
    pub(crate) channel: Channel,
}

/// Which side of the split [`Launcher::start`] returns on.
enum Split {
    Launcher(Box<Launcher>),
    Daemon(Forked),
}

/// How the daemon is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// `fork()`, the child going on as the daemon.
    Fork,
    /// `fork()` and exec of `/proc/self/exe`, the daemon told its role by
    /// [`control::ENV_VAR`].
    Exec,
}

/// Fork alone is safe only in a process that has one thread: a thread
/// that does not exist in the child may have held a lock (the allocator's,
/// stdout's) the child would wait for forever. The launcher has started
/// none and runs no user code, but a dependency's constructor could have:
/// then the daemon is executed afresh, as before.
fn how_to_start() -> Start {
    match procfs::threads_of_self() {
        Ok(1) => Start::Fork,
        Ok(n) => {
            report::debug!("the launcher has {n} threads: the daemon is executed, not forked");
            Start::Exec
        }
        Err(e) => {
            report::debug!("cannot count the launcher's threads ({e}): the daemon is executed");
            Start::Exec
        }
    }
}

struct Launcher {
    /// Where a previous generation handing over would be.
    handover: Option<std::path::PathBuf>,
    signals: SignalPipe,
    channel: Option<Channel>,
    child: Pid,
    notifier: Notifier,
    machine: Machine,
}

impl Launcher {
    fn start(config: &Config) -> Result<Split, Error> {
        // Handlers first: a TERM that arrives while the daemon starts must
        // find them in place.
        let mut caught = vec![libc::SIGTERM, libc::SIGCHLD];
        caught.extend(FORWARDED);
        if let Some(s) = config.parent_signal {
            if !caught.contains(&(s as i32)) {
                caught.push(s as i32);
            }
        }
        let signals = SignalPipe::install_direct(&caught).map_err(Error::Signals)?;
        let (ours, theirs) = Channel::pair().map_err(Error::ControlChannel)?;
        let me = std::process::id() as i32;
        let (child, how) = match how_to_start() {
            Start::Fork => match fork_daemon().map_err(Error::Spawn)? {
                Some(child) => (child, "forked"),
                None => {
                    // The child: everything the launcher set up is undone
                    // before it goes on as the daemon.
                    signals.undo_in_child();
                    drop(ours);
                    block_in_child().map_err(Error::Signals)?;
                    return Ok(Split::Daemon(Forked {
                        launcher: me,
                        channel: theirs,
                    }));
                }
            },
            Start::Exec => (exec_daemon(me, &theirs)?, "executed"),
        };
        drop(theirs);
        report::debug!("launcher {me} {how} daemon {child}");
        // A previous generation handing over learns of its successor, so
        // that `seamless restart` can name it.
        let handover = config.pid_file.as_deref().map(handover::endpoint_path);
        if let Some(path) = &handover {
            handover::tell(path, &Request::Spawned(child.as_raw()));
        }
        let notifier = Notifier::from_env();
        let machine = Machine::new(config, child.as_raw(), me, notifier.is_active());
        Ok(Split::Launcher(Box::new(Launcher {
            handover,
            signals,
            channel: Some(ours),
            child,
            notifier,
            machine,
        })))
    }

    fn run(&mut self) -> ! {
        loop {
            let next = self.machine.next_deadline();
            let timeout =
                sys::poll_timeout(next.map(|at| at.saturating_duration_since(Instant::now())));
            let (ready_signals, ready_channel) = self.wait(timeout);
            let mut events = Vec::new();
            if ready_signals {
                events.extend(self.signals.drain().into_iter().map(Event::Signal));
            }
            if ready_channel {
                events.extend(self.read_channel());
            }
            events.push(Event::Tick);
            events.extend(self.reap());
            for event in events {
                let actions = self.machine.step(event, Instant::now());
                self.carry_out(actions);
            }
        }
    }

    fn wait(&self, timeout: nix::poll::PollTimeout) -> (bool, bool) {
        let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
        if let Some(c) = &self.channel {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => report::error!("launcher poll failed: {e}"),
        }
        let any = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        (any(&fds[0]), fds.get(1).is_some_and(any))
    }

    fn read_channel(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(channel) = &self.channel {
            match channel.receive() {
                Received::Message(message) => events.push(Event::Message(message)),
                Received::Nothing => break,
                Received::Closed => {
                    self.channel = None;
                    events.push(Event::ChannelClosed);
                }
            }
        }
        events
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(message) => {
                    let sent = self.channel.as_ref().map(|c| c.send(message));
                    if !matches!(sent, Some(Ok(()))) {
                        let more = self.machine.step(Event::SendFailed, Instant::now());
                        self.carry_out(more);
                    }
                }
                Action::Signal(signal) => {
                    if let Err(e) = kill(self.child, signal) {
                        report::debug!("cannot send {signal} to daemon {}: {e}", self.child);
                    }
                }
                Action::Notify(Notice::Ready) => self.notifier.ready(),
                Action::Notify(Notice::Reloading) => self.notifier.reloading(),
                Action::Notify(Notice::Stopping) => self.notifier.stopping(),
                Action::Notify(Notice::ExtendTimeout) => self.notifier.extend_timeout(EXTEND_BY),
                Action::Notify(Notice::Status(status)) => {
                    self.notifier.status(&status.line(self.child.as_raw()))
                }
                Action::ReportEnded(how) => {
                    if let Some(path) = &self.handover {
                        handover::tell(path, &Request::Exited(self.child.as_raw(), how));
                    }
                }
                Action::Exit(code) => std::process::exit(code),
                Action::DieOf(signal) => signals::die_of(signal as i32),
            }
        }
    }

    /// The daemon's exit, if it has exited.
    fn reap(&self) -> Option<Event> {
        loop {
            return match waitpid(self.child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(Event::Exited(Exit::Code(code))),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(Event::Exited(Exit::Signal(signal))),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => Some(Event::Exited(Exit::Vanished)),
                _ => None, // still running, or only stopped/continued
            };
        }
    }
}

/// Forks the daemon: `Some(child)` in the launcher, `None` in the child,
/// which returns with every signal blocked, so that none reaches it while
/// the launcher's handlers are still installed there (it would write into
/// the launcher's pipe). The caller has made sure this process has one
/// thread.
fn fork_daemon() -> std::io::Result<Option<Pid>> {
    // Output written but still buffered would be written twice, once by
    // each process.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    log::logger().flush();
    let mut before = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut before),
    )?;
    // SAFETY: this process has one thread (`how_to_start`), so the child
    // is a whole copy of it: no lock is held by a thread that is not
    // there, and the child may run ordinary code, as it does.
    let forked = unsafe { nix::unistd::fork() };
    if !matches!(forked, Ok(ForkResult::Child)) {
        // Signals that came meanwhile are delivered to the launcher now.
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None)?;
    }
    match forked? {
        ForkResult::Parent { child } => Ok(Some(child)),
        ForkResult::Child => Ok(None),
    }
}

/// The forked daemon's signal mask: [`BLOCKED_IN_CHILD`] and nothing else,
/// as an executed daemon starts (std clears the mask before exec, the
/// launcher then blocks these). The daemon unblocks them once its own
/// handlers exist.
fn block_in_child() -> std::io::Result<()> {
    let mut set = SigSet::empty();
    for s in BLOCKED_IN_CHILD {
        set.add(Signal::try_from(s)?);
    }
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&set), None)?;
    Ok(())
}

/// Executes `/proc/self/exe` as the daemon, with the same argv and
/// [`control::ENV_VAR`] naming the launcher and the daemon's end of the
/// channel.
fn exec_daemon(me: i32, theirs: &Channel) -> Result<Pid, Error> {
    let child_fd = theirs.raw_fd();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0(argv0)
        .args(args)
        .env(control::ENV_VAR, format!("{me}:{child_fd}"));
    // SAFETY: the closure runs in the child between fork and exec and
    // only makes async-signal-safe calls (sigemptyset, sigaddset,
    // sigprocmask, fcntl) on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in BLOCKED_IN_CHILD {
                libc::sigaddset(&mut set, s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon's end of the control channel survives exec.
            if libc::fcntl(child_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(Error::Spawn)?;
    Ok(Pid::from_raw(child.id() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: i32 = 200;
    const ME: i32 = 100;

    fn machine(notify: bool, parent_signal: Option<Signal>) -> Machine {
        let mut config = Config::new("/tmp/x.pid".into());
        config.parent_signal = parent_signal;
        config.prepare_timeout = Duration::from_secs(10);
        Machine::new(&config, DAEMON, ME, notify)
    }

    fn from(pid: i32, signal: Signal) -> Event {
        Event::Signal(Delivery {
            signal: signal as i32,
            code: libc::SI_USER,
            pid,
        })
    }

    fn from_terminal(signal: Signal) -> Event {
        Event::Signal(Delivery {
            signal: signal as i32,
            code: libc::SI_KERNEL,
            pid: 0,
        })
    }

    const SUPERVISOR: i32 = 1;

    #[test]
    fn term_asks_the_daemon_to_prepare_with_a_deadline() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        let actions = m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        assert_eq!(
            actions,
            [
                Action::Notify(Notice::Reloading),
                Action::Notify(Notice::Status(Status::Restarting)),
                Action::Send(Message::RestartRequested)
            ]
        );
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn detached_exits_zero() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        assert_eq!(
            m.step(Event::Message(Message::Detached), t0),
            [
                Action::Notify(Notice::Status(Status::HandedOver)),
                Action::Notify(Notice::Stopping),
                Action::Exit(0)
            ]
        );
    }

    #[test]
    fn a_second_term_while_preparing_or_stopping_is_ignored() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        assert_eq!(m.step(from(SUPERVISOR, Signal::SIGTERM), t0), []);
        m.step(Event::Tick, t0 + Duration::from_secs(11));
        assert_eq!(m.phase, Phase::Stopping);
        assert_eq!(m.step(from(SUPERVISOR, Signal::SIGTERM), t0), []);
    }

    #[test]
    fn no_answer_in_time_terms_the_daemon_once() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        assert_eq!(m.step(Event::Tick, t0 + Duration::from_secs(9)), []);
        assert_eq!(
            m.step(Event::Tick, t0 + Duration::from_secs(10)),
            [Action::Signal(Signal::SIGTERM)]
        );
        assert_eq!(m.step(Event::Tick, t0 + Duration::from_secs(20)), []);
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn an_unsendable_request_terms_the_daemon() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        assert_eq!(
            m.step(Event::SendFailed, t0),
            [Action::Signal(Signal::SIGTERM)]
        );
        assert_eq!(m.phase, Phase::Stopping);
    }

    #[test]
    fn term_after_the_channel_closed_is_a_plain_stop() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(Event::ChannelClosed, t0);
        assert_eq!(
            m.step(from(SUPERVISOR, Signal::SIGTERM), t0),
            [Action::Signal(Signal::SIGTERM)]
        );
    }

    #[test]
    fn the_daemon_exiting_while_a_restart_is_prepared_passes_its_status_on() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        m.step(Event::Message(Message::Started), t0);
        m.step(Event::ChannelClosed, t0);
        assert_eq!(m.step(Event::Exited(Exit::Code(3)), t0), [Action::Exit(3)]);
        assert_eq!(
            m.step(Event::Exited(Exit::Signal(Signal::SIGKILL)), t0),
            [Action::DieOf(Signal::SIGKILL)]
        );
        assert_eq!(m.step(Event::Exited(Exit::Vanished), t0), [Action::Exit(1)]);
    }

    #[test]
    fn a_daemon_ending_before_started_fails_the_restart_aloud() {
        let (mut m, t0) = (machine(true, None), Instant::now());
        let failed = |how| {
            [
                Action::Notify(Notice::Status(Status::EndedBeforeStarted(how))),
                Action::ReportEnded(how),
            ]
        };
        let actions = m.step(Event::Exited(Exit::Code(3)), t0);
        assert_eq!(actions[..2], failed(Ended::Status(3)));
        assert_eq!(actions[2], Action::Exit(3));
        let actions = m.step(Event::Exited(Exit::Signal(Signal::SIGSEGV)), t0);
        assert_eq!(actions[..2], failed(Ended::Signal(libc::SIGSEGV)));
        assert_eq!(actions[2], Action::DieOf(Signal::SIGSEGV));
        assert_eq!(
            Status::EndedBeforeStarted(Ended::Status(3)).line(42),
            "restart failed: daemon 42 ended (status 3) before started()"
        );
    }

    fn on_probation() -> Machine {
        let mut config = Config::new("/tmp/x.pid".into());
        config.prepare_timeout = Duration::from_secs(10);
        config.probation = Some(Duration::from_secs(5));
        Machine::new(&config, DAEMON, ME, true)
    }

    #[test]
    fn a_daemon_ending_during_its_probation_fails_the_restart_aloud() {
        let (mut m, t0) = (on_probation(), Instant::now());
        let second = Duration::from_secs(1);
        assert_eq!(
            m.step(Event::Message(Message::Started), t0)[1],
            Action::Notify(Notice::Status(Status::OnProbation(5 * second)))
        );
        let how = Ended::Status(101);
        let actions = m.step(Event::Exited(Exit::Code(101)), t0 + second);
        assert_eq!(
            actions,
            [
                Action::Notify(Notice::Status(Status::EndedInProbation(how, second))),
                Action::ReportEnded(how),
                Action::Exit(101)
            ]
        );
        assert_eq!(
            Status::EndedInProbation(how, second).line(42),
            "restart failed: daemon 42 ended (status 101) 1.0s into its probation; the previous generation serves on"
        );
    }

    #[test]
    fn after_the_probation_an_exit_is_only_passed_on() {
        let (mut m, t0) = (on_probation(), Instant::now());
        m.step(Event::Message(Message::Started), t0);
        assert_eq!(
            m.step(Event::Message(Message::Passed), t0),
            [Action::Notify(Notice::Status(Status::Passed))]
        );
        assert_eq!(m.step(Event::Exited(Exit::Code(0)), t0), [Action::Exit(0)]);
    }

    #[test]
    fn a_restart_during_the_probation_is_given_until_its_end_to_prepare() {
        let (mut m, t0) = (on_probation(), Instant::now());
        let second = Duration::from_secs(1);
        m.step(Event::Message(Message::Started), t0);
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0 + second);
        assert_eq!(
            m.phase,
            Phase::Preparing {
                deadline: t0 + 15 * second
            }
        );
    }

    #[test]
    fn signals_are_forwarded_unless_doubled() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        assert_eq!(
            m.step(from(SUPERVISOR, Signal::SIGHUP), t0),
            [Action::Signal(Signal::SIGHUP)]
        );
        assert_eq!(
            m.step(from(SUPERVISOR, Signal::SIGUSR2), t0),
            [Action::Signal(Signal::SIGUSR2)]
        );
        assert_eq!(m.step(from_terminal(Signal::SIGINT), t0), []);
        assert_eq!(m.step(from(DAEMON, Signal::SIGUSR1), t0), []);
        assert_eq!(m.step(from(ME, Signal::SIGUSR1), t0), []);
        assert_eq!(m.step(from(DAEMON, Signal::SIGCHLD), t0), []);
        assert_eq!(m.phase, Phase::Running);
    }

    #[test]
    fn the_parent_signal_counts_only_from_the_daemon() {
        let (mut m, t0) = (machine(false, Some(Signal::SIGUSR1)), Instant::now());
        assert_eq!(
            m.step(from(SUPERVISOR, Signal::SIGUSR1), t0),
            [Action::Signal(Signal::SIGUSR1)]
        );
        assert_eq!(
            m.step(from(DAEMON, Signal::SIGUSR1), t0),
            [
                Action::Notify(Notice::Status(Status::HandedOver)),
                Action::Notify(Notice::Stopping),
                Action::Exit(0)
            ]
        );
        // The kernel's SIGCHLD for a dead or stopped child is not "ready".
        let mut m = machine(false, Some(Signal::SIGCHLD));
        let kernel = Event::Signal(Delivery {
            signal: libc::SIGCHLD,
            code: libc::CLD_EXITED,
            pid: DAEMON,
        });
        assert_eq!(m.step(kernel, t0), []);
    }

    #[test]
    fn started_and_stopping_are_reported_to_systemd() {
        let (mut m, t0) = (machine(true, None), Instant::now());
        assert_eq!(
            m.step(Event::Message(Message::Started), t0),
            [
                Action::Notify(Notice::Ready),
                Action::Notify(Notice::Status(Status::Serving))
            ]
        );
        assert_eq!(
            m.step(Event::Message(Message::Stopping), t0),
            [
                Action::Notify(Notice::Stopping),
                Action::Notify(Notice::Status(Status::Draining)),
                Action::Notify(Notice::ExtendTimeout)
            ]
        );
        assert_eq!(m.next_deadline(), Some(t0 + EXTEND_EVERY));
        assert_eq!(m.step(Event::Tick, t0 + Duration::from_secs(1)), []);
        assert_eq!(
            m.step(Event::Tick, t0 + EXTEND_EVERY),
            [Action::Notify(Notice::ExtendTimeout)]
        );
        assert_eq!(m.next_deadline(), Some(t0 + EXTEND_EVERY * 2));
    }

    #[test]
    fn without_systemd_nothing_is_extended() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        m.step(Event::Message(Message::Stopping), t0);
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.step(Event::Tick, t0 + Duration::from_secs(60)), []);
    }

    #[test]
    fn a_timed_out_prepare_under_systemd_extends_the_stop() {
        let (mut m, t0) = (machine(true, None), Instant::now());
        m.step(from(SUPERVISOR, Signal::SIGTERM), t0);
        let at = t0 + Duration::from_secs(10);
        assert_eq!(
            m.step(Event::Tick, at),
            [
                Action::Signal(Signal::SIGTERM),
                Action::Notify(Notice::ExtendTimeout)
            ]
        );
    }

    #[test]
    fn the_channel_closing_changes_nothing_but_the_next_term() {
        let (mut m, t0) = (machine(false, None), Instant::now());
        assert_eq!(m.step(Event::ChannelClosed, t0), []);
        assert_eq!(m.step(Event::Message(Message::RestartRequested), t0), []);
        assert_eq!(m.step(Event::SendFailed, t0), []);
        assert_eq!(m.phase, Phase::Running);
    }
}

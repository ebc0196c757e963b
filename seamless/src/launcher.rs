//! The launcher: the process the supervisor started.
//!
//! It never runs user code. It installs its signal handling, starts a copy
//! of the executable as the daemon (with the daemon's end of the control
//! channel and with TERM, INT and USR2 blocked until the daemon's handlers
//! exist), runs the `on_child_launch` handlers, then loops on one thread:
//!
//! - TERM (the supervisor's stop or restart): ask the daemon to prepare a
//!   restart (stage 1) and give it `prepare_timeout` to answer; a later
//!   TERM is ignored while that is under way.
//! - the daemon answers "detached": exit 0, so the supervisor starts the
//!   next generation while the old one goes on serving.
//! - no answer in time: TERM the daemon (a plain graceful stop).
//! - the daemon exits: exit with the same status, or die of the same
//!   signal, so the supervisor sees a crash as a crash.
//! - any other catchable signal is forwarded to the daemon, except those
//!   the terminal sent to the whole foreground group (the daemon got them
//!   too) and those the daemon itself sent.
//!
//! The daemon is spawned from this, the main, thread, which lives as long
//! as the launcher.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::builder::Config;
use crate::control::{self, Channel, Message, Received};
use crate::handlers::{self, Stage};
use crate::report;
use crate::signals::{self, Delivery, SignalPipe};

/// Signals the daemon starts with blocked; it unblocks them once its own
/// handlers are installed, so a restart requested during start-up is
/// neither lost nor fatal.
pub(crate) const BLOCKED_IN_CHILD: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR2];

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

/// Where a restart request stands.
enum Phase {
    Running,
    /// Asked the daemon to prepare; TERM it at the deadline.
    Preparing {
        deadline: Instant,
    },
    /// The daemon was told to stop; wait for it to exit.
    Stopping,
}

/// Runs the launcher until the daemon detaches or exits; never returns.
pub(crate) fn run(config: Config, child_launch: Vec<Box<dyn FnOnce() + Send>>) -> ! {
    match Launcher::start(&config) {
        Ok(mut launcher) => {
            handlers::run(Stage::ChildLaunch, child_launch, &|_| {});
            launcher.run(&config)
        }
        Err(e) => {
            report::error!("cannot start the daemon: {e}");
            std::process::exit(1);
        }
    }
}

struct Launcher {
    signals: SignalPipe,
    channel: Option<Channel>,
    child: Pid,
    phase: Phase,
    notify: crate::notify::Notifier,
    /// While the daemon drains under systemd: when to extend the stop
    /// timeout next.
    next_extend: Option<Instant>,
}

/// How often, and by how much, the launcher extends systemd's stop timeout
/// while the daemon drains.
const EXTEND_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const EXTEND_BY: std::time::Duration = std::time::Duration::from_secs(15);

impl Launcher {
    fn start(config: &Config) -> std::io::Result<Launcher> {
        // Handlers first: a TERM that arrives while the daemon starts must
        // find them in place.
        let mut caught = vec![libc::SIGTERM, libc::SIGCHLD];
        caught.extend(FORWARDED);
        if let Some(s) = config.parent_signal {
            if !caught.contains(&s) {
                caught.push(s);
            }
        }
        let signals = SignalPipe::install(&caught)?;
        let (ours, theirs) = Channel::pair()?;
        let child_fd = theirs.raw_fd();

        let mut args = std::env::args_os();
        let argv0 = args.next().unwrap_or_default();
        let mut command = Command::new("/proc/self/exe");
        command.arg0(argv0).args(args).env(
            control::ENV_VAR,
            format!("{}:{}", std::process::id(), child_fd),
        );
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
        let child = command.spawn()?;
        drop(theirs);
        let child = Pid::from_raw(child.id() as i32);
        report::debug!("launcher {} started daemon {child}", std::process::id());
        Ok(Launcher {
            signals,
            channel: Some(ours),
            child,
            phase: Phase::Running,
            notify: crate::notify::Notifier::from_env(),
            next_extend: None,
        })
    }

    fn run(&mut self, config: &Config) -> ! {
        loop {
            let deadline = match self.phase {
                Phase::Preparing { deadline } => Some(deadline),
                _ => None,
            };
            let next = deadline.into_iter().chain(self.next_extend).min();
            let timeout =
                signals::poll_timeout(next.map(|at| at.saturating_duration_since(Instant::now())));
            let ready_signals;
            let mut ready_channel = false;
            {
                let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
                if let Some(c) = &self.channel {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                }
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => report::error!("launcher poll failed: {e}"),
                }
                let any = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                ready_signals = any(&fds[0]);
                if fds.len() > 1 {
                    ready_channel = any(&fds[1]);
                }
            }
            if ready_signals {
                for delivery in self.signals.drain() {
                    self.on_signal(delivery, config);
                }
            }
            if ready_channel {
                self.on_channel();
            }
            if let Phase::Preparing { deadline } = self.phase {
                if Instant::now() >= deadline {
                    report::warning!(
                        "daemon {} did not prepare its restart within {:?}; sending it SIGTERM",
                        self.child,
                        config.prepare_timeout
                    );
                    self.send(Signal::SIGTERM);
                    self.stopping();
                }
            }
            if let Some(at) = self.next_extend {
                if Instant::now() >= at {
                    self.notify.extend_timeout(EXTEND_BY);
                    self.next_extend = Some(at + EXTEND_EVERY);
                }
            }
            self.reap();
        }
    }

    fn on_signal(&mut self, delivery: Delivery, config: &Config) {
        let from_child = delivery.sent_by_process() && delivery.pid == self.child.as_raw();
        let from_self = delivery.sent_by_process() && delivery.pid == std::process::id() as i32;
        if Some(delivery.signal) == config.parent_signal && from_child {
            self.detached();
        }
        match delivery.signal {
            libc::SIGCHLD => {} // reaped below
            libc::SIGTERM => match self.phase {
                Phase::Running => {
                    report::info!("restart requested: asking daemon {} to prepare", self.child);
                    self.notify.reloading(&format!(
                        "restarting: daemon {} prepares the handover",
                        self.child
                    ));
                    let asked = self
                        .channel
                        .as_ref()
                        .map(|c| c.send(Message::RestartRequested));
                    if matches!(asked, Some(Ok(()))) {
                        self.phase = Phase::Preparing {
                            deadline: Instant::now() + config.prepare_timeout,
                        };
                    } else {
                        self.send(Signal::SIGTERM);
                        self.stopping();
                    }
                }
                _ => report::debug!("SIGTERM again while a restart is under way: ignored"),
            },
            signal => {
                if from_child || from_self || delivery.sent_by_terminal() {
                    // The terminal signalled the whole foreground group, the
                    // daemon included: forwarding would double it.
                    return;
                }
                if let Ok(sig) = Signal::try_from(signal) {
                    self.send(sig);
                }
            }
        }
    }

    fn on_channel(&mut self) {
        loop {
            let Some(channel) = &self.channel else { return };
            match channel.receive() {
                Received::Message(Message::Detached) => self.detached(),
                Received::Message(Message::Started) => self
                    .notify
                    .ready(&format!("serving: daemon {} has started", self.child)),
                Received::Message(Message::Stopping) => {
                    self.notify
                        .stopping(&format!("stopping: daemon {} drains", self.child));
                    self.stopping();
                }
                Received::Message(Message::RestartRequested) => {}
                Received::Nothing => return,
                Received::Closed => {
                    // The daemon is exiting (or closed its end); its exit
                    // status comes with SIGCHLD.
                    self.channel = None;
                    return;
                }
            }
        }
    }

    /// The daemon was told to stop, or began to on its own: wait for it,
    /// keeping systemd's stop timeout extended while it drains.
    fn stopping(&mut self) {
        self.phase = Phase::Stopping;
        if self.notify.is_active() && self.next_extend.is_none() {
            self.next_extend = Some(Instant::now());
        }
    }

    /// The daemon finished stage 1: step aside so the supervisor starts the
    /// next generation.
    fn detached(&mut self) -> ! {
        report::info!(
            "daemon {} is ready for its successor; launcher exits",
            self.child
        );
        self.notify.stopping(&format!(
            "restarting: daemon {} serves until its successor has started",
            self.child
        ));
        std::process::exit(0)
    }

    fn send(&self, signal: Signal) {
        if let Err(e) = kill(self.child, signal) {
            report::debug!("cannot send {signal} to daemon {}: {e}", self.child);
        }
    }

    /// Collects the daemon's exit, if it has exited, and passes it on.
    fn reap(&mut self) {
        loop {
            match waitpid(self.child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    report::debug!("daemon {} exited with status {code}", self.child);
                    std::process::exit(code)
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    report::warning!("daemon {} was killed by {signal}", self.child);
                    signals::die_of(signal as i32)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => {
                    report::error!("daemon {} vanished", self.child);
                    std::process::exit(1)
                }
                _ => return, // still running, or only stopped/continued
            }
        }
    }
}

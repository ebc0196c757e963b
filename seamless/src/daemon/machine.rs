//! The daemon's decisions: a pure [`Machine`] of the stages, stepped by
//! one [`Event`] and the time, answering the [`Action`]s the control
//! thread carries out. No I/O, no clock of its own.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::control::Message;
use crate::report;
use crate::wire::Ended;

/// Where this generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct Covering {
    pub(super) pid: i32,
    /// When the successor called `started()` (when we heard of it).
    pub(super) began: Instant,
    pub(super) until: Instant,
    /// When its pidfd said it is gone: its launcher's report of how it
    /// ended is awaited until [`REPORT_WAIT`] later.
    pub(super) gone_at: Option<Instant>,
}

/// How long a successor's launcher is given to report how it ended, once
/// it is seen gone, before this generation goes on without knowing.
pub(super) const REPORT_WAIT: Duration = Duration::from_millis(250);

/// What happens to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
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
pub(super) enum Action {
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
pub(super) struct Machine {
    pub(super) phase: Phase,
    /// When `started()` took effect.
    pub(super) started_at: Option<Instant>,
    /// A daemon (with a launcher and the restart protocol), or a plain
    /// process.
    pub(super) daemon: bool,
    /// The launcher's end of the control channel is open.
    pub(super) attached: bool,
    /// The configured parent signal exists.
    pub(super) parent_signal: bool,
    /// The configured probation.
    pub(super) probation: Option<Duration>,
    /// This generation's own probation: when it ends.
    pub(super) probation_until: Option<Instant>,
    /// A restart requested during the probation, by whom: it begins when
    /// the probation has passed.
    pub(super) pending_restart: Option<&'static str>,
    /// While detached: the successor on probation.
    pub(super) covering: Option<Covering>,
    pub(super) handover_timeout: Duration,
    pub(super) shutdown_timeout: Option<Duration>,
}

impl Machine {
    pub(super) fn new(config: &Config, daemon: bool) -> Machine {
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
    pub(super) fn next_deadline(&self) -> Option<Instant> {
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
    pub(super) fn shutdown_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::ShuttingDown { since } => Some(since),
            _ => None,
        }
    }

    /// Where this generation stands, as `seamless status` names it: the
    /// role, since when, and until when it lasts at most.
    pub(super) fn role(&self) -> (&'static str, Option<Instant>, Option<Instant>) {
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
    pub(super) fn may_restart(&self) -> Result<(), &'static str> {
        match self.phase {
            _ if !self.daemon => Err("seamless is disabled in this process"),
            Phase::Running { .. } if self.attached => Ok(()),
            Phase::Running { .. } => Err("the launcher is gone"),
            Phase::Detached { .. } => Err("a restart is already under way"),
            Phase::ShuttingDown { .. } => Err("this generation is shutting down"),
        }
    }

    pub(super) fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
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

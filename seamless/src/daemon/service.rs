//! The endpoint's service of a generation: `status`, `restart`, and from
//! stage 1 on its listeners, its state and the reports of its successors
//! (spawned, ended, on probation), plus the status record it answers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::machine::{Event, Phase};
use super::{Daemon, Successor, MAX_SUCCESSORS, WAKE_INBOX, WAKE_RESTART};
use crate::handover::{Reply, Service};
use crate::wire::{self, Ended, Fate, Head, Request};
use crate::{net, pidfile, procfs, report, state, sys};

/// The endpoint's answers: this generation's status, restart requests,
/// and from stage 1 on, its listeners and state for the next generation.
pub(super) struct ControlService(pub(super) &'static Daemon);

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
                    Ok(Some(fd)) => daemon.shared().watch = Some((peer.pid, fd.into())),
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
    pub(super) fn successor(
        &self,
        pid: i32,
        ended: Option<Ended>,
        into_probation: Option<Duration>,
    ) {
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

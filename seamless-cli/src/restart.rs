//! `seamless restart`: ask the serving generation to restart, then wait for
//! a new generation to call `started()` (and, with a probation, to pass
//! it), and say what happened.
//!
//! Who starts the next launcher is settled before anything is asked
//! (`launch::starter_of`); when `--spawn auto` cannot tell, nothing is
//! asked at all. A restart already under way (no generation serves, some
//! run) is not asked for again: it is waited for, with the same verdict.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use seamless::admin::{self, Generation, Outcome, Pid, Role, Successor};

use crate::launch::{self, Nobody, Starter};
use crate::status::{describe, outcome};
use crate::time::{format_duration, format_time};
use crate::{Spawn, FAILED, NONE_RUNS, OK, USAGE_ERROR};

const POLL: Duration = Duration::from_millis(50);

pub(crate) fn run(pid_file: &Path, timeout: Option<Duration>, spawn: Spawn) -> u8 {
    match restart(pid_file, timeout, spawn) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("seamless restart: {}: {e}", pid_file.display());
            FAILED
        }
    }
}

/// What can end a restart early: the tool's own I/O (`/proc`, starting a
/// launcher) or [`admin::Error`]; said as it is.
type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn restart(pid_file: &Path, timeout: Option<Duration>, spawn: Spawn) -> Result<u8> {
    let all = admin::generations(pid_file)?;
    if all.is_empty() {
        eprintln!(
            "seamless restart: {}: no generation runs",
            pid_file.display()
        );
        return Ok(NONE_RUNS);
    }
    let Some(old) = all
        .iter()
        .find(|g| matches!(g.role, Role::Serving | Role::Probation))
        .cloned()
    else {
        return under_way(pid_file, &all, timeout);
    };
    if let (Role::Probation, Some(until)) = (&old.role, old.until) {
        eprintln!(
            "generation {} is on probation until {}: the restart begins when it has passed",
            old.pid,
            format_time(until)
        );
    }
    let timeout = timeout.unwrap_or_else(|| default_timeout(&old));
    let Some(launcher) = old.launcher else {
        eprintln!(
            "seamless restart: generation {} has no launcher any more; nothing can restart it",
            old.pid
        );
        return Ok(FAILED);
    };
    // Read before the launcher exits: it is gone once stage 1 is done.
    let recipe = match who_starts(old.pid, launcher, spawn) {
        Some(Next::ThisTool) => Some(launch::recipe(launcher)?),
        Some(Next::Other) => None,
        None => return Ok(USAGE_ERROR),
    };

    let begun = Instant::now();
    let deadline = begun + timeout;
    admin::request_restart(pid_file, old.pid)?;
    let mut watch = Watch::new(pid_file, Some(old), &all, begun, timeout);
    if let Some(recipe) = recipe {
        // Stage 1 first: the next generation must find the endpoint to
        // take the listeners from.
        let old = watch.old.as_ref().map_or(Pid::from(0), |g| g.pid);
        while !matches!(admin::generation(pid_file, old)?,
            Some(g) if !matches!(g.role, Role::Serving | Role::Probation))
        {
            if Instant::now() >= deadline {
                return Ok(watch.failed(None));
            }
            std::thread::sleep(POLL);
        }
        watch.child = Some(recipe.spawn()?);
    }
    watch.verdict()
}

/// How long to wait by default: the old generation's `handover_timeout`,
/// plus the new one's probation, plus what is left of the old one's.
fn default_timeout(old: &Generation) -> Duration {
    let left = match (&old.role, old.until) {
        (Role::Probation, Some(until)) => until
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
        _ => Duration::ZERO,
    };
    old.handover_timeout + old.probation.unwrap_or_default() + left
}

/// Who starts the next launcher.
enum Next {
    ThisTool,
    Other,
}

/// Says who starts the next launcher of generation `old`; `None` when
/// `--spawn auto` cannot tell (and says so, and what to pass instead).
fn who_starts(old: Pid, launcher: Pid, spawn: Spawn) -> Option<Next> {
    let starter = launch::starter_of(launcher);
    let restarting = format!("restarting generation {old}");
    match (spawn, starter) {
        (Spawn::Always, _) => {
            eprintln!("{restarting}: this tool starts the next launcher (--spawn always)");
            Some(Next::ThisTool)
        }
        (_, Ok(Starter::Supervisor(supervisor))) => {
            eprintln!("{restarting}: {supervisor} starts the next");
            Some(Next::Other)
        }
        (Spawn::Never, Ok(Starter::Nobody(parent, _) | Starter::Unknown(parent))) => {
            eprintln!(
                "{restarting}: its launcher's parent, {parent}, starts the next (--spawn never)"
            );
            Some(Next::Other)
        }
        (Spawn::Never, Err(_)) => {
            eprintln!("{restarting}: the supervisor starts the next (--spawn never)");
            Some(Next::Other)
        }
        (Spawn::Auto, Ok(Starter::Nobody(parent, why))) => {
            let how = match why {
                Nobody::Adopted => format!("was adopted by {parent}"),
                Nobody::Terminal => format!("runs under {parent} at a terminal"),
            };
            eprintln!(
                "{restarting}: its launcher {launcher} {how}, no supervisor; this tool starts the next"
            );
            Some(Next::ThisTool)
        }
        (Spawn::Auto, Ok(Starter::Unknown(parent))) => {
            let why = format!(
                "its launcher {launcher} is a child of {parent}, which is no supervisor this tool knows"
            );
            refuse(old, &why, &parent.to_string());
            None
        }
        (Spawn::Auto, Err(e)) => {
            refuse(
                old,
                &format!("the parent of its launcher {launcher} cannot be read ({e})"),
                "its supervisor",
            );
            None
        }
    }
}

/// The `--spawn auto` refusal: who starts the next launcher is unknown.
fn refuse(old: Pid, why: &str, parent: &str) {
    eprintln!(
        "seamless restart: generation {old}: {why}: it may start the next launcher, or not; \
         nothing was changed\n  \
         pass --spawn never if {parent} starts the service again when its launcher exits,\n  \
         or --spawn always if nothing does (this tool then starts the next launcher)"
    );
}

/// No generation serves, some run: a restart is under way (the old
/// generation detached, successors starting), or a failed one whose
/// successors a supervisor keeps starting. Asking for another would be
/// refused, and nothing needs asking: wait for a generation to call
/// `started()`, as after a request.
fn under_way(pid_file: &Path, all: &[Generation], timeout: Option<Duration>) -> Result<u8> {
    // The one a new generation takes over from: the latest detached one,
    // else the latest that drains.
    let latest = |role: Role| {
        all.iter()
            .filter(|g| g.role == role)
            .max_by_key(|g| g.since)
            .cloned()
    };
    let old = latest(Role::Detached).or_else(|| latest(Role::Draining));
    let timeout = timeout.unwrap_or_else(|| default_timeout(old.as_ref().unwrap_or(&all[0])));
    let what = if all
        .iter()
        .any(|g| matches!(g.role, Role::Detached | Role::Starting))
    {
        "a restart is under way"
    } else {
        "none starts yet"
    };
    eprintln!(
        "seamless restart: {}: no generation serves, {what}: waiting up to {} for a new one to call started()",
        pid_file.display(),
        format_duration(timeout)
    );
    for g in all {
        eprint!("{}", describe(g));
    }
    Watch::new(pid_file, old, all, Instant::now(), timeout).verdict()
}

/// Waiting for a new generation to call `started()`.
struct Watch<'a> {
    pid_file: &'a Path,
    /// The generation a new one takes over from, as first seen.
    old: Option<Generation>,
    /// The pids of the generations and of the old one's successors when
    /// the wait began: what is not among them started since.
    known: BTreeSet<Pid>,
    begun: Instant,
    timeout: Duration,
    /// The launcher this tool started, if it did.
    child: Option<Child>,
    /// Successors known to have failed a probation when the wait began.
    failed_before: BTreeSet<Pid>,
    /// A new generation seen on probation, and its probation's length.
    on_probation: Option<(Pid, Duration)>,
}

impl<'a> Watch<'a> {
    fn new(
        pid_file: &'a Path,
        old: Option<Generation>,
        all: &[Generation],
        begun: Instant,
        timeout: Duration,
    ) -> Watch<'a> {
        let mut known: BTreeSet<Pid> = all.iter().map(|g| g.pid).collect();
        known.extend(old.iter().flat_map(|g| g.successors.iter().map(|s| s.pid)));
        let failed_before = probation_failures(all).map(|(_, s)| s.pid).collect();
        Watch {
            pid_file,
            old,
            known,
            begun,
            timeout,
            child: None,
            failed_before,
            on_probation: None,
        }
    }

    fn old_pid(&self) -> Option<Pid> {
        self.old.as_ref().map(|g| g.pid)
    }

    /// Exit status 0 with `OLD -> NEW in T` (and `(probation P passed)`),
    /// or 1 with what happened.
    fn verdict(mut self) -> Result<u8> {
        let mut deadline = self.begun + self.timeout;
        // The old generation's last word: it may be gone by the verdict.
        let mut last_seen = None;
        loop {
            let all = admin::generations(self.pid_file)?;
            if let Some(g) = all.iter().find(|g| Some(g.pid) == self.old_pid()) {
                last_seen = Some(g.clone());
            }
            // A new generation that serves, or the one seen on probation
            // once it has passed (it may be detached at once by a restart
            // asked during its probation).
            let on_probation = self.on_probation.map(|(pid, _)| pid);
            if let Some(new) = all.iter().find(|g| {
                Some(g.pid) != self.old_pid()
                    && (g.role == Role::Serving
                        || (Some(g.pid) == on_probation && g.role == Role::Detached))
            }) {
                let old = self
                    .old_pid()
                    .map_or_else(|| "none".to_owned(), |pid| pid.to_string());
                let took = Duration::from_millis(self.begun.elapsed().as_millis() as u64);
                let passed = match (new.probation, self.on_probation) {
                    (Some(p), _) | (None, Some((_, p))) => {
                        format!(" (probation {} passed)", format_duration(p))
                    }
                    _ => String::new(),
                };
                println!("{old} -> {} in {}{passed}", new.pid, format_duration(took));
                return Ok(OK);
            }
            if let Some((g, s)) =
                probation_failures(&all).find(|(_, s)| !self.failed_before.contains(&s.pid))
            {
                eprintln!(
                    "seamless restart: FAILED: successor {} {}",
                    s.pid,
                    outcome(s)
                );
                let now = headline(g);
                let now = now
                    .strip_prefix(&format!("generation {}: ", g.pid))
                    .unwrap_or(&now);
                eprintln!("generation {} serves again: {now}", g.pid);
                return Ok(FAILED);
            }
            if self.on_probation.is_none() {
                if let Some(new) = all
                    .iter()
                    .find(|g| Some(g.pid) != self.old_pid() && g.role == Role::Probation)
                {
                    let length = match (new.since, new.until) {
                        (Some(since), Some(until)) => {
                            until.duration_since(since).unwrap_or_default()
                        }
                        _ => new.probation.unwrap_or_default(),
                    };
                    eprintln!(
                        "generation {} called started() {} after the request; on probation for {}",
                        new.pid,
                        format_duration(Duration::from_millis(
                            self.begun.elapsed().as_millis() as u64
                        )),
                        format_duration(length)
                    );
                    self.on_probation = Some((new.pid, length));
                    // The verdict is the probation's: wait for it.
                    deadline = deadline.max(Instant::now() + length + PROBATION_SLACK);
                }
            }
            // Nobody restarts the launcher this tool started: its end is
            // the verdict.
            if let Some(c) = &mut self.child {
                if c.try_wait()?.is_some() {
                    std::thread::sleep(POLL); // let its report reach the old generation
                    return Ok(self.failed(last_seen));
                }
            }
            if Instant::now() >= deadline {
                return Ok(self.failed(last_seen));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Says what is known, exit status 1.
    fn failed(mut self, last_seen: Option<Generation>) -> u8 {
        eprintln!(
            "seamless restart: FAILED: no new generation called started() within {}",
            format_duration(self.timeout)
        );
        let all = admin::generations(self.pid_file).unwrap_or_default();
        let now = match &self.old {
            None => None,
            Some(old) => match all.iter().find(|g| g.pid == old.pid) {
                Some(g) => {
                    eprintln!("old {}", headline(g));
                    Some(g.clone())
                }
                None => {
                    eprintln!("old generation {}: no longer runs", old.pid);
                    if let Some(g) = &last_seen {
                        eprintln!("  last seen: {}", headline(g));
                    }
                    last_seen
                }
            },
        };
        let mut named = Vec::new();
        if let Some(g) = &now {
            named.extend(g.successors.iter().map(|s| s.pid));
        }
        // Generations that started but never called started(), known or
        // not to the old one.
        for g in &all {
            if Some(g.pid) != self.old_pid() && !named.contains(&g.pid) {
                eprintln!("successor {}: {} (has not called started())", g.pid, g.role);
            }
        }
        if let Some(g) = &now {
            for s in &g.successors {
                let more = match s.outcome {
                    Outcome::Running => " (has not called started())",
                    _ => "",
                };
                eprintln!("successor {}: {}{more}", s.pid, outcome(s));
            }
            if g.successors.is_empty() {
                eprintln!("no successor made itself known");
            }
        }
        match self.child.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => eprintln!(
                    "the launcher this tool started ({}) ended: {status}",
                    child.id()
                ),
                _ => eprintln!("the launcher this tool started ({}) still runs", child.id()),
            },
            None => {
                let started_since = all
                    .iter()
                    .map(|g| g.pid)
                    .chain(named)
                    .any(|pid| !self.known.contains(&pid));
                if !started_since {
                    self.nothing_started(now.as_ref());
                }
            }
        }
        FAILED
    }

    /// Nothing started while this tool waited: perhaps nothing will.
    fn nothing_started(&self, old: Option<&Generation>) {
        let from = match old {
            Some(g) => match (g.role == Role::Detached, g.until) {
                (true, Some(until)) => format!(
                    ": it takes the listeners over from generation {} until {}",
                    g.pid,
                    format_time(until)
                ),
                _ => String::new(),
            },
            None => String::new(),
        };
        eprintln!(
            "no new generation started while this tool waited: if nothing supervises the \
             service (its launcher was started by hand, or by this tool), start its launcher \
             again{from}"
        );
    }
}

/// How long after a probation's end its verdict is waited for.
const PROBATION_SLACK: Duration = Duration::from_secs(2);

/// Every successor some generation saw die during its probation, with
/// that generation.
fn probation_failures(all: &[Generation]) -> impl Iterator<Item = (&Generation, &Successor)> {
    all.iter().flat_map(|g| {
        g.successors
            .iter()
            .filter(|s| s.into_probation.is_some())
            .map(move |s| (g, s))
    })
}

/// The first line of [`describe`].
fn headline(g: &Generation) -> String {
    describe(g).lines().next().unwrap_or_default().to_owned()
}

//! `seamless restart`: ask the serving generation to restart, then wait for
//! a new generation to call `started()`, and say what happened.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use seamless::admin::{self, Generation, Outcome, Role};

use crate::launch;
use crate::status::{describe, outcome};
use crate::time::format_duration;
use crate::{Spawn, FAILED, NONE_RUNS, OK};

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

fn restart(pid_file: &Path, timeout: Option<Duration>, spawn: Spawn) -> std::io::Result<u8> {
    let all = admin::generations(pid_file)?;
    let Some(old) = all.iter().find(|g| g.role == Role::Serving).cloned() else {
        if all.is_empty() {
            eprintln!(
                "seamless restart: {}: no generation runs",
                pid_file.display()
            );
        } else {
            eprintln!(
                "seamless restart: {}: no generation serves (a restart may be under way):",
                pid_file.display()
            );
            for g in &all {
                eprint!("{}", describe(g));
            }
        }
        return Ok(NONE_RUNS);
    };
    let timeout = timeout.unwrap_or(old.handover_timeout);
    let Some(launcher) = old.launcher else {
        eprintln!(
            "seamless restart: generation {} has no launcher any more; nothing can restart it",
            old.pid
        );
        return Ok(FAILED);
    };
    // Read before the launcher exits: it is gone once stage 1 is done.
    let supervisor = launch::supervisor_of(launcher);
    let recipe = match (spawn, &supervisor) {
        (Spawn::Always, _) | (Spawn::Auto, None) => Some(launch::recipe(launcher)?),
        _ => None,
    };
    match (&supervisor, &recipe) {
        (Some((name, pid)), None) => {
            eprintln!("restarting generation {}: {name} ({pid}) starts the next", old.pid)
        }
        (_, Some(_)) => eprintln!(
            "restarting generation {}: its launcher {launcher} has no supervisor; this tool starts the next",
            old.pid
        ),
        (None, None) => eprintln!("restarting generation {}", old.pid),
    }

    let begun = Instant::now();
    let deadline = begun + timeout;
    admin::request_restart(pid_file, old.pid)?;
    let mut child = None;
    if let Some(recipe) = recipe {
        // Stage 1 first: the next generation must find the endpoint to
        // take the listeners from.
        while !matches!(admin::generation(pid_file, old.pid)?, Some(g) if g.role != Role::Serving) {
            if Instant::now() >= deadline {
                return Ok(failed(pid_file, &old, None, timeout, None));
            }
            std::thread::sleep(POLL);
        }
        child = Some(recipe.spawn()?);
    }
    // The old generation's last word: it may be gone by the verdict.
    let mut last_seen = None;
    loop {
        let all = admin::generations(pid_file)?;
        if let Some(g) = all.iter().find(|g| g.pid == old.pid) {
            last_seen = Some(g.clone());
        }
        if let Some(new) = all
            .iter()
            .find(|g| g.pid != old.pid && g.role == Role::Serving)
        {
            println!(
                "{} -> {} in {}",
                old.pid,
                new.pid,
                format_duration(Duration::from_millis(begun.elapsed().as_millis() as u64))
            );
            return Ok(OK);
        }
        // Nobody restarts the launcher this tool started: its end is the
        // verdict.
        if let Some(c) = &mut child {
            if c.try_wait()?.is_some() {
                std::thread::sleep(POLL); // let its report reach the old generation
                return Ok(failed(pid_file, &old, last_seen, timeout, child.as_mut()));
            }
        }
        if Instant::now() >= deadline {
            return Ok(failed(pid_file, &old, last_seen, timeout, child.as_mut()));
        }
        std::thread::sleep(POLL);
    }
}

/// The first line of [`describe`].
fn headline(g: &Generation) -> String {
    describe(g).lines().next().unwrap_or_default().to_owned()
}

/// Says what is known, exit status 1.
fn failed(
    pid_file: &Path,
    old: &Generation,
    last_seen: Option<Generation>,
    timeout: Duration,
    child: Option<&mut Child>,
) -> u8 {
    eprintln!(
        "seamless restart: FAILED: no new generation called started() within {}",
        format_duration(timeout)
    );
    let now = match admin::generation(pid_file, old.pid).ok().flatten() {
        Some(g) => {
            eprintln!("old {}", headline(&g));
            Some(g)
        }
        None => {
            eprintln!("old generation {}: no longer runs", old.pid);
            if let Some(g) = &last_seen {
                eprintln!("  last seen: {}", headline(g));
            }
            last_seen
        }
    };
    let mut named = Vec::new();
    if let Some(g) = &now {
        named.extend(g.successors.iter().map(|s| s.pid));
    }
    // Generations that started but never called started(), known or not
    // to the old one.
    for g in admin::generations(pid_file).unwrap_or_default() {
        if g.pid != old.pid && !named.contains(&g.pid) {
            eprintln!("successor {}: {} (has not called started())", g.pid, g.role);
        }
    }
    if let Some(g) = &now {
        for s in &g.successors {
            let more = match s.outcome {
                Outcome::Running => " (has not called started())",
                _ => "",
            };
            eprintln!("successor {}: {}{more}", s.pid, outcome(&s.outcome));
        }
        if g.successors.is_empty() {
            eprintln!("no successor made itself known");
        }
    }
    if let Some(child) = child {
        match child.try_wait() {
            Ok(Some(status)) => eprintln!(
                "the launcher this tool started ({}) ended: {status}",
                child.id()
            ),
            _ => eprintln!("the launcher this tool started ({}) still runs", child.id()),
        }
    }
    FAILED
}

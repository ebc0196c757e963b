//! `seamless status`: every generation of the service, as text or JSON.

use std::path::Path;
use std::time::SystemTime;

use seamless::admin::{self, Generation, Outcome, Pid, Role, Successor};
use serde_json::{json, Value};

use crate::time::{format_duration, format_time, unix_ms};
use crate::{FAILED, NONE_RUNS, OK};

pub(crate) fn run(pid_file: &Path, as_json: bool) -> u8 {
    let generations = match admin::generations(pid_file) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("seamless status: {}: {e}", pid_file.display());
            return FAILED;
        }
    };
    if as_json {
        let doc = json!({
            "pid_file": pid_file.display().to_string(),
            "generations": generations.iter().map(to_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    } else if generations.is_empty() {
        println!("{}: no generation runs", pid_file.display());
    } else {
        for g in &generations {
            print!("{}", describe(g));
        }
    }
    if generations.iter().any(serves) {
        OK
    } else {
        NONE_RUNS
    }
}

/// Serving (on probation or not), or detached and serving on while its
/// successor starts or is on probation.
pub(crate) fn serves(g: &Generation) -> bool {
    matches!(g.role, Role::Serving | Role::Probation | Role::Detached)
}

/// How long until `t`, if it is later.
fn left(t: SystemTime) -> Option<std::time::Duration> {
    t.duration_since(SystemTime::now()).ok()
}

/// Several lines, each ending in a newline.
pub(crate) fn describe(g: &Generation) -> String {
    let mut out = format!("generation {}: {}", g.pid, g.role);
    if let Some(since) = g.since {
        out += &format!(" since {}", format_time(since));
    }
    let covering = g.successors.iter().find_map(|s| match s.outcome {
        Outcome::Probation { until } => Some((s.pid, until)),
        _ => None,
    });
    match (&g.role, g.until) {
        (Role::Probation, Some(until)) => {
            let left = left(until).map(format_duration).unwrap_or("0s".into());
            out += &format!(", probation ends in {left} (at {})", format_time(until));
        }
        (Role::Detached, Some(_)) if covering.is_some() => {
            let (pid, until) = covering.expect("checked");
            out += &format!(
                ", serves beside successor {pid} until its probation ends at {}",
                format_time(until)
            );
        }
        (Role::Detached, Some(until)) => {
            out += &format!(
                ", serves until {} at the latest (handover_timeout {})",
                format_time(until),
                format_duration(g.handover_timeout)
            );
        }
        (Role::Draining, Some(until)) => {
            let left = left(until).map(format_duration).unwrap_or("0s".into());
            out += &format!(", {left} left (until {})", format_time(until));
        }
        _ => {}
    }
    if let Some(launcher) = g.launcher {
        out += &format!(", launcher {launcher}");
    }
    out += "\n";
    for socket in &g.sockets {
        out += &format!("  listener {:?}: {}\n", socket.name, socket.address);
    }
    for s in &g.successors {
        let mut line = outcome(s);
        if s.into_probation.is_some() && serves(g) {
            line += &format!("; generation {} serves again", g.pid);
        }
        out += &format!("  successor {}: {line}\n", s.pid);
    }
    out
}

/// What became of a successor, in words.
pub(crate) fn outcome(s: &Successor) -> String {
    let how = match s.outcome {
        Outcome::Running => return "running".into(),
        Outcome::Probation { until } => {
            let left = left(until).map(format_duration).unwrap_or("0s".into());
            return format!("on probation, {left} left (until {})", format_time(until));
        }
        Outcome::Exited(code) => format!("status {code}"),
        Outcome::Killed(signal) => format!("signal {signal}"),
        // `Gone`, and what a later version may add.
        _ => String::new(),
    };
    match (s.into_probation, how.is_empty()) {
        (Some(into), false) => {
            format!("died {:.1}s into its probation ({how})", into.as_secs_f64())
        }
        (Some(into), true) => format!("died {:.1}s into its probation", into.as_secs_f64()),
        (None, false) if how.starts_with("status") => {
            format!("exited with {how} before started()")
        }
        (None, false) => format!("killed by {how} before started()"),
        (None, true) => "gone".into(),
    }
}

fn to_json(g: &Generation) -> Value {
    let time = |t: Option<SystemTime>| t.map(format_time);
    json!({
        "pid": g.pid.as_u32(),
        "role": g.role.to_string(),
        "serves": serves(g),
        "since": time(g.since),
        "since_unix_ms": g.since.map(unix_ms),
        "until": time(g.until),
        "until_unix_ms": g.until.map(unix_ms),
        "left_ms": g.until.and_then(left).map(|d| d.as_millis() as u64),
        "launcher": g.launcher.map(Pid::as_u32),
        "handover_timeout": format_duration(g.handover_timeout),
        "listeners": g.sockets.iter().map(|s| json!({"name": s.name, "address": s.address})).collect::<Vec<_>>(),
        "successors": g.successors.iter().map(|s| {
            let (state, status, signal, until) = match s.outcome {
                Outcome::Running => ("running", None, None, None),
                Outcome::Probation { until } => ("probation", None, None, Some(until)),
                Outcome::Exited(code) => ("exited", Some(code), None, None),
                Outcome::Killed(signal) => ("killed", None, Some(signal), None),
                _ => ("gone", None, None, None),
            };
            json!({
                "pid": s.pid.as_u32(),
                "state": state,
                "status": status,
                "signal": signal,
                "probation_until": time(until),
                "died_into_probation_ms": s.into_probation.map(|d| d.as_millis() as u64),
                "text": outcome(s),
            })
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn detached() -> Generation {
        seamless::__private::generation(
            42,
            Role::Detached,
            Some(UNIX_EPOCH + Duration::from_secs(1)),
            Some(UNIX_EPOCH + Duration::from_secs(4)),
            None,
            Duration::from_secs(3),
            None,
            vec![("web".into(), "tcp 127.0.0.1:80".into())],
            vec![
                (43, Outcome::Exited(3), None),
                (44, Outcome::Exited(101), Some(Duration::from_millis(1230))),
            ],
        )
    }

    #[test]
    fn a_generation_is_described_in_text_and_json() {
        let g = detached();
        assert!(serves(&g));
        assert_eq!(
            describe(&g),
            "generation 42: detached since 1970-01-01T00:00:01.000Z, serves until 1970-01-01T00:00:04.000Z at the latest (handover_timeout 3s)\n  \
             listener \"web\": tcp 127.0.0.1:80\n  \
             successor 43: exited with status 3 before started()\n  \
             successor 44: died 1.2s into its probation (status 101); generation 42 serves again\n"
        );
        let doc = to_json(&g);
        assert_eq!(doc["pid"], 42);
        assert_eq!(doc["role"], "detached");
        assert_eq!(doc["serves"], true);
        assert_eq!(doc["until_unix_ms"], 4000);
        assert_eq!(doc["handover_timeout"], "3s");
        assert_eq!(doc["successors"][0]["state"], "exited");
        assert_eq!(doc["successors"][0]["status"], 3);
        assert_eq!(doc["successors"][1]["died_into_probation_ms"], 1230);
        assert_eq!(doc["listeners"][0]["address"], "tcp 127.0.0.1:80");
    }
}

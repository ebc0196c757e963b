//! `seamless status`: every generation of the service, as text or JSON.

use std::path::Path;
use std::time::SystemTime;

use seamless::admin::{self, Generation, Outcome, Pid, Role};
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

/// Serving, or detached and serving on while its successor starts.
pub(crate) fn serves(g: &Generation) -> bool {
    matches!(g.role, Role::Serving | Role::Detached)
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
    match (&g.role, g.until) {
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
        out += &format!("  successor {}: {}\n", s.pid, outcome(&s.outcome));
    }
    out
}

pub(crate) fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Running => "running".into(),
        Outcome::Exited(code) => format!("exited with status {code} before started()"),
        Outcome::Killed(signal) => format!("killed by signal {signal} before started()"),
        // `Gone`, and what a later version may add.
        _ => "gone".into(),
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
            let (state, status, signal) = match s.outcome {
                Outcome::Running => ("running", None, None),
                Outcome::Exited(code) => ("exited", Some(code), None),
                Outcome::Killed(signal) => ("killed", None, Some(signal)),
                _ => ("gone", None, None),
            };
            json!({"pid": s.pid.as_u32(), "state": state, "status": status, "signal": signal})
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
            vec![("web".into(), "tcp 127.0.0.1:80".into())],
            vec![(43, Outcome::Exited(3))],
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
             successor 43: exited with status 3 before started()\n"
        );
        let doc = to_json(&g);
        assert_eq!(doc["pid"], 42);
        assert_eq!(doc["role"], "detached");
        assert_eq!(doc["serves"], true);
        assert_eq!(doc["until_unix_ms"], 4000);
        assert_eq!(doc["handover_timeout"], "3s");
        assert_eq!(doc["successors"][0]["state"], "exited");
        assert_eq!(doc["successors"][0]["status"], 3);
        assert_eq!(doc["listeners"][0]["address"], "tcp 127.0.0.1:80");
    }
}

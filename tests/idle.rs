//! An idle generation sleeps: no thread of its launcher or its daemon
//! wakes while nothing happens (no connection, no signal, no deadline).
//!
//! Every thread's context switches (voluntary and not) are read from
//! `/proc/PID/task/TID/status` before and after 5 idle seconds; a thread
//! that woke on a timer (a poll with a timeout, a sleep loop) shows there.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);
const IDLE: Duration = Duration::from_secs(5);

/// Context switches of every thread of `pids`, by "pid/tid name".
fn switches(pids: &[i32]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("a live process");
        for task in tasks {
            let task = task.unwrap().path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
            let count: u64 = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let tid = task.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(format!("{pid}/{tid} {}", name.trim()), count);
        }
    }
    out
}

/// Asserts that no thread of `pids` wakes over [`IDLE`].
fn assert_idle(what: &str, pids: &[i32]) {
    // Settle: start-up's last steps (the pid file handshake) are done.
    std::thread::sleep(Duration::from_millis(500));
    let before = switches(pids);
    std::thread::sleep(IDLE);
    let after = switches(pids);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{what}: no thread started or ended while idle"
    );
    let woke: Vec<String> = after
        .iter()
        .map(|(thread, n)| (thread, n - before[thread]))
        .filter(|(_, n)| *n > 0)
        .map(|(thread, n)| format!("{thread}: {n}"))
        .collect();
    eprintln!("{what}: {} threads, {} woke", after.len(), woke.len());
    assert!(
        woke.is_empty(),
        "{what}: threads woke while idle for {IDLE:?}: {woke:?}"
    );
}

#[test]
fn an_idle_testd_generation_never_wakes() {
    let sb = Sandbox::new("idle");
    let launcher = sb.start();
    let daemon = sb.wait_event("ready", &[], T);
    // A served request, and a keep-alive connection left open and idle:
    // its thread waits too.
    assert_eq!(sb.get("/").unwrap(), daemon);
    let mut idle = TcpStream::connect(("127.0.0.1", sb.port)).unwrap();
    write!(idle, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = [0u8; 256];
    let _ = std::io::Read::read(&mut idle, &mut answer).unwrap();
    assert_idle("testd", &[launcher.pid, daemon]);
    drop(idle);
}

#[test]
fn an_idle_axum_generation_never_wakes() {
    let sb = Sandbox::new("idle-axum");
    let mut command = Command::new(example("axum"));
    command
        .arg(format!("127.0.0.1:{}", sb.port))
        .arg(sb.pid_file())
        .stdin(Stdio::null())
        .process_group(0);
    let launcher = sb.start_with(command);
    assert!(
        wait_until(T, || first_pid(&sb.pid_file()).is_some()
            && TcpStream::connect(("127.0.0.1", sb.port)).is_ok()),
        "the axum example serves"
    );
    let daemon = first_pid(&sb.pid_file()).expect("the pid file names the daemon");
    assert_ne!(daemon, launcher.pid);
    assert_idle("axum example", &[launcher.pid, daemon]);
}

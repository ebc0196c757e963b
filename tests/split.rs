//! The launcher split as the daemon sees it: a daemon forked from its
//! launcher starts as a daemon executed afresh would (signal mask,
//! dispositions, argv, kernel name, no file descriptor of the launcher's),
//! and a launcher with more than one thread still executes its daemon.
//!
//! The reference for every comparison is the executed daemon of the same
//! program: what it catches and ignores is what the code installs, measured
//! rather than guessed.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::ExitStatus;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const SPLITD: &str = env!("CARGO_BIN_EXE_splitd");
const T: Duration = Duration::from_secs(10);

/// Marks an executed daemon (the launcher sets it, the daemon removes it
/// from its environment; `/proc/PID/environ` still shows what exec gave).
const ROLE_VARIABLE: &[u8] = b"SEAMLESS_DAEMON=";

/// The signals the daemon catches and starts with blocked.
const DAEMON_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGUSR2];

/// What `/proc` shows of a process.
#[derive(Debug)]
struct Seen {
    /// `SigBlk`: the main thread's signal mask.
    blocked: u64,
    ignored: u64,
    caught: u64,
    cmdline: Vec<u8>,
    comm: String,
    environ: Vec<u8>,
    /// The pipes and sockets among its file descriptors (`pipe:[inode]`).
    channels: BTreeSet<String>,
}

fn seen(pid: i32) -> Seen {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |name: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    let channels = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|t| t.starts_with("pipe:") || t.starts_with("socket:"))
        .collect();
    Seen {
        blocked: mask("SigBlk:"),
        ignored: mask("SigIgn:"),
        caught: mask("SigCgt:"),
        cmdline: std::fs::read(format!("/proc/{pid}/cmdline")).unwrap(),
        comm: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
        environ: std::fs::read(format!("/proc/{pid}/environ")).unwrap(),
        channels,
    }
}

fn bit(signal: Signal) -> u64 {
    1 << (signal as i32 - 1)
}

fn names(mask: u64) -> Vec<&'static str> {
    Signal::iterator()
        .filter(|&s| mask & bit(s) != 0)
        .map(|s| s.as_str())
        .collect()
}

/// A launcher of `splitd` and its daemon, seen once the daemon has
/// started, then stopped by a TERM to the daemon.
struct Split {
    launcher: Seen,
    daemon: Seen,
    status: ExitStatus,
    /// The launcher's and the daemon's output.
    output: String,
}

fn split(name: &str, thread_first: bool) -> Split {
    let sb = Sandbox::new(name);
    let mut command = sb.command_of(SPLITD);
    // An argv that survives only if passed on byte for byte.
    command
        .arg0("splitd-argv0")
        .args(["two words", "", "--x=ü"]);
    if thread_first {
        command.env("SPLITD_THREAD_FIRST", "1");
    }
    // SAFETY: signal(2) is async-signal-safe. The supervisor starts the
    // launcher with two signals ignored: SIGHUP, which the launcher catches
    // (exec then resets it to the default), and SIGPWR, which it does not
    // (exec keeps it ignored).
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGPWR, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut launcher = sb.start_with(command);
    assert!(
        wait_until(T, || sb.pid_in_file().is_some()),
        "no daemon called started(); output:\n{}",
        sb.output()
    );
    let daemon = sb.pid_in_file().unwrap();
    let (launcher_seen, daemon_seen) = (seen(launcher.pid), seen(daemon));
    signal(daemon, Signal::SIGTERM);
    let status = launcher.wait(T);
    Split {
        launcher: launcher_seen,
        daemon: daemon_seen,
        status,
        output: sb.output(),
    }
}

fn executed(daemon: &Seen) -> bool {
    daemon
        .environ
        .split(|&b| b == 0)
        .any(|var| var.starts_with(ROLE_VARIABLE))
}

/// What both ways must give the daemon.
fn assert_started_as_a_daemon(split: &Split) {
    let (launcher, daemon) = (&split.launcher, &split.daemon);
    assert_eq!(daemon.cmdline, launcher.cmdline, "argv");
    assert_eq!(daemon.comm, launcher.comm, "kernel name");
    for signal in DAEMON_SIGNALS {
        assert_eq!(
            daemon.blocked & bit(signal),
            0,
            "{signal} still blocked in the daemon's main thread"
        );
        assert_ne!(daemon.caught & bit(signal), 0, "{signal} not caught");
    }
    assert_ne!(
        daemon.ignored & bit(Signal::SIGPWR),
        0,
        "SIGPWR, ignored when the launcher started, is not ignored in the daemon"
    );
    assert_eq!(
        daemon.ignored & bit(Signal::SIGHUP),
        0,
        "SIGHUP, caught by the launcher, is still ignored in the daemon"
    );
    assert_eq!(
        launcher.ignored & bit(Signal::SIGPWR),
        bit(Signal::SIGPWR),
        "the launcher was not started with SIGPWR ignored"
    );
    assert!(
        split.status.success(),
        "the launcher ended with {:?}; output:\n{}",
        split.status,
        split.output
    );
}

#[test]
fn a_forked_daemon_starts_as_an_executed_one_would() {
    let forked = split("split-fork", false);
    let exec = split("split-exec", true);
    assert!(
        !executed(&forked.daemon),
        "a single-threaded launcher executed its daemon; output:\n{}",
        forked.output
    );
    assert!(
        executed(&exec.daemon),
        "a launcher with two threads forked its daemon; output:\n{}",
        exec.output
    );
    assert_started_as_a_daemon(&forked);
    assert_started_as_a_daemon(&exec);

    // The same mask and dispositions as the executed daemon's.
    assert_eq!(
        names(forked.daemon.blocked),
        names(exec.daemon.blocked),
        "SigBlk"
    );
    assert_eq!(
        names(forked.daemon.ignored),
        names(exec.daemon.ignored),
        "SigIgn"
    );
    assert_eq!(
        names(forked.daemon.caught),
        names(exec.daemon.caught),
        "SigCgt"
    );
    // What only the launcher catches (SIGCHLD, the forwarded signals) is
    // not caught in the forked daemon: none of the launcher's handlers is
    // left.
    let launcher_only = forked.launcher.caught & !exec.daemon.caught;
    assert!(
        launcher_only & bit(Signal::SIGCHLD) != 0,
        "the launcher catches no SIGCHLD: {:?}",
        names(forked.launcher.caught)
    );
    assert_eq!(names(forked.daemon.caught & launcher_only), [] as [&str; 0]);

    // No pipe or socket of the launcher's (its signal pipe, its end of the
    // control channel) is open in the forked daemon; what both inherited
    // from this test process does not count.
    let ours = seen(std::process::id() as i32).channels;
    let shared: Vec<_> = forked
        .daemon
        .channels
        .intersection(&forked.launcher.channels)
        .filter(|c| !ours.contains(*c))
        .collect();
    assert!(shared.is_empty(), "shared with the launcher: {shared:?}");
}

//! The restart protocol end to end, with the test as the supervisor: start,
//! TERM, start again, as `supervise` does.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(15);

/// Starts a generation and waits until its daemon serves; returns the
/// launcher and the daemon's pid.
fn start_generation(sb: &Sandbox, older: &[i32]) -> (Launcher, i32) {
    let launcher = sb.start();
    let daemon = sb.wait_event("ready", older, T);
    assert_ne!(daemon, launcher.pid, "the daemon is a separate process");
    (launcher, daemon)
}

#[test]
fn restart_keeps_serving_and_completes_the_slow_request() {
    let sb = Sandbox::new("restart");
    let (mut a, old) = start_generation(&sb, &[]);
    assert_eq!(sb.get("/").unwrap(), old);
    assert_eq!(
        sb.count("child-launch-handler", a.pid),
        1,
        "runs in the launcher"
    );
    sb.assert_pid_file(Some(old));

    // A slow request in flight on the old generation.
    let port = sb.port;
    let slow = std::thread::spawn(move || get(port, "/?delay=1500", T));
    std::thread::sleep(Duration::from_millis(100));

    a.signal(Signal::SIGTERM);
    let status = a.wait(T);
    assert!(status.success(), "launcher steps aside with 0: {status:?}");
    assert_eq!(sb.count("shutdown-request-handler", old), 1);
    // Detached but still serving, before the next generation exists.
    assert!(alive(old));
    assert_eq!(sb.get("/").unwrap(), old);
    assert_eq!(sb.count("shutdown-handler", old), 0, "no stage 3 yet");

    let (_b, new) = start_generation(&sb, &[old]);
    wait_dead(old, T);
    assert_eq!(slow.join().unwrap().unwrap(), old, "slow request completed");
    assert_eq!(sb.count("shutdown-handler", old), 1);
    assert_eq!(sb.count("main-returns", old), 1);
    assert_eq!(sb.get("/").unwrap(), new);
    sb.assert_pid_file(Some(new));
}

#[test]
fn launcher_exits_with_the_daemons_status() {
    let sb = Sandbox::new("status");
    let (mut a, _) = start_generation(&sb, &[]);
    let _ = sb.get("/exit?code=7");
    assert_eq!(a.wait(T).code(), Some(7));
}

#[test]
fn launcher_dies_of_the_signal_that_killed_the_daemon() {
    // (A SIGSEGV sent with kill() does not end a Rust program: std's
    // handler for stack overflows returns, so SIGQUIT stands for a crash.)
    for signal in [Signal::SIGKILL, Signal::SIGQUIT, Signal::SIGABRT] {
        let sb = Sandbox::new("killed");
        let (mut a, daemon) = start_generation(&sb, &[]);
        common::signal(daemon, signal);
        assert_eq!(exit_signal(a.wait(T)), Some(signal as i32), "{signal}");
    }
}

#[test]
fn launcher_sigkill_makes_the_daemon_shut_down_gracefully() {
    let sb = Sandbox::new("lkill");
    let (a, daemon) = start_generation(&sb, &[]);
    a.signal(Signal::SIGKILL);
    wait_dead(daemon, T);
    assert_eq!(sb.count("shutdown-handler", daemon), 1);
    assert_eq!(sb.count("main-returns", daemon), 1);
    sb.assert_pid_file(None);
}

#[test]
fn term_straight_to_the_daemon_is_a_graceful_stop() {
    let sb = Sandbox::new("dterm");
    let (mut a, daemon) = start_generation(&sb, &[]);
    let port = sb.port;
    let slow = std::thread::spawn(move || get(port, "/?delay=800", T));
    std::thread::sleep(Duration::from_millis(100));
    common::signal(daemon, Signal::SIGTERM);
    let status = a.wait(T);
    assert_eq!(status.code(), Some(0));
    assert_eq!(slow.join().unwrap().unwrap(), daemon);
    assert_eq!(sb.count("shutdown-handler", daemon), 1);
    assert_eq!(sb.count("shutdown-request-handler", daemon), 0);
}

#[test]
fn sigint_to_the_whole_group_runs_the_handlers_once() {
    let sb = Sandbox::new("ctrlc");
    let (mut a, daemon) = start_generation(&sb, &[]);
    // As a terminal does for Ctrl-C: the launcher and the daemon both get it.
    common::signal(-a.pid, Signal::SIGINT);
    assert_eq!(a.wait(T).code(), Some(0));
    wait_dead(daemon, T);
    assert_eq!(sb.count("shutdown-handler", daemon), 1);
    assert_eq!(sb.count("main-returns", daemon), 1);
}

#[test]
fn a_restart_requested_during_start_up_is_not_lost() {
    let sb = Sandbox::new("early").env("TESTD_START_DELAY_MS", "1000");
    let mut a = sb.start();
    // The launcher ran its child-launch handler right after spawning the
    // daemon, which is still starting: ask for the restart now.
    sb.wait_event("child-launch-handler", &[], T);
    a.signal(Signal::SIGTERM);
    assert!(
        a.wait(T).success(),
        "the daemon answered the restart request"
    );
    let daemon = sb.wait_event("start", &[], T);
    assert_eq!(sb.count("shutdown-request-handler", daemon), 1);
    // No successor comes: after handover_timeout (3 s) it stops gracefully.
    wait_dead(daemon, T);
    assert_eq!(sb.count("shutdown-handler", daemon), 1);
    assert_eq!(sb.count("main-returns", daemon), 1);
}

#[test]
fn usr2_straight_to_the_daemon_requests_a_restart() {
    let sb = Sandbox::new("usr2");
    let (mut a, daemon) = start_generation(&sb, &[]);
    common::signal(daemon, Signal::SIGUSR2);
    assert!(a.wait(T).success());
    let (_b, new) = start_generation(&sb, &[daemon]);
    wait_dead(daemon, T);
    assert_eq!(sb.get("/").unwrap(), new);
}

#[test]
fn signals_other_than_term_are_forwarded() {
    let sb = Sandbox::new("fwd");
    let (mut a, daemon) = start_generation(&sb, &[]);
    // testd does not handle SIGHUP: forwarded, it ends the daemon, and the
    // launcher dies of it too.
    a.signal(Signal::SIGHUP);
    assert_eq!(exit_signal(a.wait(T)), Some(libc::SIGHUP));
    wait_dead(daemon, T);
}

#[test]
fn the_daemon_has_the_programs_name_and_argv() {
    let sb = Sandbox::new("name");
    let mut command = sb.command();
    command.args(["--flag", "value"]);
    let launcher = sb.start_with(command);
    let daemon = sb.wait_event("ready", &[], T);
    let read = |pid: i32, what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap();
    // The kernel's name of the launcher comes from the executed file name.
    assert_eq!(read(launcher.pid, "comm"), b"testd\n");
    assert_eq!(read(daemon, "comm"), read(launcher.pid, "comm"));
    assert_eq!(read(daemon, "cmdline"), read(launcher.pid, "cmdline"));
    // The seamless threads keep their own names.
    let control_thread = std::fs::read_dir(format!("/proc/{daemon}/task"))
        .unwrap()
        .flatten()
        .any(|t| std::fs::read(t.path().join("comm")).unwrap() == b"seamless-contro\n");
    assert!(control_thread, "seamless-control keeps its name");
    // Tools that match by name find both.
    for tool in ["pgrep", "pidof"] {
        let args: &[&str] = if tool == "pgrep" {
            &["-x", "testd"]
        } else {
            &["testd"]
        };
        let Ok(out) = std::process::Command::new(tool).args(args).output() else {
            not_run(&format!(
                "{tool} not installed (Debian: procps has pgrep, sysvinit-utils pidof)"
            ));
            continue;
        };
        let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            pids.contains(&launcher.pid) && pids.contains(&daemon),
            "{tool} testd: {pids:?}, launcher {}, daemon {daemon}",
            launcher.pid
        );
    }
}

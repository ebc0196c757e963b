//! The `seamless` command-line tool against real generations of testd:
//! every exit code of `status` and `restart`, a successor that crashes,
//! one that hangs before `started()`, restarts with no supervisor (the
//! tool starts the next launcher), under runit, and under `respawn`, a
//! supervisor the tool does not know (`--spawn auto` refuses and changes
//! nothing; `--spawn never` restarts once), a fix deployed while a failed
//! restart is under way (waited for), a successor speaking another
//! protocol version.
//!
//! The service's program is a symlink (`app`) to testd, or to a script
//! that changes testd's behaviour: what a deploy does to a path.

mod common;

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::set_executable;
use common::*;
use nix::sys::signal::Signal;

const TOOL: &str = env!("CARGO_BIN_EXE_seamless-tool");
const RESPAWN: &str = env!("CARGO_BIN_EXE_respawn");
const T: Duration = Duration::from_secs(20);

fn tool(args: &[&str]) -> Output {
    let output = Command::new(TOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "$ seamless {}\n{}{}=> {:?}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code()
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Points `<sandbox>/app` at testd, or at a script that runs testd with
/// `env` added: the deploy of a new binary.
fn deploy(sb: &Sandbox, env: &str) {
    deploy_program(sb, TESTD, env);
}

/// [`deploy`] of another program.
fn deploy_program(sb: &Sandbox, program: &str, env: &str) {
    let app = sb.dir.join("app");
    let tmp = sb.dir.join("app.new");
    let _ = std::fs::remove_file(&tmp);
    if env.is_empty() {
        std::os::unix::fs::symlink(program, &tmp).unwrap();
    } else {
        std::fs::write(
            &tmp,
            format!("#!/bin/sh\nexport {env}\nexec '{program}' \"$@\"\n"),
        )
        .unwrap();
        set_executable(&tmp);
    }
    std::fs::rename(&tmp, &app).unwrap();
}

/// A pseudo-terminal: the controlling terminal of a shell that stands for
/// a person's. Closing it hangs the shell up.
struct Terminal {
    _master: nix::pty::PtyMaster,
    slave: CString,
}

impl Terminal {
    fn open() -> Terminal {
        use nix::fcntl::OFlag;
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("a pseudo-terminal (posix_openpt)");
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let slave = CString::new(nix::pty::ptsname_r(&master).unwrap()).unwrap();
        Terminal {
            _master: master,
            slave,
        }
    }
}

/// Starts `<sandbox>/app` by hand: from a shell at a terminal (a session
/// of its own, the pseudo-terminal its controlling terminal), as a person
/// types it; its argv[0] is the symlink's path. The shell stays, as an
/// interactive one would, after the launcher exits.
fn start_by_hand(sb: &Sandbox) -> (Launcher, Terminal) {
    let terminal = Terminal::open();
    let slave = terminal.slave.clone();
    let mut c = Command::new("sh");
    c.args(["-c", "\"$@\"; exec sleep 600", "sh"])
        .arg(sb.dir.join("app"))
        .env("TESTD_PID_FILE", sb.pid_file())
        .env("TESTD_ADDR", format!("127.0.0.1:{}", sb.port))
        .env("TESTD_EVENTS", sb.events_file())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .current_dir(&sb.dir);
    // SAFETY: setsid, open, ioctl and close are async-signal-safe; the
    // path is a CString allocated before the fork.
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(slave.as_ptr(), libc::O_RDWR);
            if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    // The shell leads its own session and group: the sandbox kills it.
    (sb.start_with(c), terminal)
}

/// `respawn`, a supervisor the tool does not know, running
/// `<sandbox>/app`; on drop, killed with its process group, every
/// generation included.
struct Respawn {
    process: GroupGuard,
    log: PathBuf,
}

impl Respawn {
    fn start(sb: &Sandbox) -> Respawn {
        let log = sb.dir.join("respawn.log");
        let mut c = Command::new(RESPAWN);
        c.arg(&log)
            .arg(sb.dir.join("app"))
            .env("TESTD_PID_FILE", sb.pid_file())
            .env("TESTD_ADDR", format!("127.0.0.1:{}", sb.port))
            .env("TESTD_EVENTS", sb.events_file())
            .env("RUST_BACKTRACE", "0")
            .current_dir(&sb.dir);
        let process = GroupGuard::spawn(&mut c, &sb.dir.join("output-respawn"));
        Respawn { process, log }
    }

    fn pid(&self) -> i32 {
        self.process.id() as i32
    }

    /// The launchers it started, in order.
    fn starts(&self) -> Vec<i32> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
            .collect()
    }
}

/// Kills, on drop, processes the tool started (launchers in sessions of
/// their own, out of the sandbox's groups, and their daemons), each only if
/// it is still the process seen when it was added (same start time): a pid
/// reused since is left alone.
struct Strays(Vec<(i32, String)>);

/// Field 22 of `/proc/PID/stat`, the start time.
fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

impl Strays {
    fn add(&mut self, pid: i32) {
        let me = std::process::id() as i32;
        if pid > 1 && pid != me {
            if let Some(started) = start_time(pid) {
                self.0.push((pid, started));
            }
        }
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        for (pid, started) in &self.0 {
            if start_time(*pid).as_ref() == Some(started) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
                wait_until(Duration::from_secs(2), || !alive(*pid));
            }
        }
    }
}

/// The launcher of generation `daemon` (its parent).
fn launcher_of(daemon: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn status_exit_codes() {
    let sb = Sandbox::new("cli-status");
    let pid_file = sb.pid_file();
    // Nothing runs: 3, and an empty list.
    let out = tool(&["status", path(&pid_file)]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = tool(&["status", path(&pid_file), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["generations"], serde_json::json!([]));
    // Usage errors: 2.
    assert_eq!(tool(&["status"]).status.code(), Some(2));
    assert_eq!(tool(&["status", "a", "b"]).status.code(), Some(2));
    assert_eq!(tool(&["frobnicate", "a"]).status.code(), Some(2));
    let out = tool(&["status", "a", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("'--timeout'"),
        "names it: {}",
        text(&out)
    );
    // Help and version: 0, on stdout.
    let out = tool(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("seamless {}", env!("CARGO_PKG_VERSION"))
    );
    for help in [&["--help"][..], &["restart", "--help"], &["help", "status"]] {
        let out = tool(help);
        assert_eq!(out.status.code(), Some(0), "{help:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: seamless"),
            "{help:?}: {}",
            text(&out)
        );
    }

    // One generation serves: 0, with its listener.
    let _launcher = sb.start();
    let daemon = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(daemon));
    let out = tool(&["status", path(&pid_file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(&format!("generation {daemon}: serving since")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("listener \"web\": tcp 127.0.0.1:{}", sb.port)),
        "{shown}"
    );
    let out = tool(&["status", path(&pid_file), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &doc["generations"][0];
    assert_eq!(g["pid"], daemon);
    assert_eq!(g["role"], "serving");
    assert_eq!(g["handover_timeout"], "3s");
    assert_eq!(g["listeners"][0]["name"], "web");

    // Errors: 1. A pid file that is not a file; one of another user.
    let not_a_file = sb.dir.join("dir.pid");
    std::fs::create_dir(&not_a_file).unwrap();
    assert_eq!(tool(&["status", path(&not_a_file)]).status.code(), Some(1));
    assert_eq!(
        tool(&["status", path(&sb.dir.join("missing/dir/x.pid"))])
            .status
            .code(),
        Some(1)
    );
    if nix::unistd::geteuid().is_root() {
        let foreign = sb.dir.join("foreign.pid");
        std::fs::write(&foreign, b"1\n").unwrap();
        nix::unistd::chown(&foreign, Some(65534.into()), None).unwrap();
        let out = tool(&["status", path(&foreign)]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out).contains("belongs to uid 65534"),
            "{}",
            text(&out)
        );
    } else {
        not_run("a pid file of another user needs root (CI runs as root)");
    }
}

#[test]
fn restart_without_a_supervisor_starts_the_next_launcher() {
    let sb = Sandbox::new("cli-hand");
    deploy(&sb, "");
    let (_launcher, _terminal) = start_by_hand(&sb);
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    let mut strays = Strays(Vec::new());
    // A shell at a terminal runs the launcher: nobody else starts the
    // next one.
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let new = sb.wait_event("ready", &[old], T);
    strays.add(launcher_of(new));
    assert!(shown.contains(&format!("{old} -> {new} in ")), "{shown}");
    assert!(shown.contains("at a terminal"), "{shown}");
    assert!(shown.contains("this tool starts the next"), "{shown}");
    sb.assert_pid_file(Some(new));
    assert_eq!(sb.get("/").unwrap(), new);
    wait_dead(old, T);

    // The launcher this tool started outlives it and is adopted: by init
    // outside the tests, here by the test process, a subreaper. That is a
    // parent the tool does not know: `auto` refuses and changes nothing;
    // `--spawn always` says that nothing restarts the service.
    let me = std::process::id();
    assert_eq!(launcher_of(launcher_of(new)), me as i32);
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!(" ({me}), which is no supervisor")),
        "{shown}"
    );
    assert!(shown.contains("nothing was changed"), "{shown}");
    assert_eq!(sb.get("/").unwrap(), new);
    assert_eq!(sb.count("shutdown-request-handler", new), 0);
    let out = tool(&["restart", path(&sb.pid_file()), "--spawn", "always"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let newer = sb.wait_event("ready", &[old, new], T);
    strays.add(launcher_of(newer));
    assert!(shown.contains(&format!("{new} -> {newer} in ")), "{shown}");
    assert!(
        shown.contains("this tool starts the next launcher (--spawn always)"),
        "{shown}"
    );
    sb.assert_pid_file(Some(newer));
    assert_eq!(sb.get("/").unwrap(), newer);
    wait_dead(new, T);
}

#[test]
fn restart_reports_a_successor_that_crashes_and_the_old_one_serves_on() {
    let sb = Sandbox::new("cli-crash");
    deploy(&sb, "");
    let (_launcher, _terminal) = start_by_hand(&sb);
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    deploy(&sb, "TESTD_CRASH=exit3");
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let crashed = sb.wait_event("start", &[old], T);
    assert!(
        shown.contains("FAILED: no new generation called started()"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("old generation {old}: detached since")),
        "{shown}"
    );
    assert!(shown.contains("serves until"), "{shown}");
    assert!(
        shown.contains(&format!(
            "successor {crashed}: exited with status 3 before started()"
        )),
        "{shown}"
    );
    // The old generation still serves, until handover_timeout.
    assert_eq!(sb.get("/").unwrap(), old);
    let out = tool(&["status", path(&sb.pid_file())]);
    assert_eq!(out.status.code(), Some(0), "a detached generation serves");
    assert!(text(&out).contains("detached"), "{}", text(&out));
    // Fixed at once: a restart is under way, and waited for; but nothing
    // restarts a launcher started by hand, and the tool says so.
    deploy(&sb, "");
    let out = tool(&["restart", path(&sb.pid_file()), "--timeout", "500ms"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("a restart is under way"), "{shown}");
    assert!(shown.contains("FAILED"), "{shown}");
    assert!(
        shown.contains("no new generation started while this tool waited"),
        "{shown}"
    );
    assert_eq!(sb.get("/").unwrap(), old);
}

#[test]
fn restart_reports_a_successor_that_hangs_before_started() {
    let sb = Sandbox::new("cli-hang");
    deploy(&sb, "");
    let (_launcher, _terminal) = start_by_hand(&sb);
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    deploy(&sb, "TESTD_START_DELAY_MS=60000");
    let out = tool(&["restart", path(&sb.pid_file()), "--timeout", "1500ms"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let hung = sb.wait_event("start", &[old], T);
    let mut strays = Strays(Vec::new());
    strays.add(launcher_of(hung));
    assert!(shown.contains("within 1500ms"), "{shown}");
    assert!(
        shown.contains(&format!(
            "successor {hung}: running (has not called started())"
        )),
        "{shown}"
    );
    assert!(shown.contains("still runs"), "{shown}");
    assert_eq!(sb.get("/").unwrap(), old, "the old generation serves on");
    // Both show in `status`: the old one detached, the new one starting.
    let out = tool(&["status", path(&sb.pid_file()), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<(i64, String)> = doc["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["pid"].as_i64().unwrap(),
                g["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(old.into(), "detached".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&(hung.into(), "starting".into())),
        "{roles:?}"
    );
    let starting = doc["generations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["pid"] == hung)
        .unwrap();
    assert!(starting["since"].is_string(), "{starting}");
}

#[test]
fn restart_exit_codes_without_a_serving_generation() {
    let sb = Sandbox::new("cli-none");
    let out = tool(&["restart", path(&sb.pid_file())]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("no generation runs"));
    assert_eq!(tool(&["restart"]).status.code(), Some(2));
    for bad in ["soon", "0s"] {
        let out = tool(&["restart", "x.pid", "--timeout", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(text(&out).contains("--timeout"), "names it: {}", text(&out));
    }
    // A generation that is detached (USR2 straight to it) is not serving
    // any more, and its launcher is gone: a restart under way, waited
    // for; nothing starts a successor: 1, and it is named.
    let mut launcher = sb.start();
    let daemon = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(daemon));
    signal(daemon, Signal::SIGUSR2);
    assert!(launcher.wait(T).success());
    let out = tool(&["restart", path(&sb.pid_file()), "--timeout", "300ms"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("generation {daemon}: detached")),
        "{shown}"
    );
    assert!(shown.contains("within 300ms"), "{shown}");
    assert!(
        shown.contains("no new generation started while this tool waited"),
        "{shown}"
    );
    assert_eq!(
        sb.count("shutdown-request-handler", daemon),
        1,
        "asked once, by USR2"
    );
    // An unreadable pid file: 1.
    let not_a_file = sb.dir.join("dir.pid");
    std::fs::create_dir(&not_a_file).unwrap();
    assert_eq!(tool(&["restart", path(&not_a_file)]).status.code(), Some(1));
}

/// One request line to a unix socket; the whole answer.
fn raw(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn a_successor_speaking_another_protocol_version_is_refused_and_the_old_one_serves_on() {
    let sb = Sandbox::new("cli-version");
    let mut launcher = sb.start();
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    // Stage 1, and nobody starts a successor: the endpoint is linked at
    // <pid file>.handover for the next generation.
    signal(old, Signal::SIGUSR2);
    assert!(launcher.wait(T).success());
    let handover = PathBuf::from(format!("{}.handover", sb.pid_file().display()));
    assert!(wait_until(T, || path_exists(&handover)));
    let answer = raw(&handover, b"seamless/4 listener web\n");
    assert!(
        answer.starts_with(
            "seamless/3 refused protocol version mismatch: the peer speaks seamless/4"
        ),
        "{answer:?}"
    );
    // The unversioned request of version 1: refused as well, and not
    // understood by such a client as a socket (`+`) or a miss (`-`).
    let answer = raw(&handover, b"web\n");
    assert!(answer.starts_with("seamless/3 refused"), "{answer:?}");
    assert!(wait_until(T, || sb.output().contains("refused pid")));
    assert!(sb.output().contains("speaks seamless/4"), "{}", sb.output());
    // The old generation still serves, and hands its socket to a
    // successor that speaks its version.
    assert_eq!(sb.get("/").unwrap(), old);
    let answer = raw(&handover, b"seamless/3 status\n");
    assert!(answer.contains("role detached"), "{answer:?}");
}

#[test]
fn restart_under_runit_succeeds_then_reports_a_crashing_binary() {
    if !runit::installed() {
        return;
    }
    let sb = Sandbox::new("cli-runit");
    deploy(&sb, "");
    let runsv = runit::Runsv::start(&sb, &sb.dir.join("app"));
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    // A good binary.
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("runsv"),
        "the supervisor starts the next: {shown}"
    );
    let new = sb.wait_event("ready", &[old], T);
    assert!(shown.contains(&format!("{old} -> {new} in ")), "{shown}");
    assert_eq!(sb.get("/").unwrap(), new);
    // A binary that fails on start: runsv starts it again and again; the
    // verdict comes at handover_timeout (3 s), the old generation serving.
    deploy(&sb, "TESTD_CRASH=exit3");
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("within 3s"), "{shown}");
    assert!(
        shown.contains("exited with status 3 before started()"),
        "{shown}"
    );
    assert!(shown.contains(&format!("generation {new}")), "{shown}");
    // Roll back: the supervisor's next start serves again.
    deploy(&sb, "");
    let back = sb.wait_event("ready", &[old, new], T);
    assert_eq!(sb.get("/").unwrap(), back);
    drop(runsv);
    let _ = std::fs::remove_dir_all(sb.dir.join("service/supervise"));
}

// ------------------------------------------------- a supervisor unknown

/// The roles of every generation, from `status --json`; its exit status.
fn roles(sb: &Sandbox) -> (Vec<(i32, String, bool)>, Option<i32>) {
    let out = tool(&["status", path(&sb.pid_file()), "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles = doc["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["pid"].as_i64().unwrap() as i32,
                g["role"].as_str().unwrap().to_owned(),
                g["serves"].as_bool().unwrap(),
            )
        })
        .collect();
    (roles, out.status.code())
}

#[test]
fn under_a_supervisor_it_does_not_know_auto_changes_nothing_and_never_restarts_once() {
    let sb = Sandbox::new("cli-respawn");
    deploy(&sb, "");
    let respawn = Respawn::start(&sb);
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));
    let launcher = launcher_of(old);
    assert_eq!(respawn.starts(), [launcher]);

    // auto: the launcher's parent is no supervisor the tool knows, nor
    // certainly nobody: exit 2, naming it and the flags, and nothing sent.
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let named = format!(
        "its launcher {launcher} is a child of respawn ({}), which is no supervisor this tool knows",
        respawn.pid()
    );
    assert!(shown.contains(&named), "{shown}");
    assert!(shown.contains("nothing was changed"), "{shown}");
    assert!(
        shown.contains(&format!(
            "pass --spawn never if respawn ({}) starts",
            respawn.pid()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("or --spawn always if nothing does"),
        "{shown}"
    );
    // Nothing changed: no restart asked (no TERM, no detach), the same
    // launcher and daemon, serving.
    assert_eq!(
        sb.count("shutdown-request-handler", old),
        0,
        "a restart was asked"
    );
    assert!(alive(launcher));
    assert_eq!(launcher_of(old), launcher);
    assert_eq!(sb.get("/").unwrap(), old);
    assert_eq!(roles(&sb), (vec![(old, "serving".into(), true)], Some(0)));
    assert_eq!(respawn.starts(), [launcher]);
    assert_eq!(sb.daemons(), [old]);

    // never: the supervisor starts the next launcher, exactly one.
    let out = tool(&["restart", path(&sb.pid_file()), "--spawn", "never"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!(
            "its launcher's parent, respawn ({}), starts the next (--spawn never)",
            respawn.pid()
        )),
        "{shown}"
    );
    let new = sb.wait_event("ready", &[old], T);
    assert!(shown.contains(&format!("{old} -> {new} in ")), "{shown}");
    let starts = respawn.starts();
    assert_eq!(starts.len(), 2, "one new launcher: {starts:?}");
    assert_eq!(
        launcher_of(new),
        starts[1],
        "the supervisor's launcher serves"
    );
    assert_eq!(sb.daemons(), [old, new], "one new generation");
    assert_eq!(sb.get("/").unwrap(), new);
    sb.assert_pid_file(Some(new));
    wait_dead(old, T);
    assert_eq!(respawn.starts().len(), 2);
    assert_eq!(sb.daemons(), [old, new]);
}

#[test]
fn a_fix_deployed_while_a_failed_restart_is_under_way_is_waited_for() {
    let sb = Sandbox::new("cli-fix");
    deploy(&sb, "");
    let respawn = Respawn::start(&sb);
    let old = sb.wait_event("ready", &[], T);
    sb.assert_pid_file(Some(old));

    // A bad deploy: the supervisor starts it again and again; the verdict
    // comes before handover_timeout (3 s), the old generation serving.
    deploy(&sb, "TESTD_CRASH=exit3");
    let out = tool(&[
        "restart",
        path(&sb.pid_file()),
        "--spawn",
        "never",
        "--timeout",
        "1s",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("FAILED"), "{shown}");
    assert!(
        shown.contains("exited with status 3 before started()"),
        "{shown}"
    );
    assert!(respawn.starts().len() >= 2);

    // `status`: the detached generation serves, until its deadline.
    let out = tool(&["status", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("generation {old}: detached since ")),
        "{shown}"
    );
    assert!(shown.contains("serves until"), "{shown}");
    assert!(roles(&sb).0.contains(&(old, "detached".into(), true)));

    // `seamless restart` (auto), and the fix deployed while it runs: the
    // restart under way is waited for, and the supervisor's next start
    // succeeds. (Deployed first, the fix may already serve when the tool
    // looks: that is a new restart, which `auto` refuses under respawn.)
    let restart = restart_in_background(&sb, &[]);
    std::thread::sleep(Duration::from_millis(300));
    deploy(&sb, "");
    let (code, shown) = finished(restart);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("a restart is under way"), "{shown}");
    let new = sb.wait_event("ready", &[old], T);
    assert!(shown.contains(&format!("{old} -> {new} in ")), "{shown}");
    assert_eq!(launcher_of(new), *respawn.starts().last().unwrap());
    assert_eq!(sb.get("/").unwrap(), new);
    sb.assert_pid_file(Some(new));
    wait_dead(old, T);
}

// ---------------------------------------------------------------- state

/// An example program, built by `cargo test` next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds the examples (or run `cargo build --examples`)",
        path.display()
    );
    path
}

/// `GET /` on `port`: (generation, pid) from the counter example.
fn generation_and_pid(port: u16) -> (u64, i32) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let field = |key: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key:?} in {answer:?}"))
            .trim()
            .to_owned()
    };
    (
        field("generation ").parse().unwrap(),
        field("pid ").parse().unwrap(),
    )
}

fn start_counter(sb: &Sandbox, offer: &str) -> Launcher {
    let mut c = Command::new(example("counter"));
    c.arg(format!("127.0.0.1:{}", sb.port))
        .arg(sb.pid_file())
        .env("COUNTER_OFFER", offer)
        .stdin(Stdio::null())
        .current_dir(&sb.dir)
        .process_group(0);
    sb.start_with(c)
}

#[test]
fn state_survives_20_restarts() {
    let sb = Sandbox::new("cli-counter");
    let _launcher = start_counter(&sb, "");
    let mut strays = Strays(Vec::new());
    assert!(wait_until(T, || sb.pid_in_file().is_some()));
    let (first, mut pid) = generation_and_pid(sb.port);
    assert_eq!(first, 1);
    // The test process starts the counter and adopts what the tool starts:
    // nothing restarts it.
    for round in 2..=21 {
        let out = tool(&["restart", path(&sb.pid_file()), "--spawn", "always"]);
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        let new: i32 = text(&out)
            .split_once(&format!("{pid} -> "))
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no OLD -> NEW in {}", text(&out)));
        strays.add(new);
        strays.add(launcher_of(new));
        // The old generation may still take a connection as it stops.
        let mut seen = (0, 0);
        assert!(wait_until(T, || {
            seen = generation_and_pid(sb.port);
            seen.1 == new
        }));
        assert_eq!(seen.0, round, "the counter went on");
        pid = new;
    }
}

#[test]
fn refused_state_fails_the_restart_and_the_old_generation_serves_on() {
    let sb = Sandbox::new("cli-counter-bad");
    let _launcher = start_counter(&sb, "garbage");
    let mut strays = Strays(Vec::new());
    assert!(wait_until(T, || sb.pid_in_file().is_some()));
    let (_, old) = generation_and_pid(sb.port);
    strays.add(old);
    let out = tool(&["restart", path(&sb.pid_file()), "--spawn", "always"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("exited with status 1 before started()"),
        "{shown}"
    );
    // Both sides say it: the old generation logs its successor's end.
    assert!(
        sb.output().contains("ended before started() (status 1)"),
        "{}",
        sb.output()
    );
    assert_eq!(
        generation_and_pid(sb.port),
        (1, old),
        "the old generation serves on"
    );
}

// ------------------------------------------------------------ probation

const TESTD_PROBATION: &str = env!("CARGO_BIN_EXE_testd-probation");

/// What a client opening a new connection per request saw.
#[derive(Debug, Default)]
struct Polled {
    answered: usize,
    /// Connected, sent, then the connection broke without an answer: the
    /// request was in flight on a generation that died.
    in_flight_lost: usize,
    /// Anything else: refused, timed out, a bad answer.
    failed: Vec<String>,
    pids: std::collections::BTreeSet<i32>,
}

/// Polls `GET /` on new connections until `stop`, counting what it sees.
fn poll_new_connections(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Polled> {
    std::thread::spawn(move || {
        let mut polled = Polled::default();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            let timeout = Duration::from_secs(5);
            let result =
                std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
                    .map_err(|e| format!("connect: {e}"))
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(timeout)).unwrap();
                        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                            .map_err(|e| format!("send: {e}"))?;
                        let mut body = String::new();
                        match s.read_to_string(&mut body) {
                            Ok(_) if body.is_empty() => Err("lost".to_owned()),
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                                Err("lost".to_owned())
                            }
                            Err(e) => Err(format!("read: {e}")),
                            Ok(_) => parse_pid(&body).map_err(|e| e.to_string()),
                        }
                    });
            match result {
                Ok(pid) => {
                    polled.answered += 1;
                    polled.pids.insert(pid);
                }
                Err(e) if e == "lost" => polled.in_flight_lost += 1,
                Err(e) => polled.failed.push(e),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        polled
    })
}

/// Runs `seamless restart` in the background.
fn restart_in_background(sb: &Sandbox, more: &[&str]) -> std::process::Child {
    Command::new(TOOL)
        .arg("restart")
        .arg(sb.pid_file())
        .args(more)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let shown = text(&out);
    eprintln!("$ seamless restart\n{shown}=> {:?}", out.status.code());
    (out.status.code(), shown)
}

/// A probation that passes, then one that fails 0.5 s in, under `respawn`
/// (a supervisor the tool does not know: `--spawn never`).
#[test]
fn probation_passes_then_a_binary_that_panics_after_started_is_rolled_back() {
    let sb = Sandbox::new("cli-probation");
    deploy_program(&sb, TESTD_PROBATION, "");
    let _respawn = Respawn::start(&sb);
    let first = sb.wait_event("ready", &[], T);
    // The first generation has nobody to cover it: it passes alone.
    assert!(wait_until(T, || roles(&sb).0 == [(first, "serving".into(), true)]));
    sb.assert_pid_file(Some(first));

    // A good binary: during the probation both serve, the pid file names
    // the new one, and the verdict waits for the probation.
    let restart = restart_in_background(&sb, &["--spawn", "never"]);
    let second = sb.wait_event("ready", &[first], T);
    let (during, code) = roles(&sb);
    assert_eq!(code, Some(0));
    assert!(
        during.contains(&(second, "probation".into(), true)),
        "{during:?}"
    );
    assert!(
        during.contains(&(first, "detached".into(), true)),
        "{during:?}"
    );
    sb.assert_pid_file(Some(second));
    let status = text(&tool(&["status", path(&sb.pid_file())]));
    assert!(status.contains("probation ends in"), "{status}");
    assert!(
        status.contains(&format!("serves beside successor {second}")),
        "{status}"
    );
    assert!(alive(first), "TERM came before the probation ended");
    let (code, shown) = finished(restart);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains(&format!("{first} -> {second} in ")),
        "{shown}"
    );
    assert!(shown.contains("(probation 2s passed)"), "{shown}");
    wait_dead(first, T);
    sb.assert_pid_file(Some(second));

    // A binary that panics 1 s after started(), under a new-connection
    // load: the old generation never stops accepting.
    deploy_program(&sb, TESTD_PROBATION, "TESTD_PANIC_AFTER_STARTED_MS=1000");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = poll_new_connections(sb.port, stop.clone());
    let restart = restart_in_background(&sb, &["--spawn", "never"]);
    let (code, shown) = finished(restart);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let polled = poller.join().unwrap();
    eprintln!("polled: {polled:?}");
    assert_eq!(code, Some(1), "{shown}");
    let third = sb
        .daemons()
        .into_iter()
        .find(|p| ![first, second].contains(p))
        .expect("a third generation started");
    assert!(
        shown.contains(&format!("FAILED: successor {third} died ")),
        "{shown}"
    );
    assert!(shown.contains("into its probation (status 101)"), "{shown}");
    assert!(
        shown.contains(&format!(
            "generation {second} serves again: detached since "
        )),
        "{shown}"
    );
    // The supervisor starts the bad binary again, so a newer generation
    // may be on probation beside the old one: both answer.
    assert!(
        wait_until(T, || sb.get("/").ok() == Some(second)),
        "the old generation serves"
    );
    assert!(
        wait_until(T, || sb.pid_in_file() == Some(second)),
        "the pid file names the old generation again"
    );
    assert!(polled.failed.is_empty(), "{:?}", polled.failed);
    assert!(polled.answered > 50, "{polled:?}");
    assert!(
        polled.in_flight_lost <= 2,
        "only requests in flight on the dying generation may be lost: {polled:?}"
    );
    let status = text(&tool(&["status", path(&sb.pid_file())]));
    assert!(
        status.contains(&format!("successor {third}: died ")),
        "{status}"
    );
    assert!(
        status.contains(&format!("generation {second} serves again")),
        "{status}"
    );
}

/// The same under runit, with `--spawn auto` (runsv is known).
#[test]
fn probation_under_runit_passes_then_fails_and_the_old_generation_serves() {
    if !runit::installed() {
        return;
    }
    let sb = Sandbox::new("cli-runit-probation");
    deploy_program(&sb, TESTD_PROBATION, "");
    let runsv = runit::Runsv::start(&sb, &sb.dir.join("app"));
    let first = sb.wait_event("ready", &[], T);
    assert!(wait_until(T, || roles(&sb).0 == [(first, "serving".into(), true)]));
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let second = sb.wait_event("ready", &[first], T);
    assert!(
        shown.contains(&format!("{first} -> {second} in "))
            && shown.contains("probation 2s passed"),
        "{shown}"
    );
    deploy_program(&sb, TESTD_PROBATION, "TESTD_PANIC_AFTER_STARTED_MS=500");
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("into its probation (status 101)"), "{shown}");
    assert!(wait_until(T, || sb.get("/").ok() == Some(second)));
    assert!(wait_until(T, || sb.pid_in_file() == Some(second)));
    // The fix: runsv's next start takes over from the old generation.
    deploy_program(&sb, TESTD_PROBATION, "");
    let out = tool(&["restart", path(&sb.pid_file())]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let fixed = sb.get("/").unwrap();
    assert_ne!(fixed, second);
    // From the old generation, or from a bad one runsv started again that
    // was on probation when the tool asked (the restart then waits for it).
    assert!(shown.contains(&format!(" -> {fixed} in ")), "{shown}");
    drop(runsv);
    let _ = std::fs::remove_dir_all(sb.dir.join("service/supervise"));
}

/// At most one generation is on probation: a restart asked during one
/// waits for it to pass, then begins.
#[test]
fn a_restart_asked_during_a_probation_waits_for_it_then_begins() {
    let sb = Sandbox::new("cli-probation-queue");
    deploy_program(&sb, TESTD_PROBATION, "");
    let _respawn = Respawn::start(&sb);
    let first = sb.wait_event("ready", &[], T);
    assert!(wait_until(T, || roles(&sb).0 == [(first, "serving".into(), true)]));
    let one = restart_in_background(&sb, &["--spawn", "never"]);
    let second = sb.wait_event("ready", &[first], T);
    assert!(roles(&sb).0.contains(&(second, "probation".into(), true)));
    // Asked of the generation on probation: it waits for the probation.
    let two = restart_in_background(&sb, &["--spawn", "never"]);
    let third = sb.wait_event("ready", &[first, second], T);
    assert!(
        sb.count("shutdown-request-handler", second) == 1,
        "the second generation prepared its restart once"
    );
    let (code, shown) = finished(one);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains(&format!("{first} -> {second} in ")),
        "{shown}"
    );
    let (code, shown) = finished(two);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("is on probation until"), "{shown}");
    assert!(
        shown.contains(&format!("{second} -> {third} in "))
            && shown.contains("probation 2s passed"),
        "{shown}"
    );
    wait_dead(first, T);
    wait_dead(second, T);
    sb.assert_pid_file(Some(third));
    assert_eq!(sb.get("/").unwrap(), third);
}

//! End to end under the real supervisors: daemontools, runit, s6 and
//! supervisord, each in a temporary service directory, loopback only.
//!
//! For each: 10 restarts with the supervisor's own command under load
//! (nothing refused or reset, slow requests complete, exactly one
//! generation alive at the end and named by the pid file), a stop (graceful
//! drain, nothing left running within handover_timeout plus the drain), and
//! a crash of the daemon (restarted, the exit status reaches the
//! supervisor).
//!
//! In CI (`CI` set) a missing supervisor fails the test; elsewhere the test
//! prints `NOT RUN` and passes.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Daemontools,
    Runit,
    S6,
    Supervisord,
}

impl Kind {
    fn binaries(self) -> &'static [&'static str] {
        match self {
            Kind::Daemontools => &["supervise", "svc"],
            Kind::Runit => &["runsv", "sv"],
            Kind::S6 => &["s6-supervise", "s6-svc"],
            Kind::Supervisord => &["supervisord", "supervisorctl"],
        }
    }
}

#[track_caller]
fn installed(kind: Kind) -> bool {
    let missing: Vec<_> = kind.binaries().iter().filter(|b| !in_path(b)).collect();
    if missing.is_empty() {
        return true;
    }
    not_run(&format!(
        "{kind:?}: {missing:?} not installed (apt-get install daemontools runit s6 supervisor)"
    ));
    false
}

/// A supervisor running one service made of testd, in the sandbox.
struct Supervised {
    kind: Kind,
    service: PathBuf,
    conf: PathBuf,
    /// Killed with its group, every generation included, on drop.
    _process: GroupGuard,
}

impl Supervised {
    fn start(kind: Kind, sb: &Sandbox, extra_env: &[(&str, &str)]) -> Supervised {
        let service = sb.dir.join("service");
        std::fs::create_dir_all(&service).unwrap();
        let mut env = format!(
            "TESTD_PID_FILE='{}' TESTD_ADDR='127.0.0.1:{}' TESTD_EVENTS='{}'",
            sb.pid_file().display(),
            sb.port,
            sb.events_file().display()
        );
        for (k, v) in extra_env {
            env += &format!(" {k}='{v}'");
        }
        let stderr = sb.dir.join("output-service");
        let run = format!(
            "#!/bin/sh\nexec env {env} '{}' 2>>'{}'\n",
            TESTD,
            stderr.display()
        );
        let run_path = service.join("run");
        std::fs::write(&run_path, &run).unwrap();
        set_executable(&run_path);
        let conf = sb.dir.join("supervisord.conf");
        let mut command = match kind {
            Kind::Daemontools => {
                let mut c = Command::new("supervise");
                c.arg(&service);
                c
            }
            Kind::Runit | Kind::S6 => {
                // runsv and s6-supervise report the exit status to
                // ./finish: record it.
                let finish = service.join("finish");
                std::fs::write(
                    &finish,
                    format!(
                        "#!/bin/sh\necho \"finish $1 $2\" >> '{}'\n",
                        sb.dir.join("exits").display()
                    ),
                )
                .unwrap();
                set_executable(&finish);
                let program = if kind == Kind::Runit {
                    "runsv"
                } else {
                    "s6-supervise"
                };
                let mut c = Command::new(program);
                c.arg(&service);
                c
            }
            Kind::Supervisord => {
                let text = format!(
                    "[supervisord]\nnodaemon=true\nlogfile={dir}/supervisord.log\npidfile={dir}/supervisord.pid\n\
                     [unix_http_server]\nfile={dir}/supervisor.sock\n\
                     [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
                     [supervisorctl]\nserverurl=unix://{dir}/supervisor.sock\n\
                     [program:testd]\ncommand={run}\nautorestart=true\nstartsecs=0\nstartretries=100\nstopsignal=TERM\nstopwaitsecs=30\n",
                    dir = sb.dir.display(),
                    run = run_path.display()
                );
                std::fs::write(&conf, text).unwrap();
                let mut c = Command::new("supervisord");
                c.arg("-n").arg("-c").arg(&conf);
                c
            }
        };
        command.current_dir(&sb.dir);
        let process = GroupGuard::spawn(&mut command, &sb.dir.join("output-supervisor"));
        Supervised {
            kind,
            service,
            conf,
            _process: process,
        }
    }

    fn control(&self, action: &str) {
        let status = match (self.kind, action) {
            (Kind::Daemontools, "restart") => {
                Command::new("svc").arg("-t").arg(&self.service).status()
            }
            (Kind::Daemontools, "stop") => {
                Command::new("svc").arg("-d").arg(&self.service).status()
            }
            (Kind::Runit, "restart") => Command::new("sv").arg("term").arg(&self.service).status(),
            (Kind::Runit, "stop") => Command::new("sv")
                .args(["-w", "1", "down"])
                .arg(&self.service)
                .status(),
            (Kind::S6, "restart") => Command::new("s6-svc").arg("-t").arg(&self.service).status(),
            (Kind::S6, "stop") => Command::new("s6-svc").arg("-d").arg(&self.service).status(),
            (Kind::Supervisord, "restart") => Command::new("supervisorctl")
                .arg("-c")
                .arg(&self.conf)
                .args(["restart", "testd"])
                .stdout(Stdio::null())
                .status(),
            (Kind::Supervisord, "stop") => Command::new("supervisorctl")
                .arg("-c")
                .arg(&self.conf)
                .args(["stop", "testd"])
                .stdout(Stdio::null())
                .status(),
            _ => unreachable!(),
        };
        // runit's `sv -w 1 down` reports a timeout while the launcher has
        // already gone; the effect is checked by the caller.
        let _ = status.expect("supervisor control command");
    }

    /// The supervisor's control socket or control fifo is ready.
    fn wait_ready(&self, sb: &Sandbox) {
        let ready = match self.kind {
            Kind::Supervisord => wait_until(T, || sb.dir.join("supervisor.sock").exists()),
            _ => wait_until(T, || self.service.join("supervise/control").exists()),
        };
        assert!(ready, "{:?} did not come up: {}", self.kind, sb.output());
    }
}

fn alive_daemons(sb: &Sandbox) -> Vec<i32> {
    sb.daemons().into_iter().filter(|p| alive(*p)).collect()
}

/// New-connection and slow-request clients, counting failures.
fn load(
    port: u16,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    let mut threads = Vec::new();
    for path in ["/", "/", "/?delay=1500", "/?delay=1500"] {
        let (stop, ok) = (stop.clone(), ok.clone());
        threads.push(std::thread::spawn(move || {
            let mut errors = Vec::new();
            for _ in 0..50_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match get(port, path, Duration::from_secs(15)) {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => errors.push(format!("{path}: {e}")),
                }
            }
            errors
        }));
    }
    threads
}

fn restarts_under_load(kind: Kind) {
    if !installed(kind) {
        return;
    }
    let sb = Sandbox::new(&format!("{kind:?}-restart"));
    let sup = Supervised::start(kind, &sb, &[]);
    sup.wait_ready(&sb);
    let first = sb.wait_event("ready", &[], T);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let threads = load(sb.port, stop.clone(), ok.clone());
    let mut previous = first;
    for i in 0..10 {
        let served_before = ready_daemons(&sb);
        sup.control("restart");
        // The next generation serves, the previous one is gone.
        let next = sb.wait_event("ready", &served_before, T);
        wait_dead(previous, T);
        assert!(alive(next), "restart {i}");
        previous = next;
    }
    stop.store(true, Ordering::SeqCst);
    let errors: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(ok.load(Ordering::SeqCst) > 0);
    assert!(errors.is_empty(), "{kind:?}: failed requests: {errors:?}");
    assert!(
        wait_until(T, || alive_daemons(&sb) == [previous]),
        "one generation alive: {:?}",
        alive_daemons(&sb)
    );
    sb.assert_pid_file(Some(previous));
    assert_eq!(sb.get("/").unwrap(), previous);
}

/// Every daemon that has said "ready" so far.
fn ready_daemons(sb: &Sandbox) -> Vec<i32> {
    sb.events()
        .into_iter()
        .filter(|(w, _)| w == "ready")
        .map(|(_, p)| p)
        .collect()
}

fn stop_drains(kind: Kind) {
    if !installed(kind) {
        return;
    }
    let sb = Sandbox::new(&format!("{kind:?}-stop"));
    let sup = Supervised::start(kind, &sb, &[]);
    sup.wait_ready(&sb);
    let daemon = sb.wait_event("ready", &[], T);
    let port = sb.port;
    let slow = std::thread::spawn(move || get(port, "/?delay=1000", T));
    std::thread::sleep(Duration::from_millis(100));
    let stopped = Instant::now();
    sup.control("stop");
    wait_dead(daemon, T);
    // Documented: up to handover_timeout (3 s for testd) plus the drain.
    assert!(
        stopped.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(
        slow.join().unwrap().unwrap(),
        daemon,
        "in-flight request completed"
    );
    assert_eq!(sb.count("shutdown-handler", daemon), 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive_daemons(&sb).is_empty(), "nothing left running");
}

fn crash_is_restarted(kind: Kind) {
    if !installed(kind) {
        return;
    }
    let sb = Sandbox::new(&format!("{kind:?}-crash"));
    let sup = Supervised::start(kind, &sb, &[]);
    sup.wait_ready(&sb);
    let daemon = sb.wait_event("ready", &[], T);
    let _ = sb.get("/exit?code=3");
    let next = sb.wait_event("ready", &[daemon], T);
    assert_ne!(next, daemon);
    assert_eq!(sb.get("/").unwrap(), next);
    // What the supervisor saw of the exit.
    match kind {
        Kind::Runit | Kind::S6 => {
            let exits = std::fs::read_to_string(sb.dir.join("exits")).unwrap_or_default();
            assert!(
                exits.lines().any(|l| l.starts_with("finish 3")),
                "finish got: {exits:?}"
            );
        }
        Kind::Supervisord => {
            let log_has_status = wait_until(T, || {
                std::fs::read_to_string(sb.dir.join("supervisord.log"))
                    .unwrap_or_default()
                    .contains("exit status 3")
            });
            assert!(log_has_status, "supervisord logged the exit status");
        }
        // daemontools keeps no exit status; the restart is what it sees.
        Kind::Daemontools => {}
    }
    signal(next, Signal::SIGKILL);
    let third = sb.wait_event("ready", &[daemon, next], T);
    assert_eq!(sb.get("/").unwrap(), third);
}

macro_rules! supervisor_tests {
    ($($module:ident => $kind:expr),*) => {$(
        mod $module {
            #[test]
            fn restarts_under_load() {
                super::restarts_under_load($kind)
            }
            #[test]
            fn stop_drains() {
                super::stop_drains($kind)
            }
            #[test]
            fn crash_is_restarted() {
                super::crash_is_restarted($kind)
            }
        }
    )*};
}

supervisor_tests! {
    daemontools => super::Kind::Daemontools,
    runit => super::Kind::Runit,
    s6 => super::Kind::S6,
    supervisord => super::Kind::Supervisord
}

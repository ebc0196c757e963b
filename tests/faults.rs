//! The fault suite: one test per row of the fault table in the README's
//! hazards section. Real processes, real signals, loopback only.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);

fn ready(sb: &Sandbox, older: &[i32]) -> (Launcher, i32) {
    let launcher = sb.start();
    let daemon = sb.wait_event("ready", older, T);
    (launcher, daemon)
}

/// Clients that keep making requests on new connections until stopped;
/// counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(port: u16, clients: usize, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    // Bounded: at most 20k requests or until stopped.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match get(port, path, Duration::from_secs(15)) {
                            Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                errors.push(e.to_string());
                                failed.fetch_add(1, Ordering::SeqCst)
                            }
                        };
                    }
                    errors
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

#[test]
fn a_crashing_daemon_is_passed_on_and_restarted() {
    for (crash, expect_code, expect_signal) in [
        ("panic", Some(101), None),
        ("exit3", Some(3), None),
        ("abort", None, Some(libc::SIGABRT)),
    ] {
        let sb = Sandbox::new("crash");
        let mut a = sb.start_with({
            let mut c = sb.command();
            c.env("TESTD_CRASH", crash);
            c
        });
        let status = a.wait(T);
        assert_eq!(status.code(), expect_code, "{crash}: {status:?}");
        assert_eq!(exit_signal(status), expect_signal, "{crash}: {status:?}");
        // The supervisor starts it again; this time it comes up.
        let (_b, daemon) = ready(&sb, &[]);
        assert_eq!(sb.get("/").unwrap(), daemon);
    }
    let sb = Sandbox::new("crash-kill");
    let (mut a, daemon) = ready(&sb, &[]);
    signal(daemon, Signal::SIGKILL);
    assert_eq!(exit_signal(a.wait(T)), Some(libc::SIGKILL));
    let (_b, next) = ready(&sb, &[daemon]);
    assert_eq!(sb.get("/").unwrap(), next);
}

#[test]
fn ten_restart_requests_within_a_second_leave_one_generation() {
    let sb = Arc::new(Sandbox::new("rapid"));
    let (first, first_daemon) = ready(&sb, &[]);
    let load = Load::start(sb.port, 3, "/?delay=20");

    // The supervisor: start a new launcher as soon as the current one exits.
    let current = Arc::new(std::sync::Mutex::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (sb, current, stop) = (sb.clone(), current.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut restarts = 0;
            while !stop.load(Ordering::SeqCst) && restarts < 50 {
                let exited = current.lock().unwrap().child.try_wait().unwrap().is_some();
                if exited {
                    *current.lock().unwrap() = sb.start();
                    restarts += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    for _ in 0..10 {
        let pid = current.lock().unwrap().pid;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the last generation come up, then stop restarting.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    supervisor.join().unwrap();

    assert!(
        wait_until(T, || sb.daemons().iter().filter(|p| alive(**p)).count()
            == 1),
        "one generation alive at the end; alive: {:?}",
        sb.daemons()
            .iter()
            .filter(|p| alive(**p))
            .collect::<Vec<_>>()
    );
    let (ok, failed, errors) = load.finish();
    let survivor = *sb.daemons().iter().find(|p| alive(**p)).unwrap();
    assert_ne!(survivor, first_daemon);
    assert_eq!(sb.get("/").unwrap(), survivor, "the survivor serves");
    sb.assert_pid_file(Some(survivor));
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests lost: {errors:?}");
}

#[test]
fn a_new_generation_that_keeps_crashing_leaves_the_old_one_serving() {
    let sb = Sandbox::new("newcrash");
    let (mut a, old) = ready(&sb, &[]);
    a.signal(Signal::SIGTERM);
    assert!(a.wait(T).success());
    let detached_at = Instant::now();
    let mut crashes = 0;
    // handover_timeout is 3 s: crash for 2 s, checking the old one serves.
    while detached_at.elapsed() < Duration::from_secs(2) {
        let mut b = sb.start_with({
            let mut c = sb.command();
            c.env("TESTD_CRASH", "exit3");
            c
        });
        assert_eq!(b.wait(T).code(), Some(3));
        crashes += 1;
        assert_eq!(sb.get("/").unwrap(), old);
    }
    assert!(crashes > 1);
    // Then it shuts down gracefully on its own.
    wait_dead(old, T);
    assert!(detached_at.elapsed() >= Duration::from_millis(2900));
    assert_eq!(sb.count("shutdown-handler", old), 1);
    assert_eq!(sb.count("main-returns", old), 1);
    sb.assert_pid_file(None);
}

#[test]
fn a_new_generation_slower_than_handover_timeout_gets_the_queued_requests() {
    // Documented behaviour: the old generation stops at handover_timeout;
    // the listener it handed over keeps queueing connections until the new
    // generation serves them: slower answers, nothing refused.
    let sb = Sandbox::new("slow");
    let (mut a, old) = ready(&sb, &[]);
    a.signal(Signal::SIGTERM);
    assert!(a.wait(T).success());
    let _b = sb.start_with({
        let mut c = sb.command();
        c.env("TESTD_START_DELAY_MS", "5000");
        c
    });
    let new = sb.wait_event("start", &[old], T);
    wait_dead(old, T);
    assert_eq!(sb.count("shutdown-handler", old), 1);
    // Between the old one's exit and the new one's start: queued, answered.
    assert_eq!(sb.count("ready", new), 0);
    assert_eq!(sb.get("/").unwrap(), new);
    sb.assert_pid_file(Some(new));
}

#[test]
fn a_hanging_shutdown_handler_is_cut_at_shutdown_timeout() {
    let sb = Sandbox::new("hang").env("TESTD_HANG_HANDLER", "1");
    let (mut a, daemon) = ready(&sb, &[]);
    let stopped = Instant::now();
    signal(daemon, Signal::SIGTERM);
    let status = a.wait(T);
    assert_eq!(status.code(), Some(1));
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(12),
        "{took:?}"
    );
    let output = sb.output();
    assert!(
        output.contains("shutdown handler testd::drain_handler"),
        "log line names the handler: {output}"
    );
}

/// A process of the test's own that must survive: a `sleep` in a process
/// group of its own, killed on drop.
struct Bystander(std::process::Child);

impl Bystander {
    fn new() -> Bystander {
        use std::os::unix::process::CommandExt;
        Bystander(
            std::process::Command::new("sleep")
                .arg("60")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_pid_file_contents_never_signal_anyone() {
    let bystander = Bystander::new();
    let start_time = std::fs::read_to_string(format!("/proc/{}/stat", bystander.pid()))
        .unwrap()
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let p = bystander.pid();
    let contents = [
        String::new(),
        "garbage\n".into(),
        "\0\u{1}\u{7f}\n".into(),
        format!("-{p}\n"),
        "-1\n".into(),
        "0\n".into(),
        "1\n".into(),
        "99999999999\n".into(),
        "4194305\n".into(),
        format!("{}\n", std::process::id()),
        format!("{p}\n"),
        format!("{p}\nseamless-v1 newest {p} 1 {}", boot_id.trim()),
        format!("{p}\nseamless-v1 newest {p} {start_time} not-this-boot"),
    ];
    for content in contents {
        let sb = Sandbox::new("badpid");
        std::fs::write(sb.pid_file(), &content).unwrap();
        let (_a, daemon) = ready(&sb, &[]);
        // After the handshake, which runs just after started().
        sb.assert_pid_file(Some(daemon));
        assert!(alive(p), "pid file {content:?} got the bystander killed");
        assert_eq!(sb.get("/").unwrap(), daemon, "{content:?}");
    }
}

#[test]
fn a_symlink_planted_at_the_pid_file_path_is_not_followed() {
    let sb = Sandbox::new("symlink");
    let precious = sb.dir.join("precious");
    std::fs::write(&precious, "do not touch\n").unwrap();
    std::os::unix::fs::symlink(&precious, sb.pid_file()).unwrap();
    let (_a, daemon) = ready(&sb, &[]);
    // The handshake runs just after started(): wait for it first.
    sb.assert_pid_file(Some(daemon));
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "do not touch\n"
    );
    assert!(!sb
        .pid_file()
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn an_unusable_pid_file_location_fails_at_start_up() {
    let sb = Sandbox::new("unwritable");
    let file = sb.dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    for path in [
        sb.dir.join("missing/dir/testd.pid"),
        file.join("testd.pid"),
        "/proc/seamless-test.pid".into(),
    ] {
        let mut c = sb.command();
        c.env("TESTD_PID_FILE", &path);
        let mut a = sb.start_with(c);
        assert_eq!(a.wait(T).code(), Some(1), "{}", path.display());
        let output = sb.output();
        assert!(
            output.contains(&path.display().to_string()),
            "names the path: {output}"
        );
        assert!(sb.events().is_empty(), "no user code ran");
    }
}

#[test]
fn run_plain_is_the_chosen_fallback_for_an_unusable_location() {
    let sb = Sandbox::new("runplain");
    let path = sb.dir.join("missing/dir/plaind.pid");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_plaind"))
        .env("TESTD_PID_FILE", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // User code ran in the very process that was started: no launcher.
    assert_eq!(stdout.trim(), format!("ran pid {pid}"));
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("running as a plain process"), "{stderr}");
}

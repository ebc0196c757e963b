//! End to end under a real systemd. Each test boots systemd in a container
//! over the machine's own root (`systemd-nspawn --directory=/
//! --volatile=yes --boot`), installs the README's unit (`Type=notify`,
//! `KillMode=process`, `Restart=always`, `RestartSec=0`) for `testd`,
//! drives it with `systemctl` (through `nsenter`), and asserts both what
//! systemd reports (`systemctl show`, `systemctl status`, the journal) and
//! what clients on 127.0.0.1 see (the container shares the machine's
//! network): wrk and new-connection loops, counting every failure.
//!
//! The container sees the built test programs read-only at `/opt/x`. Its
//! processes live in a pid namespace of their own: the pids that systemd
//! and testd report are the container's, and are looked up through
//! `/proc/<its pid 1>/root/proc`. The [`Container`] guard SIGKILLs the
//! container's pid 1, which ends every process in it, however the test
//! ends; a watchdog does the same should the test process itself be
//! killed. The tests take turns: one container at a time.
//!
//! Needs root, `systemd-nspawn` (Debian: `systemd-container`), `nsenter`
//! and `wrk`. In CI (`CI` set) a missing tool or a container that does not
//! boot fails the test; elsewhere it prints `NOT RUN` (the reason) and passes.
//!
//! Run with `--nocapture` to see what systemd reported in each scenario.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{first_pid, free_port, in_path, wait_for_event, wait_until, TESTD};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use seamless_loadkit::wrk;

const T: Duration = Duration::from_secs(20);
/// Where the container sees the directory that holds `testd`.
const BIN_DIR: &str = "/opt/x";
/// testd's `handover_timeout`: how long a detached generation without a
/// successor keeps serving.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// One container at a time: each test boots its own, and load tests on a
/// small machine should not compete with another container's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// In CI: fail. Elsewhere: say loudly that the test did not run.
#[track_caller]
fn skip(message: &str) {
    common::not_run(message);
}

// ------------------------------------------------------------ container

/// A booted systemd in a container, killed on drop.
struct Container {
    nspawn: Child,
    /// The container's pid 1, as the machine sees it.
    init: Option<i32>,
    watchdog: Option<Child>,
    dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Container {
    /// Boots a container, or returns `None` (after saying why) where
    /// systemd cannot run outside CI.
    fn boot(tag: &str) -> Option<Container> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<_> = ["systemd-nspawn", "nsenter", "wrk"]
            .into_iter()
            .filter(|p| !in_path(p))
            .collect();
        if !missing.is_empty() {
            skip(&format!(
                "{missing:?} not installed (apt-get install systemd systemd-container wrk)"
            ));
            return None;
        }
        if !nix::unistd::geteuid().is_root() {
            skip("systemd-nspawn needs root");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("seamless-systemd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin_dir = Path::new(TESTD).parent().unwrap();
        let log = std::fs::File::create(dir.join("nspawn.log")).unwrap();
        let spawned = Command::new("systemd-nspawn")
            .args([
                "--directory=/",
                "--volatile=yes",
                "--boot",
                "--register=no",
                "--keep-unit",
                &format!("--machine=seamless-{}-{n}", std::process::id()),
                &format!("--bind-ro={}:{BIN_DIR}", bin_dir.display()),
                "systemd.firstboot=off",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn();
        let nspawn = match spawned {
            Ok(child) => child,
            Err(e) => {
                skip(&format!("cannot run systemd-nspawn: {e}"));
                return None;
            }
        };
        let mut container = Container {
            nspawn,
            init: None,
            watchdog: None,
            dir,
            _turn: turn,
        };
        let nspawn_pid = container.nspawn.id();
        // nspawn's child that runs systemd is the container's pid 1.
        wait_until(T, || {
            container.init =
                std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .find(|p: &i32| {
                        std::fs::read_to_string(format!("/proc/{p}/comm"))
                            .is_ok_and(|c| c == "systemd\n")
                    });
            container.init.is_some()
        });
        let Some(init) = container.init else {
            skip(&format!(
                "systemd did not start in a container: {}",
                container.log()
            ));
            return None;
        };
        // Should this process be killed, the container goes too.
        container.watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; kill -KILL "$1""#)
            .arg(std::process::id().to_string())
            .arg(init.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        let mut state = String::new();
        let booted = wait_until(Duration::from_secs(60), || {
            state = container.systemctl(&["is-system-running"]).stdout;
            matches!(state.trim(), "running" | "degraded")
        });
        if !booted {
            skip(&format!(
                "the container did not boot (is-system-running: {state:?}): {}",
                container.log()
            ));
            return None;
        }
        Some(container)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nspawn.log")).unwrap_or_default()
    }

    fn init(&self) -> i32 {
        self.init.expect("booted")
    }

    /// `program` run inside the container.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.init().to_string(), "-a", program])
            .stdin(Stdio::null());
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> Ran {
        let out = self
            .command(program)
            .args(args)
            .output()
            .expect("run nsenter");
        Ran::from(out)
    }

    fn systemctl(&self, args: &[&str]) -> Ran {
        self.run("systemctl", args)
    }

    /// A path inside the container, as the machine sees it.
    fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.init()))
    }

    /// A process of the container (by its pid there) exists and is not a
    /// zombie.
    fn alive(&self, pid: i32) -> bool {
        let Ok(stat) = std::fs::read_to_string(self.path(&format!("/proc/{pid}/stat"))) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("X");
        state != "Z" && state != "X"
    }

    fn wait_dead(&self, pid: i32, timeout: Duration) {
        assert!(
            wait_until(timeout, || !self.alive(pid)),
            "process {pid} of the container still alive after {timeout:?}"
        );
    }

    /// Sends `signal` (a name: "TERM", "KILL") to a process of the
    /// container.
    fn kill(&self, pid: i32, signal: &str) {
        let ran = self.run("kill", &["-s", signal, &pid.to_string()]);
        assert!(ran.ok, "kill -s {signal} {pid}: {}", ran.stderr);
    }

    /// Writes a unit file and reloads systemd.
    fn install(&self, file: &str, text: &str) {
        let dir = self.path("/run/systemd/system");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        let ran = self.systemctl(&["daemon-reload"]);
        assert!(ran.ok, "daemon-reload: {}", ran.stderr);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let nspawn = self.nspawn.id() as i32;
        if let Some(init) = self.init {
            // Still nspawn's child (nspawn is not reaped yet, so its pid is
            // not reused): ending the pid namespace's init ends everything
            // in it.
            let parent = std::fs::read_to_string(format!("/proc/{init}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<i32>()
                        .ok()
                });
            if parent == Some(nspawn) {
                let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
            }
        }
        let exited = wait_until(Duration::from_secs(10), || {
            matches!(self.nspawn.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = kill(Pid::from_raw(-nspawn), Signal::SIGKILL);
            let _ = self.nspawn.wait();
        }
        if let Some(watchdog) = &mut self.watchdog {
            let _ = kill(Pid::from_raw(-(watchdog.id() as i32)), Signal::SIGKILL);
            let _ = watchdog.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "container log kept: {}",
                self.dir.join("nspawn.log").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What a command run in the container did.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Ran {
    fn from(out: Output) -> Ran {
        Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

// ----------------------------------------------------------------- units

/// A service unit in the container, on a port of its own.
struct Unit<'c> {
    c: &'c Container,
    name: String,
    port: u16,
}

/// The README's unit.
const README_UNIT: &str = "Type=notify
NotifyAccess=main
KillMode=process
Restart=always
RestartSec=0
";

impl<'c> Unit<'c> {
    /// The README's unit running testd, with `extra` lines for
    /// `[Service]` (later lines win; `Environment=` lines add up).
    fn testd(c: &'c Container, name: &str, extra: &str) -> Unit<'c> {
        let port = free_port();
        let run = format!("/run/{name}");
        std::fs::create_dir_all(c.path(&run)).unwrap();
        c.install(
            &format!("{name}.service"),
            &format!(
                "[Service]\nExecStart={BIN_DIR}/testd\n\
                 Environment=TESTD_PID_FILE={run}/testd.pid TESTD_ADDR=127.0.0.1:{port} TESTD_EVENTS={run}/events\n\
                 {README_UNIT}{extra}"
            ),
        );
        Unit {
            c,
            name: name.to_owned(),
            port,
        }
    }

    fn service(&self) -> String {
        format!("{}.service", self.name)
    }

    /// `systemctl VERB` on the service; returns what it did and how long
    /// it took.
    fn systemctl(&self, verb: &str) -> (Ran, Duration) {
        let began = Instant::now();
        let ran = self.c.systemctl(&[verb, &self.service()]);
        (ran, began.elapsed())
    }

    fn systemctl_ok(&self, verb: &str) -> Duration {
        let (ran, took) = self.systemctl(verb);
        assert!(
            ran.ok,
            "systemctl {verb} {}: {}\njournal:\n{}",
            self.service(),
            ran.stderr,
            self.journal()
        );
        took
    }

    fn show(&self, props: &[&str]) -> Props {
        show(self.c, &self.service(), props)
    }

    fn main_pid(&self) -> i32 {
        self.show(&["MainPID"]).int("MainPID")
    }

    fn journal(&self) -> String {
        journal(self.c, &self.service())
    }

    /// Waits until the journal holds `line`; returns the journal.
    fn wait_journal(&self, line: &str) -> String {
        let mut text = String::new();
        let found = wait_until(T, || {
            text = self.journal();
            text.lines().any(|l| l.contains(line))
        });
        assert!(
            found,
            "no {line:?} in the journal of {}:\n{text}",
            self.name
        );
        text
    }

    /// Every event line testd wrote, as (what, pid in the container).
    fn events(&self) -> Vec<(String, i32)> {
        let text = std::fs::read_to_string(self.c.path(&format!("/run/{}/events", self.name)))
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (what, pid) = l.rsplit_once(' ')?;
                Some((what.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    /// Waits for an event from a process not in `except`; returns its pid.
    fn wait_event(&self, what: &str, except: &[i32]) -> i32 {
        wait_for_event(T, what, except, || self.events()).unwrap_or_else(|| {
            panic!(
                "no {what:?} event from {} within {T:?}; events: {:?}\njournal:\n{}",
                self.name,
                self.events(),
                self.journal()
            )
        })
    }

    fn count(&self, what: &str, pid: i32) -> usize {
        self.events()
            .iter()
            .filter(|(w, p)| w == what && *p == pid)
            .count()
    }

    /// Every pid that wrote a `start` event: every daemon of the unit.
    fn daemons(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .events()
            .into_iter()
            .filter(|(w, _)| w == "start")
            .map(|(_, p)| p)
            .collect();
        pids.dedup();
        pids
    }

    fn pid_in_file(&self) -> Option<i32> {
        first_pid(&self.c.path(&format!("/run/{}/testd.pid", self.name)))
    }

    /// How many processes the unit's control group holds (0 when it is
    /// gone), whichever cgroup layout the machine has.
    fn processes_in_cgroup(&self) -> usize {
        [
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup",
        ]
        .iter()
        .map(|root| {
            std::fs::read_to_string(self.c.path(&format!(
                "{root}/system.slice/{}/cgroup.procs",
                self.service()
            )))
            .unwrap_or_default()
            .lines()
            .count()
        })
        .max()
        .unwrap_or(0)
    }

    /// Nothing of the unit is left: no process in its cgroup, no daemon
    /// alive.
    fn wait_nothing_left(&self, timeout: Duration) {
        let gone = wait_until(timeout, || {
            self.processes_in_cgroup() == 0 && self.daemons().iter().all(|p| !self.c.alive(*p))
        });
        assert!(
            gone,
            "{} left {} processes in its cgroup; daemons alive: {:?}",
            self.name,
            self.processes_in_cgroup(),
            self.daemons()
                .into_iter()
                .filter(|p| self.c.alive(*p))
                .collect::<Vec<_>>()
        );
    }

    /// `GET path` on a new connection; returns testd's pid.
    fn get(&self, path: &str) -> std::io::Result<i32> {
        common::get(self.port, path, T)
    }
}

/// `systemctl show` properties.
struct Props(BTreeMap<String, String>);

impl Props {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    fn int(&self, key: &str) -> i32 {
        self.get(key).parse().unwrap_or(0)
    }
}

impl std::fmt::Display for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(" "))
    }
}

fn show(c: &Container, unit: &str, props: &[&str]) -> Props {
    let ran = c.systemctl(&["show", "-p", &props.join(","), unit]);
    assert!(ran.ok, "systemctl show {unit}: {}", ran.stderr);
    Props(
        ran.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

fn journal(c: &Container, unit: &str) -> String {
    c.run("journalctl", &["-u", unit, "--no-pager", "-o", "cat"])
        .stdout
}

/// The journal's lines that contain one of `needles`, for the report.
fn lines_with<'a>(journal: &'a str, needles: &[&str]) -> Vec<&'a str> {
    journal
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect()
}

// ------------------------------------------------------------------ load

/// wrk, keep-alive connections, until `finish`.
struct Wrk {
    child: Option<Child>,
}

impl Wrk {
    fn start(port: u16) -> Wrk {
        let mut command = Command::new("wrk");
        command
            .args(["-t1", "-c4", "-d120s", "--timeout", "10s"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. wrk dies with the thread
        // that started it, should this test process be killed.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        Wrk {
            child: Some(command.spawn().expect("run wrk")),
        }
    }

    /// Stops wrk (SIGINT makes it print its summary) and reads it.
    fn finish(mut self) -> wrk::Summary {
        let child = self.child.take().unwrap();
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report = wrk::Summary::parse(&text).unwrap_or_default();
        assert!(report.requests > 0, "wrk said: {text}");
        report
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// New-connection clients (plain and slow requests) until stopped.
struct Loops {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Loops {
    fn start(port: u16) -> Loops {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let threads = ["/", "/", "/?delay=300"]
            .into_iter()
            .map(|path| {
                let (stop, ok) = (stop.clone(), ok.clone());
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    for _ in 0..100_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match request(port, path) {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => errors.push(format!("{path}: {e}")),
                        }
                    }
                    errors
                })
            })
            .collect();
        Loops { stop, ok, threads }
    }

    /// Stops the clients; returns the requests answered and every failure.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = std::mem::take(&mut self.threads)
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (self.ok.load(Ordering::SeqCst), errors)
    }
}

impl Drop for Loops {
    /// A failed test stops its clients too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request on a new connection; an answer other than 200 is an error.
fn request(port: u16, path: &str) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), T)?;
    stream.set_read_timeout(Some(T))?;
    (&stream).write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let response = common::http::read_response(&mut BufReader::new(stream))?;
    if response.status != 200 {
        return Err(std::io::Error::other(format!("status {}", response.status)));
    }
    Ok(())
}

// ------------------------------------------------------------- scenarios

/// `systemctl restart` under load; returns the main pids, first to last.
fn restarts_under_load(unit: &Unit<'_>, restarts: usize) -> Vec<i32> {
    let mut mains = vec![unit.main_pid()];
    let wrk = Wrk::start(unit.port);
    let loops = Loops::start(unit.port);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..restarts {
        let took = unit.systemctl_ok("restart");
        let props = unit.show(&["MainPID", "ActiveState", "SubState", "StatusText"]);
        eprintln!("restart {i}: systemctl restart took {took:?}; {props}");
        assert_eq!(props.get("ActiveState"), "active", "{props}");
        let main = props.int("MainPID");
        assert!(
            main > 0 && !mains.contains(&main),
            "a new main pid: {props}"
        );
        mains.push(main);
        // systemd refuses a sixth start within 10 s (StartLimitBurst=5,
        // StartLimitIntervalSec=10s), and each restart is a start.
        std::thread::sleep(Duration::from_millis(2600));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (answered, errors) = loops.finish();
    let wrk = wrk.finish();
    eprintln!(
        "{}: {restarts} restarts; wrk: {} requests, socket errors {:?}, non-2xx {}; new connections: {answered} answered, {} failed",
        unit.name,
        wrk.requests,
        wrk.socket_errors,
        wrk.non_2xx,
        errors.len()
    );
    assert!(
        wrk.failed() == 0 && errors.is_empty(),
        "wrk saw failures: {wrk:?}; new connections failed: {errors:?}"
    );
    assert!(answered > 0);
    // Every earlier launcher is gone; the last one is the main process.
    for old in &mains[..mains.len() - 1] {
        unit.c.wait_dead(*old, T);
    }
    assert_eq!(unit.main_pid(), *mains.last().unwrap());
    mains
}

#[test]
fn restart_under_load() {
    let Some(c) = Container::boot("restart") else {
        return;
    };
    let unit = Unit::testd(&c, "restart", "");
    unit.systemctl_ok("start");
    let first = unit.wait_event("ready", &[]);
    restarts_under_load(&unit, 8);
    // Exactly one daemon serves at the end, named by the pid file.
    let daemons = unit.daemons();
    assert_eq!(daemons.len(), 9, "one daemon per generation: {daemons:?}");
    let last = *daemons.last().unwrap();
    for old in &daemons[..daemons.len() - 1] {
        c.wait_dead(*old, T);
    }
    assert!(wait_until(T, || unit.pid_in_file() == Some(last)));
    assert_eq!(unit.get("/").unwrap(), last);
    // systemd names the detached generation after the program.
    let journal = unit.wait_journal(&format!(
        "Unit process {first} (testd) remains running after unit stopped."
    ));
    assert!(!journal.contains("(exe)"), "{journal}");
    eprintln!(
        "journal:\n{}",
        lines_with(&journal, &["remains running", "left-over"])
            .into_iter()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The axum example under the same restarts: its drain must answer every
/// request, keep-alive ones included.
#[test]
fn axum_restart_under_load() {
    // Examples are built next to the test binaries: target/debug/examples.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples/axum"))
        .unwrap();
    if !example.is_file() {
        skip(&format!(
            "{} is not built (cargo build --example axum)",
            example.display()
        ));
        return;
    }
    let Some(c) = Container::boot("axum") else {
        return;
    };
    let port = free_port();
    let name = "axum";
    std::fs::create_dir_all(c.path("/run/axum")).unwrap();
    c.install(
        "axum.service",
        &format!(
            "[Service]\nExecStart={BIN_DIR}/examples/axum 127.0.0.1:{port} /run/axum/axum.pid\n{README_UNIT}"
        ),
    );
    let unit = Unit {
        c: &c,
        name: name.to_owned(),
        port,
    };
    unit.systemctl_ok("start");
    restarts_under_load(&unit, 8);
    assert!(request(port, "/").is_ok());
}

#[test]
fn start_returns_once_the_daemon_has_started() {
    let Some(c) = Container::boot("ready") else {
        return;
    };
    // A daemon that takes 1.5 s between its start and `started()`.
    let unit = Unit::testd(&c, "slow", "Environment=TESTD_START_DELAY_MS=1500\n");
    std::thread::scope(|s| {
        let start = s.spawn(|| unit.systemctl("start"));
        let daemon = unit.wait_event("start", &[]);
        let during = unit.show(&["ActiveState", "SubState"]);
        let (ran, took) = start.join().unwrap();
        assert!(ran.ok, "{}", ran.stderr);
        // The pid file handshake runs on started() and precedes READY=1.
        assert_eq!(unit.pid_in_file(), Some(daemon), "started() was called");
        let after = unit.show(&["ActiveState", "SubState", "StatusText"]);
        eprintln!(
            "while the daemon starts: {during}; systemctl start returned after {took:?}: {after}"
        );
        assert_eq!(during.get("ActiveState"), "activating", "{during}");
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        assert_eq!(after.get("ActiveState"), "active", "{after}");
        assert_eq!(unit.get("/").unwrap(), daemon);
    });
}

#[test]
fn a_generation_that_never_starts_fails_at_timeout_start_sec() {
    let Some(c) = Container::boot("never") else {
        return;
    };
    let unit = Unit::testd(
        &c,
        "never",
        "Environment=TESTD_NEVER_STARTED=1\nTimeoutStartSec=2s\n",
    );
    let (ran, took) = unit.systemctl("start");
    let props = unit.show(&["ActiveState", "SubState", "NRestarts"]);
    eprintln!(
        "systemctl start: ok={} after {took:?}: {}; then {props}",
        ran.ok,
        ran.stderr.trim()
    );
    assert!(!ran.ok, "systemctl start fails");
    // systemctl words the failure from the job's result, which depends on
    // how far the automatic restart got ("failed because a timeout was
    // exceeded", or plain "failed"): the journal below says why.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let journal = unit.wait_journal("Failed with result 'timeout'.");
    assert!(journal.contains("start operation timed out. Terminating."));
    eprintln!(
        "journal:\n{}",
        lines_with(&journal, &["timed out", "Failed", "remains running"])
            .into_iter()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The timed-out generation received TERM: it detached, and with no
    // successor to call started() it shuts down after handover_timeout.
    let first = unit.daemons()[0];
    c.wait_dead(first, T);
    // Restart=always tries again, and each try fails the same way; once
    // stopped, nothing is left.
    unit.systemctl_ok("stop");
    unit.wait_nothing_left(HANDOVER_TIMEOUT + T);
}

#[test]
fn stop_drains_and_leaves_nothing() {
    let Some(c) = Container::boot("stop") else {
        return;
    };
    let unit = Unit::testd(&c, "stop", "");
    unit.systemctl_ok("start");
    let daemon = unit.wait_event("ready", &[]);
    let port = unit.port;
    let slow = std::thread::spawn(move || common::get(port, "/?delay=1000", T));
    std::thread::sleep(Duration::from_millis(200));
    let began = Instant::now();
    let took = unit.systemctl_ok("stop");
    let props = unit.show(&[
        "MainPID",
        "ActiveState",
        "SubState",
        "Result",
        "ExecMainStatus",
    ]);
    // Detached, the daemon finishes what is in flight.
    c.wait_dead(daemon, HANDOVER_TIMEOUT + T);
    let gone = began.elapsed();
    assert_eq!(slow.join().unwrap().unwrap(), daemon, "in-flight request");
    unit.wait_nothing_left(T);
    eprintln!(
        "systemctl stop returned after {took:?}: {props}; the daemon was gone after {gone:?}"
    );
    assert_eq!(props.get("ActiveState"), "inactive", "{props}");
    assert_eq!(props.get("Result"), "success", "{props}");
    assert_eq!(unit.count("shutdown-handler", daemon), 1);
    let journal = unit.wait_journal(&format!(
        "Unit process {daemon} (testd) remains running after unit stopped."
    ));
    eprintln!(
        "journal:\n{}",
        lines_with(&journal, &["remains running", "Stopped", "Deactivated"]).join("\n")
    );
}

#[test]
fn a_crash_is_recorded_and_restarted() {
    let Some(c) = Container::boot("crash") else {
        return;
    };
    // RestartSec=2s instead of 0: time to read what systemd recorded of
    // the exit before the next start replaces it.
    let unit = Unit::testd(&c, "crash", "RestartSec=2s\n");
    unit.systemctl_ok("start");
    let first = unit.wait_event("ready", &[]);
    let recorded = &[
        "Result",
        "ExecMainCode",
        "ExecMainStatus",
        "SubState",
        "NRestarts",
    ];
    let wait_auto_restart = || {
        let mut props = unit.show(recorded);
        wait_until(T, || {
            props = unit.show(recorded);
            props.get("SubState") == "auto-restart"
        });
        props
    };

    // The daemon exits with status 3: the launcher exits with it.
    let _ = unit.get("/exit?code=3");
    let props = wait_auto_restart();
    eprintln!("daemon exited with 3: {props}");
    assert_eq!(props.get("Result"), "exit-code", "{props}");
    assert_eq!(props.get("ExecMainStatus"), "3", "{props}");
    let second = unit.wait_event("ready", &[first]);
    assert_eq!(unit.get("/").unwrap(), second);

    // The daemon is killed: the launcher dies of the same signal.
    c.kill(second, "KILL");
    let props = wait_auto_restart();
    eprintln!("daemon killed with SIGKILL: {props}");
    assert_eq!(props.get("Result"), "signal", "{props}");
    assert_eq!(props.get("ExecMainStatus"), "9", "{props}");
    let third = unit.wait_event("ready", &[first, second]);
    assert_eq!(unit.get("/").unwrap(), third);
    let props = unit.show(&["ActiveState", "NRestarts"]);
    assert_eq!(props.get("ActiveState"), "active");
    assert_eq!(props.get("NRestarts"), "2");
    let journal = unit.journal();
    eprintln!(
        "journal:\n{}",
        lines_with(
            &journal,
            &["Main process exited", "Failed with", "Scheduled restart"]
        )
        .join("\n")
    );
    assert!(journal.contains("Main process exited, code=exited, status=3/NOTIMPLEMENTED"));
    assert!(journal.contains("Main process exited, code=killed, status=9/KILL"));
}

/// A `.socket` unit activates the service on the first connection; the
/// daemon takes systemd's socket; restarts keep it.
fn socket_activation(named: bool) {
    let tag = if named { "named" } else { "unnamed" };
    let Some(c) = Container::boot(tag) else {
        return;
    };
    let unit = Unit::testd(&c, tag, "");
    let fd_name = if named {
        "FileDescriptorName=web\n"
    } else {
        ""
    };
    c.install(
        &format!("{tag}.socket"),
        &format!("[Socket]\nListenStream=127.0.0.1:{}\n{fd_name}", unit.port),
    );
    let socket = format!("{tag}.socket");
    let ran = c.systemctl(&["start", &socket]);
    assert!(ran.ok, "{}", ran.stderr);
    let props = unit.show(&["ActiveState"]);
    assert_eq!(props.get("ActiveState"), "inactive", "not started yet");
    let listening = show(&c, &socket, &["ActiveState", "SubState"]);
    assert_eq!(listening.get("SubState"), "listening", "{listening}");

    // The first connection starts the service.
    let first = unit.get("/").expect("activated by the first connection");
    let props = unit.show(&["ActiveState", "TriggeredBy", "MainPID"]);
    eprintln!("{tag}: {socket} {listening}; after the first connection: {props}");
    assert_eq!(props.get("ActiveState"), "active");
    assert_eq!(props.get("TriggeredBy"), socket);
    assert_eq!(unit.pid_in_file(), Some(first));

    // Restarts while activated, under load.
    let loops = Loops::start(unit.port);
    let mut served = vec![first];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        unit.systemctl_ok("restart");
        served.push(unit.wait_event("ready", &served));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (answered, errors) = loops.finish();
    let after = show(&c, &socket, &["ActiveState", "SubState"]);
    eprintln!(
        "{tag}: 3 restarts: {answered} requests answered, {} failed; {socket} {after}",
        errors.len()
    );
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert_eq!(after.get("ActiveState"), "active", "{after}");
    let last = *served.last().unwrap();
    for old in &served[..served.len() - 1] {
        c.wait_dead(*old, T);
    }
    assert_eq!(unit.get("/").unwrap(), last);
    assert!(!unit.journal().contains("cannot listen"));
}

#[test]
fn socket_activation_named() {
    socket_activation(true)
}

#[test]
fn socket_activation_unnamed() {
    socket_activation(false)
}

#[test]
fn a_drain_longer_than_timeout_stop_sec_is_kept_alive() {
    let Some(c) = Container::boot("drain") else {
        return;
    };
    let unit = Unit::testd(&c, "drain", "TimeoutStopSec=2s\n");
    unit.systemctl_ok("start");
    let daemon = unit.wait_event("ready", &[]);
    let launcher = unit.main_pid();
    let port = unit.port;
    let slow = std::thread::spawn(move || common::get(port, "/?delay=6000", T));
    std::thread::sleep(Duration::from_millis(300));
    // The daemon begins its graceful shutdown on its own (TERM straight
    // to it): the launcher reports STOPPING=1 and keeps extending the stop
    // timeout while the daemon drains.
    let began = Instant::now();
    c.kill(daemon, "TERM");
    let draining = ["ActiveState", "SubState", "StatusText", "MainPID"];
    let mut props = unit.show(&draining);
    wait_until(T, || {
        props = unit.show(&draining);
        props.get("SubState") == "stop-sigterm"
    });
    eprintln!("draining: {props}");
    assert_eq!(props.get("ActiveState"), "deactivating", "{props}");
    assert_eq!(
        props.get("StatusText"),
        format!("stopping: daemon {daemon} drains")
    );
    // Past TimeoutStopSec, nothing was killed.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(began.elapsed()));
    assert!(c.alive(launcher) && c.alive(daemon));
    let props = unit.show(&draining);
    assert_eq!(props.get("SubState"), "stop-sigterm", "{props}");
    assert_eq!(
        slow.join().unwrap().unwrap(),
        daemon,
        "the slow request completed"
    );
    let drained = began.elapsed();
    c.wait_dead(daemon, T);
    // Restart=always starts the next generation.
    let next = unit.wait_event("ready", &[daemon]);
    let props = unit.show(&["ActiveState", "Result", "NRestarts"]);
    let journal = unit.journal();
    eprintln!(
        "the drain took {drained:?} with TimeoutStopSec=2s; then {props}; journal:\n{journal}"
    );
    assert!(!journal.contains("timed out"), "{journal}");
    assert!(!journal.contains("Killing"), "{journal}");
    assert_eq!(props.get("ActiveState"), "active");
    assert_eq!(props.get("NRestarts"), "1");
    assert_eq!(unit.get("/").unwrap(), next);
}

#[test]
fn status_shows_what_the_launcher_reports() {
    let Some(c) = Container::boot("status") else {
        return;
    };
    let unit = Unit::testd(&c, "status", "");
    unit.systemctl_ok("start");
    let first = unit.wait_event("ready", &[]);
    let launcher = unit.main_pid();
    let status = c.systemctl(&["status", "--no-pager", "--lines=0", &unit.service()]);
    eprintln!("{}", status.stdout);
    assert!(status.stdout.contains("Active: active (running)"));
    assert!(status
        .stdout
        .contains(&format!("Main PID: {launcher} (testd)")));
    assert!(status
        .stdout
        .contains(&format!("Status: \"serving: daemon {first} has started\"")));
    // Both processes go by the program's name.
    let pgrep = c.run("pgrep", &["-x", "testd"]).stdout;
    let pids: Vec<i32> = pgrep
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        pids.contains(&launcher) && pids.contains(&first),
        "pgrep -x testd: {pids:?}"
    );

    unit.systemctl_ok("restart");
    let second = unit.wait_event("ready", &[first]);
    let status = c.systemctl(&["status", "--no-pager", "--lines=0", &unit.service()]);
    eprintln!("{}", status.stdout);
    assert!(status
        .stdout
        .contains(&format!("Status: \"serving: daemon {second} has started\"")));
}

#[test]
fn a_runtime_directory_must_be_preserved_across_restarts() {
    use std::os::unix::fs::MetadataExt;
    let Some(c) = Container::boot("rundir") else {
        return;
    };
    let inode = |unit: &Unit<'_>| {
        std::fs::metadata(c.path(&format!("/run/{}", unit.name)))
            .map(|m| m.ino())
            .expect("the runtime directory")
    };
    // By default systemd removes a RuntimeDirectory= at every restart: a
    // pid file there goes, and the handover endpoint beside it.
    let plain = Unit::testd(&c, "rundir-plain", "RuntimeDirectory=rundir-plain\n");
    plain.systemctl_ok("start");
    let before = inode(&plain);
    plain.systemctl_ok("restart");
    assert_ne!(inode(&plain), before, "the directory was made anew");

    // Preserved across restarts, the handover works as without it.
    let kept = Unit::testd(
        &c,
        "rundir-kept",
        "RuntimeDirectory=rundir-kept\nRuntimeDirectoryPreserve=restart\n",
    );
    kept.systemctl_ok("start");
    let first = kept.wait_event("ready", &[]);
    let before = inode(&kept);
    let loops = Loops::start(kept.port);
    let mut served = vec![first];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        kept.systemctl_ok("restart");
        served.push(kept.wait_event("ready", &served));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (answered, errors) = loops.finish();
    eprintln!(
        "RuntimeDirectoryPreserve=restart: 3 restarts, {answered} requests answered, {} failed",
        errors.len()
    );
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert_eq!(inode(&kept), before, "the directory survived the restarts");
    let last = *served.last().unwrap();
    assert!(wait_until(T, || kept.pid_in_file() == Some(last)));
    for old in &served[..served.len() - 1] {
        c.wait_dead(*old, T);
    }
}

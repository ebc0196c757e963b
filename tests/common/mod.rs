//! The test harness: the test plays the supervisor.
//!
//! A [`Sandbox`] owns a unique temporary directory (pid file, event log,
//! output of each process), a free loopback port, and every process a test
//! starts. Each launcher is started in a process group of its own, and its
//! daemon stays in that group even after it detaches; dropping the sandbox
//! SIGKILLs every group it started and reaps what it can, whatever the test
//! did. The test process is a child subreaper, so detached generations are
//! re-parented to it rather than to init and can be reaped here.

#![allow(dead_code)]

// Not every test reads HTTP/1.1 responses.
#[allow(unused_imports)]
pub(crate) use seamless_loadkit::http1 as http;
pub(crate) mod not_run;
pub(crate) mod runit;

// Each test program uses some of them.
#[allow(unused_imports)]
pub(crate) use not_run::{in_ci, in_path, not_run};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

static SUBREAPER: Once = Once::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(crate) const TESTD: &str = env!("CARGO_BIN_EXE_testd");

pub(crate) struct Sandbox {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    groups: Mutex<Vec<i32>>,
    env: Vec<(String, String)>,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sandbox {
    pub(crate) fn new(name: &str) -> Sandbox {
        SUBREAPER.call_once(|| {
            nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        });
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("seamless-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Sandbox {
            dir,
            port: free_port(),
            groups: Mutex::new(Vec::new()),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every process started from now on.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Sandbox {
        self.env.push((key.into(), value.into()));
        self
    }

    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("testd.pid")
    }

    pub(crate) fn events_file(&self) -> PathBuf {
        self.dir.join("events")
    }

    pub(crate) fn command(&self) -> Command {
        self.command_of(TESTD)
    }

    /// [`command`](Sandbox::command) for another test program.
    pub(crate) fn command_of(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("TESTD_PID_FILE", self.pid_file())
            .env("TESTD_ADDR", format!("127.0.0.1:{}", self.port))
            .env("TESTD_EVENTS", self.events_file())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .current_dir(&self.dir)
            .process_group(0);
        // SAFETY: setrlimit is async-signal-safe; no core files from the
        // processes that tests kill with SIGSEGV and the like.
        unsafe {
            c.pre_exec(|| {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts an example as its command line says, `EXAMPLE ADDR PIDFILE`
    /// (127.0.0.1 and this sandbox's port and pid file), in a process
    /// group of its own.
    pub(crate) fn start_example(&self, program: &Path) -> Launcher {
        let mut c = Command::new(program);
        c.arg(format!("127.0.0.1:{}", self.port))
            .arg(self.pid_file())
            .stdin(Stdio::null())
            .current_dir(&self.dir)
            .process_group(0);
        self.start_with(c)
    }

    /// Waits until the pid file names a generation not in `except` that
    /// `answers_as_itself` (its server answers with its pid): a
    /// generation is up. Panics, with the output, if none is in `timeout`.
    pub(crate) fn wait_generation(
        &self,
        except: &[i32],
        timeout: Duration,
        answers_as_itself: impl Fn(i32) -> bool,
    ) -> i32 {
        let mut pid = None;
        wait_until(timeout, || {
            pid = self
                .pid_in_file()
                .filter(|p| !except.contains(p))
                .filter(|p| answers_as_itself(*p));
            pid.is_some()
        });
        pid.unwrap_or_else(|| panic!("no new generation; output: {}", self.output()))
    }

    /// Starts a launcher, as a supervisor would.
    pub(crate) fn start(&self) -> Launcher {
        self.start_with(self.command())
    }

    pub(crate) fn start_with(&self, mut command: Command) -> Launcher {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = std::fs::File::create(self.dir.join(format!("output-{n}"))).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        let child = command.spawn().expect("spawn testd");
        let pid = child.id() as i32;
        self.groups.lock().unwrap().push(pid);
        Launcher { child, pid }
    }

    /// Every event line as (what, pid).
    pub(crate) fn events(&self) -> Vec<(String, i32)> {
        let text = std::fs::read_to_string(self.events_file()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (what, pid) = l.rsplit_once(' ')?;
                Some((what.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    /// The daemons that started, in order, each once.
    pub(crate) fn daemons(&self) -> Vec<i32> {
        let mut d: Vec<i32> = self
            .events()
            .into_iter()
            .filter(|(w, _)| w == "start")
            .map(|(_, p)| p)
            .collect();
        d.dedup();
        d
    }

    pub(crate) fn count(&self, what: &str, pid: i32) -> usize {
        self.events()
            .iter()
            .filter(|(w, p)| w == what && *p == pid)
            .count()
    }

    /// Waits for an event from a process other than `except`, returns its pid.
    pub(crate) fn wait_event(&self, what: &str, except: &[i32], timeout: Duration) -> i32 {
        wait_for_event(timeout, what, except, || self.events()).unwrap_or_else(|| {
            panic!(
                "no {what:?} event within {timeout:?}; events: {:?}; output: {}",
                self.events(),
                self.output()
            )
        })
    }

    /// What the processes wrote to stdout and stderr.
    pub(crate) fn output(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("output-")
                {
                    out += &std::fs::read_to_string(&p).unwrap_or_default();
                }
            }
        }
        out
    }

    /// The first line of the pid file, parsed.
    pub(crate) fn pid_in_file(&self) -> Option<i32> {
        first_pid(&self.pid_file())
    }

    /// Waits until the pid file's first line names `pid` (or the file is
    /// gone, for `None`): `started()` returns before the handshake runs.
    pub(crate) fn assert_pid_file(&self, pid: Option<i32>) {
        assert!(
            wait_until(Duration::from_secs(10), || self.pid_in_file() == pid),
            "pid file names {:?}, expected {pid:?}",
            self.pid_in_file()
        );
    }

    /// `GET path` on the sandbox's port; returns the answering pid.
    pub(crate) fn get(&self, path: &str) -> std::io::Result<i32> {
        get(self.port, path, Duration::from_secs(10))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let groups = self.groups.lock().unwrap().clone();
        for pgid in &groups {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
        let mut pids: Vec<i32> = self.events().into_iter().map(|(_, p)| p).collect();
        pids.extend(&groups);
        pids.sort();
        pids.dedup();
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_until(Duration::from_secs(2), || !alive(pid));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("sandbox kept for inspection: {}", self.dir.display());
        }
    }
}

pub(crate) struct Launcher {
    pub(crate) child: Child,
    pub(crate) pid: i32,
}

impl Launcher {
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).unwrap();
    }

    /// Waits for the launcher to exit.
    pub(crate) fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "launcher {} still running after {timeout:?}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

pub(crate) fn signal(pid: i32, signal: Signal) {
    kill(Pid::from_raw(pid), signal).unwrap();
}

/// A process is alive when /proc says so and it is not a zombie; a zombie
/// that is our child (or re-parented to us) is reaped on the way.
pub(crate) fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    if state == "Z" || state == "X" {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        return false;
    }
    true
}

pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn wait_dead(pid: i32, timeout: Duration) {
    assert!(
        wait_until(timeout, || !alive(pid)),
        "process {pid} still alive after {timeout:?}"
    );
}

/// One HTTP/1.1 request on a new connection; returns the answering pid.
pub(crate) fn get(port: u16, path: &str, timeout: Duration) -> std::io::Result<i32> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    parse_pid(&body)
}

/// The pid in a whole answer of an example (`Server pid: N` in its body),
/// which must be a 200.
pub(crate) fn example_pid(answer: &str) -> std::io::Result<i32> {
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad answer: {answer:?}")));
    }
    answer
        .lines()
        .find_map(|l| l.strip_prefix("Server pid: "))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no pid in {answer:?}")))
}

pub(crate) fn parse_pid(response: &str) -> std::io::Result<i32> {
    if !response.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad answer: {response:?}")));
    }
    response
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no pid in {response:?}")))
}

pub(crate) fn exit_signal(status: ExitStatus) -> Option<i32> {
    status.signal()
}

pub(crate) fn path_exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

/// A process started in a process group of its own (a supervisor, say):
/// on drop, the whole group, every generation it started included, is
/// SIGKILLed and the process reaped.
pub(crate) struct GroupGuard(pub(crate) Child);

impl GroupGuard {
    /// Starts `command` in a process group of its own, no standard input,
    /// its output to the file `log`.
    pub(crate) fn spawn(command: &mut Command, log: &Path) -> GroupGuard {
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        GroupGuard(child)
    }

    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-(self.0.id() as i32)), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Waits up to `timeout` for an event `what` from a process not in
/// `except`, in the events `events` reads; returns its pid.
pub(crate) fn wait_for_event(
    timeout: Duration,
    what: &str,
    except: &[i32],
    events: impl Fn() -> Vec<(String, i32)>,
) -> Option<i32> {
    let mut found = None;
    wait_until(timeout, || {
        found = events()
            .into_iter()
            .find(|(w, p)| w == what && !except.contains(p))
            .map(|(_, p)| p);
        found.is_some()
    });
    found
}

/// The pid on the first line of the pid file at `path`, if any.
pub(crate) fn first_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Makes a script executable.
pub(crate) fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Raises its flag when dropped: a test's load loops watch the flag, so
/// that they stop even when the test fails before it is done.
pub(crate) struct StopOnDrop(pub(crate) std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The example's executable, built with the profile of this test (cargo
/// builds the examples along with the tests; `cargo test --test
/// frameworks` alone does not, so it is built here).
pub(crate) fn example(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let profile_dir = me.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo");
    assert!(status.success(), "cargo build --example {name} failed");
    assert!(path.is_file(), "no {}", path.display());
    path
}

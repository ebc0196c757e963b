//! The restart-under-load benchmark, and the README's first command.
//!
//! Starts `testd` under a supervisor (daemontools' `supervise` when it is
//! installed, else a minimal built-in respawn loop, and it says which),
//! drives load at it from this process over 127.0.0.1 only, restarts it N
//! times the supervisor's way, and reports per strategy: requests, failures
//! by kind, latency in steady state and inside restart windows, handover
//! times, memory of the launcher and the daemon, and the start-up time the
//! launcher split adds. Prints a table; optionally writes JSON and an SVG
//! plot. Every loop is bounded; it stops by itself.
//!
//! ```text
//! cargo run --release --bin demo                      # handover, 20 restarts
//! cargo run --release --bin demo -- --strategies naive,reuseport,handover \
//!     --restarts 100 --json docs/bench.json --svg docs/bench.svg
//! ```

#[path = "../common/http.rs"]
mod http;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strategy {
    /// seamless disabled: the server drains and exits, the supervisor
    /// starts the next one.
    Naive,
    /// seamless, each generation binds afresh with SO_REUSEPORT.
    Reuseport,
    /// seamless, the listener is handed to the next generation.
    Handover,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Reuseport => "reuseport",
            Strategy::Handover => "handover",
        }
    }
}

struct Args {
    strategies: Vec<Strategy>,
    restarts: usize,
    interval: Duration,
    keepalive: usize,
    newconn: usize,
    slow: usize,
    slow_ms: u64,
    max_requests: u64,
    builtin: bool,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    startup_samples: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        strategies: vec![Strategy::Handover],
        restarts: 20,
        // daemontools' supervise sleeps one second after each start and
        // reads no command meanwhile: restarts closer than that would
        // measure its nap.
        interval: Duration::from_millis(1500),
        keepalive: 4,
        newconn: 2,
        slow: 4,
        slow_ms: 1500,
        max_requests: u64::MAX,
        builtin: false,
        json: None,
        svg: None,
        startup_samples: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--strategies" => {
                a.strategies = value()
                    .split(',')
                    .map(|s| match s {
                        "naive" => Strategy::Naive,
                        "reuseport" => Strategy::Reuseport,
                        "handover" => Strategy::Handover,
                        "all" => Strategy::Handover,
                        other => usage(&format!("unknown strategy {other}")),
                    })
                    .collect();
                if a.strategies == [Strategy::Handover] && std::env::args().any(|x| x == "all") {
                    a.strategies = vec![Strategy::Naive, Strategy::Reuseport, Strategy::Handover];
                }
            }
            "--restarts" => a.restarts = number(&value()),
            "--interval-ms" => a.interval = Duration::from_millis(number(&value())),
            "--keepalive" => a.keepalive = number(&value()),
            "--newconn" => a.newconn = number(&value()),
            "--slow" => a.slow = number(&value()),
            "--slow-ms" => a.slow_ms = number(&value()),
            "--max-requests" => a.max_requests = number(&value()),
            "--builtin-supervisor" => a.builtin = true,
            "--json" => a.json = Some(value().into()),
            "--svg" => a.svg = Some(value().into()),
            "--startup-samples" => a.startup_samples = number(&value()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn number<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: demo [--strategies naive,reuseport,handover|all] [--restarts N] \
         [--interval-ms MS] [--keepalive N] [--newconn N] [--slow N] [--slow-ms MS] \
         [--max-requests N] [--builtin-supervisor] [--json FILE] [--svg FILE] [--startup-samples N]"
    );
    std::process::exit(2)
}

// ---------------------------------------------------------------- outcomes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Outcome {
    Ok,
    Refused,
    Reset,
    Timeout,
    Non2xx,
    /// A keep-alive connection the server closed between two requests:
    /// the request was sent into a closing connection and got no byte
    /// back. Clients retry these (they are idempotent); counted apart.
    KeepaliveRace,
    /// A slow request that got no answer (reset while queued on a closing
    /// listener, or cut in flight).
    SlowCut,
}

const KINDS: [Outcome; 6] = [
    Outcome::Refused,
    Outcome::Reset,
    Outcome::Timeout,
    Outcome::Non2xx,
    Outcome::KeepaliveRace,
    Outcome::SlowCut,
];

fn kind_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Reset => "reset",
        Outcome::Timeout => "timeout",
        Outcome::Non2xx => "non-2xx",
        Outcome::KeepaliveRace => "keep-alive race",
        Outcome::SlowCut => "slow failed",
    }
}

#[derive(Clone, Copy)]
struct Sample {
    at_ms: f32,
    latency_us: u32,
    outcome: Outcome,
    pid: u32,
}

fn classify(e: &std::io::Error) -> Outcome {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | NotFound => Outcome::Refused,
        TimedOut | WouldBlock => Outcome::Timeout,
        _ => Outcome::Reset,
    }
}

struct Load {
    port: u16,
    start: Instant,
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    max_requests: u64,
}

impl Load {
    fn record(&self, out: &mut Vec<Sample>, began: Instant, outcome: Outcome, pid: u32) {
        out.push(Sample {
            at_ms: (began - self.start).as_secs_f32() * 1000.0,
            latency_us: began.elapsed().as_micros().min(u32::MAX as u128) as u32,
            outcome,
            pid,
        });
        if self.total.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_requests {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_secs(5),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Keep-alive client: one connection reused until the server closes it.
    fn keepalive(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut conn: Option<(TcpStream, BufReader<TcpStream>, u32)> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            if conn.is_none() {
                match self
                    .connect()
                    .and_then(|s| Ok((s.try_clone()?, BufReader::new(s))))
                {
                    Ok((w, r)) => conn = Some((w, r, 0)),
                    Err(e) => {
                        self.record(&mut out, began, classify(&e), 0);
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                }
            }
            let (w, r, served) = conn.as_mut().unwrap();
            let result = w
                .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                .and_then(|_| http::read_response(r));
            match result {
                Ok(response) if response.status == 200 => {
                    *served += 1;
                    self.record(&mut out, began, Outcome::Ok, response.pid);
                    if response.close {
                        conn = None;
                    }
                }
                Ok(response) => {
                    self.record(&mut out, began, Outcome::Non2xx, response.pid);
                    conn = None;
                }
                Err(e) => {
                    let reused = *served > 0;
                    let outcome = match classify(&e) {
                        Outcome::Reset if reused => Outcome::KeepaliveRace,
                        o => o,
                    };
                    self.record(&mut out, began, outcome, 0);
                    conn = None;
                }
            }
        }
        out
    }

    /// A new connection per request (`Connection: close`).
    fn oneshot(&self, path: &str, failure: Option<Outcome>) -> Vec<Sample> {
        let mut out = Vec::new();
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        while !self.stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            let result = self.connect().and_then(|s| {
                (&s).write_all(request.as_bytes())?;
                http::read_response(&mut BufReader::new(s))
            });
            let (outcome, pid) = match result {
                Ok(r) if r.status == 200 => (Outcome::Ok, r.pid),
                Ok(r) => (Outcome::Non2xx, r.pid),
                Err(e) => match (classify(&e), failure) {
                    (Outcome::Refused, _) => (Outcome::Refused, 0),
                    (_, Some(f)) => (f, 0),
                    (o, None) => (o, 0),
                },
            };
            self.record(&mut out, began, outcome, pid);
            if outcome != Outcome::Ok {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        out
    }
}

// ------------------------------------------------------------ supervisors

fn testd_path() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    let testd = me.with_file_name("testd");
    // `cargo run --bin demo` builds only the demo: build the server with
    // the same profile (a no-op when it is up to date).
    let release = me.parent().is_some_and(|d| d.ends_with("release"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--bin", "testd"]);
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(s) if s.success() => {}
        _ if testd.exists() => {
            eprintln!("demo: could not rebuild testd; using {}", testd.display())
        }
        _ => {
            eprintln!("demo: cannot build testd");
            std::process::exit(1)
        }
    }
    testd
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

struct Env {
    vars: Vec<(String, String)>,
}

/// Starts and restarts the server the way a supervisor does.
enum Supervisor {
    Supervise {
        dir: PathBuf,
        child: Child,
    },
    Builtin {
        current: Arc<Mutex<Option<u32>>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Supervisor {
    fn start(builtin: bool, testd: &Path, env: &Env, dir: &Path) -> Supervisor {
        if !builtin && which("supervise") && which("svc") {
            let service = dir.join("service");
            std::fs::create_dir_all(&service).unwrap();
            let mut run = String::from("#!/bin/sh\nexec env");
            for (k, v) in &env.vars {
                write!(run, " {k}='{v}'").unwrap();
            }
            writeln!(
                run,
                " '{}' 2>>'{}'",
                testd.display(),
                dir.join("stderr").display()
            )
            .unwrap();
            let path = service.join("run");
            std::fs::write(&path, run).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let child = Command::new("supervise")
                .arg(&service)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("supervise");
            return Supervisor::Supervise {
                dir: service,
                child,
            };
        }
        let current = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (current, stop) = (current.clone(), stop.clone());
            let testd = testd.to_owned();
            let vars = env.vars.clone();
            let stderr = dir.join("stderr");
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let log = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&stderr)
                        .unwrap();
                    let mut child = Command::new(&testd)
                        .envs(vars.iter().map(|(k, v)| (k, v)))
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(log)
                        .process_group(0)
                        .spawn()
                        .expect("testd");
                    *current.lock().unwrap() = Some(child.id());
                    let _ = child.wait();
                    *current.lock().unwrap() = None;
                }
            })
        };
        Supervisor::Builtin {
            current,
            stop,
            thread: Some(thread),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Supervisor::Supervise { .. } => "daemontools supervise",
            Supervisor::Builtin { .. } => "built-in respawn loop",
        }
    }

    /// The supervisor's child: the launcher (or the plain server).
    fn child_pid(&self) -> Option<u32> {
        match self {
            Supervisor::Supervise { child, .. } => {
                let text =
                    std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                        .ok()?;
                text.split_whitespace().next()?.parse().ok()
            }
            Supervisor::Builtin { current, .. } => *current.lock().unwrap(),
        }
    }

    fn restart(&self) {
        match self {
            Supervisor::Supervise { dir, .. } => {
                let _ = Command::new("svc").arg("-t").arg(dir).status();
            }
            Supervisor::Builtin { .. } => {
                if let Some(pid) = self.child_pid() {
                    // SAFETY: kill(2) with a positive pid of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    }

    fn stop(mut self, known: &[u32]) {
        match &mut self {
            Supervisor::Supervise { dir, child } => {
                let _ = Command::new("svc").arg("-dx").arg(&*dir).status();
                std::thread::sleep(Duration::from_millis(200));
                // SAFETY: kill(2) on the process group we created.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
            Supervisor::Builtin {
                stop,
                thread,
                current,
            } => {
                stop.store(true, Ordering::SeqCst);
                if let Some(pid) = *current.lock().unwrap() {
                    // SAFETY: kill(2) on the process group we created.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
        for &pid in known {
            if alive(pid) {
                // SAFETY: kill(2) with a positive pid that this run started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// (VmRSS, RssAnon) in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------ a run

struct RunResult {
    strategy: Strategy,
    supervisor: &'static str,
    samples: Vec<Sample>,
    restarts_at_ms: Vec<f32>,
    /// Restart command to the first answer from a new pid.
    takeover_ms: Vec<f32>,
    /// Restart command to the old generation's exit.
    old_exit_ms: Vec<f32>,
    launcher_mem: Option<(u64, u64)>,
    daemon_mem: Option<(u64, u64)>,
}

fn run(args: &Args, strategy: Strategy, testd: &Path) -> RunResult {
    let dir = std::env::temp_dir().join(format!(
        "seamless-demo-{}-{}",
        std::process::id(),
        strategy.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let pid_file = match strategy {
        Strategy::Naive => String::new(),
        _ => dir.join("testd.pid").display().to_string(),
    };
    let mut vars = vec![
        ("TESTD_PID_FILE".to_owned(), pid_file),
        ("TESTD_ADDR".to_owned(), format!("127.0.0.1:{port}")),
        (
            "TESTD_EVENTS".to_owned(),
            dir.join("events").display().to_string(),
        ),
    ];
    if strategy != Strategy::Handover {
        vars.push(("TESTD_LISTEN".into(), "reuseport".into()));
    }
    let sup = Supervisor::start(args.builtin, testd, &Env { vars }, &dir);
    let events = dir.join("events");
    let daemons = |what: &str| -> Vec<u32> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix(what)?.trim().parse().ok())
            .collect()
    };
    // Wait for the first generation.
    let t0 = Instant::now();
    while daemons("ready ").is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "testd did not start; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let first = daemons("ready ")[0];
    let launcher_mem = if strategy == Strategy::Naive {
        None
    } else {
        sup.child_pid().and_then(memory)
    };
    let daemon_mem = memory(first);

    let load = Arc::new(Load {
        port,
        start: Instant::now(),
        stop: Arc::new(AtomicBool::new(false)),
        total: Arc::new(AtomicU64::new(0)),
        max_requests: args.max_requests,
    });
    let mut threads = Vec::new();
    for _ in 0..args.keepalive {
        let l = load.clone();
        threads.push(std::thread::spawn(move || l.keepalive()));
    }
    for _ in 0..args.newconn {
        let l = load.clone();
        threads.push(std::thread::spawn(move || l.oneshot("/", None)));
    }
    let slow_path: &'static str = Box::leak(format!("/?delay={}", args.slow_ms).into_boxed_str());
    for _ in 0..args.slow {
        let l = load.clone();
        threads.push(std::thread::spawn(move || {
            l.oneshot(slow_path, Some(Outcome::SlowCut))
        }));
    }

    // Restarts, the supervisor's way; watch for the old generation's exit.
    let mut restarts_at_ms = Vec::new();
    let mut old_exit_ms = Vec::new();
    std::thread::sleep(args.interval);
    for i in 0..args.restarts {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        let before: HashSet<u32> = daemons("start ").into_iter().collect();
        let old: Vec<u32> = before.iter().copied().filter(|p| alive(*p)).collect();
        let at = Instant::now();
        restarts_at_ms.push((at - load.start).as_secs_f32() * 1000.0);
        sup.restart();
        // Bounded wait for the old generation(s) to go, within the interval
        // (or up to 15 s, the handover timeout plus the drain).
        let limit = at + args.interval.max(Duration::from_secs(15));
        let mut exited = None;
        while Instant::now() < limit {
            if exited.is_none() && old.iter().all(|p| !alive(*p)) {
                exited = Some(at.elapsed());
            }
            if exited.is_some() && at.elapsed() >= args.interval {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(e) = exited {
            old_exit_ms.push(e.as_secs_f32() * 1000.0);
        }
        eprint!(
            "\r{}: restart {}/{} ",
            strategy.name(),
            i + 1,
            args.restarts
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    load.stop.store(true, Ordering::SeqCst);
    let mut samples: Vec<Sample> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    samples.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    eprintln!();

    // Restart command to the first answer from a pid not seen before.
    let mut takeover_ms = Vec::new();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut next = 0;
    for s in &samples {
        while next < restarts_at_ms.len() && s.at_ms >= restarts_at_ms[next] {
            let at = restarts_at_ms[next];
            let later = samples
                .iter()
                .filter(|x| x.at_ms >= at && x.outcome == Outcome::Ok && x.pid != 0)
                .find(|x| !seen.contains(&x.pid));
            if let Some(x) = later {
                takeover_ms.push(x.at_ms + x.latency_us as f32 / 1000.0 - at);
            }
            next += 1;
        }
        if s.outcome == Outcome::Ok {
            seen.insert(s.pid);
        }
    }
    let known: Vec<u32> = daemons("start ");
    let supervisor = sup.describe();
    sup.stop(&known);
    let _ = std::fs::remove_dir_all(&dir);
    RunResult {
        strategy,
        supervisor,
        samples,
        restarts_at_ms,
        takeover_ms,
        old_exit_ms,
        launcher_mem,
        daemon_mem,
    }
}

// ------------------------------------------------------- start-up timing

/// Median time from spawn to the first answered request, seamless on/off.
fn startup(testd: &Path, samples: usize) -> (f64, f64) {
    let mut medians = [0.0f64; 2];
    for (i, seamless) in [false, true].into_iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("seamless-startup-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut times = Vec::new();
        for _ in 0..samples {
            let port = free_port();
            let pid_file = if seamless {
                dir.join("t.pid").display().to_string()
            } else {
                String::new()
            };
            let _ = std::fs::remove_file(dir.join("t.pid"));
            let began = Instant::now();
            let mut child = Command::new(testd)
                .env("TESTD_PID_FILE", pid_file)
                .env("TESTD_ADDR", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap();
            let mut answered = None;
            while began.elapsed() < Duration::from_secs(10) {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut buf = [0u8; 12];
                    if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                        answered = Some(began.elapsed());
                        break;
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            // SAFETY: kill(2) on the process group we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            if let Some(t) = answered {
                times.push(t.as_secs_f64() * 1000.0);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        times.sort_by(f64::total_cmp);
        medians[i] = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    }
    (medians[0], medians[1])
}

// -------------------------------------------------------------- reporting

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(v: &[f32]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).map(|x| *x as f64).unwrap_or(f64::NAN)
}

struct Summary {
    total: usize,
    failures: Vec<(Outcome, usize)>,
    steady: [f64; 3],
    window: [f64; 3],
}

fn summarize(r: &RunResult) -> Summary {
    let in_window = |t: f32| {
        r.restarts_at_ms.iter().enumerate().any(|(i, at)| {
            let end = at + r.old_exit_ms.get(i).copied().unwrap_or(1000.0).max(100.0);
            t >= *at && t <= end
        })
    };
    let mut steady = Vec::new();
    let mut window = Vec::new();
    for s in r.samples.iter().filter(|s| s.outcome == Outcome::Ok) {
        if in_window(s.at_ms) {
            window.push(s.latency_us);
        } else {
            steady.push(s.latency_us);
        }
    }
    steady.sort_unstable();
    window.sort_unstable();
    let lat = |v: &[u32]| [percentile(v, 0.5), percentile(v, 0.99), percentile(v, 1.0)];
    Summary {
        total: r.samples.len(),
        failures: KINDS
            .iter()
            .map(|k| (*k, r.samples.iter().filter(|s| s.outcome == *k).count()))
            .collect(),
        steady: lat(&steady),
        window: lat(&window),
    }
}

fn report(results: &[RunResult], startup: Option<(f64, f64)>, args: &Args) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "{} restarts every {} ms under {}; load: {} keep-alive, {} new-connection, {} slow ({} ms) clients on 127.0.0.1",
        args.restarts,
        args.interval.as_millis(),
        results.first().map(|r| r.supervisor).unwrap_or("-"),
        args.keepalive,
        args.newconn,
        args.slow,
        args.slow_ms
    )
    .unwrap();
    writeln!(out).unwrap();
    write!(out, "| strategy | requests | failed |").unwrap();
    for k in KINDS {
        write!(out, " {} |", kind_name(k)).unwrap();
    }
    writeln!(out, " p50/p99/max steady (ms) | p50/p99/max in restarts (ms) | restart to new answer, median (ms) | restart to old exit, median (ms) |").unwrap();
    writeln!(out, "|{}", " --- |".repeat(7 + KINDS.len())).unwrap();
    for r in results {
        let s = summarize(r);
        let failed: usize = s.failures.iter().map(|(_, n)| n).sum();
        write!(out, "| {} | {} | {} |", r.strategy.name(), s.total, failed).unwrap();
        for (_, n) in &s.failures {
            write!(out, " {n} |").unwrap();
        }
        writeln!(
            out,
            " {:.2} / {:.2} / {:.1} | {:.2} / {:.2} / {:.1} | {:.1} | {:.1} |",
            s.steady[0],
            s.steady[1],
            s.steady[2],
            s.window[0],
            s.window[1],
            s.window[2],
            median(&r.takeover_ms),
            median(&r.old_exit_ms)
        )
        .unwrap();
    }
    writeln!(out).unwrap();
    for r in results {
        if let Some((rss, anon)) = r.launcher_mem {
            writeln!(
                out,
                "{}: launcher VmRSS {rss} KiB, RssAnon {anon} KiB",
                r.strategy.name()
            )
            .unwrap();
        }
        if let Some((rss, anon)) = r.daemon_mem {
            writeln!(
                out,
                "{}: daemon VmRSS {rss} KiB, RssAnon {anon} KiB",
                r.strategy.name()
            )
            .unwrap();
        }
    }
    if let Some((off, on)) = startup {
        writeln!(
            out,
            "start-up, exec to first answer (median of {}): seamless off {off:.2} ms, on {on:.2} ms, split adds {:.2} ms",
            args.startup_samples,
            on - off
        )
        .unwrap();
    }
    out
}

fn json(results: &[RunResult], startup: Option<(f64, f64)>) -> String {
    let mut out = String::from("{\n  \"runs\": [\n");
    for (i, r) in results.iter().enumerate() {
        let s = summarize(r);
        write!(
            out,
            "    {{\"strategy\": \"{}\", \"supervisor\": \"{}\", \"requests\": {}, ",
            r.strategy.name(),
            r.supervisor,
            s.total
        )
        .unwrap();
        out += "\"failures\": {";
        let f: Vec<String> = s
            .failures
            .iter()
            .map(|(k, n)| format!("\"{}\": {n}", kind_name(*k)))
            .collect();
        out += &f.join(", ");
        write!(
            out,
            "}}, \"latency_ms\": {{\"steady\": [{:.3}, {:.3}, {:.3}], \"restart_windows\": [{:.3}, {:.3}, {:.3}]}}, ",
            s.steady[0], s.steady[1], s.steady[2], s.window[0], s.window[1], s.window[2]
        )
        .unwrap();
        write!(
            out,
            "\"restarts\": {}, \"takeover_ms_median\": {:.2}, \"old_exit_ms_median\": {:.2}",
            r.restarts_at_ms.len(),
            median(&r.takeover_ms),
            median(&r.old_exit_ms)
        )
        .unwrap();
        if let Some((rss, anon)) = r.launcher_mem {
            write!(
                out,
                ", \"launcher_kib\": {{\"vmrss\": {rss}, \"rssanon\": {anon}}}"
            )
            .unwrap();
        }
        if let Some((rss, anon)) = r.daemon_mem {
            write!(
                out,
                ", \"daemon_kib\": {{\"vmrss\": {rss}, \"rssanon\": {anon}}}"
            )
            .unwrap();
        }
        out += if i + 1 < results.len() { "},\n" } else { "}\n" };
    }
    out += "  ]";
    if let Some((off, on)) = startup {
        write!(
            out,
            ",\n  \"startup_ms_median\": {{\"off\": {off:.3}, \"on\": {on:.3}}}"
        )
        .unwrap();
    }
    out += "\n}\n";
    out.replace("NaN", "null")
}

fn plot(results: &[RunResult], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let height = 260 * results.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, r) in root.split_evenly((results.len(), 1)).iter().zip(results) {
        let end_s = r
            .samples
            .last()
            .map(|s| s.at_ms / 1000.0)
            .unwrap_or(1.0)
            .max(1.0);
        // p99 latency and failures per 100 ms bucket.
        let buckets = (end_s * 10.0).ceil() as usize + 1;
        let mut lat: Vec<Vec<u32>> = vec![Vec::new(); buckets];
        let mut fail = vec![0u32; buckets];
        for s in &r.samples {
            let b = (s.at_ms / 100.0) as usize;
            if s.outcome == Outcome::Ok {
                lat[b].push(s.latency_us);
            } else {
                fail[b] += 1;
            }
        }
        let p99: Vec<(f32, f32)> = lat
            .iter_mut()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(i, v)| {
                v.sort_unstable();
                (i as f32 / 10.0, percentile(v, 0.99) as f32)
            })
            .collect();
        let ymax = p99.iter().map(|p| p.1).fold(1.0f32, f32::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: p99 latency per 100 ms (blue), failures (red), restarts (grey)",
                    r.strategy.name()
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f32..end_s, 0f32..ymax)?;
        chart.configure_mesh().x_desc("s").y_desc("ms").draw()?;
        for at in &r.restarts_at_ms {
            let x = at / 1000.0;
            chart.draw_series(LineSeries::new(
                [(x, 0.0), (x, ymax)],
                &RGBColor(180, 180, 180),
            ))?;
        }
        chart.draw_series(LineSeries::new(p99, &BLUE))?;
        chart.draw_series(
            fail.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| {
                    Circle::new(
                        (i as f32 / 10.0, ymax * 0.95),
                        2 + (*n).min(8) as i32,
                        RED.filled(),
                    )
                }),
        )?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    let args = parse_args();
    let testd = testd_path();
    let mut results = Vec::new();
    for &strategy in &args.strategies {
        results.push(run(&args, strategy, &testd));
    }
    let startup = (args.startup_samples > 0).then(|| startup(&testd, args.startup_samples));
    let table = report(&results, startup, &args);
    print!("{table}");
    if let Some(path) = &args.json {
        std::fs::write(path, json(&results, startup)).expect("write json");
    }
    if let Some(path) = &args.svg {
        if let Err(e) = plot(&results, path) {
            eprintln!("demo: cannot draw {}: {e}", path.display());
        }
    }
    let handover_failures: usize = results
        .iter()
        .filter(|r| r.strategy == Strategy::Handover)
        .map(|r| {
            r.samples
                .iter()
                .filter(|s| s.outcome != Outcome::Ok)
                .count()
        })
        .sum();
    if results.iter().any(|r| r.strategy == Strategy::Handover) {
        println!(
            "\nhandover: {}",
            if handover_failures == 0 {
                "nothing dropped"
            } else {
                "FAILURES (see table)"
            }
        );
    }
}

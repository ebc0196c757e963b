//! Running the server the way a supervisor does: daemontools' `supervise`
//! when it is installed (restart = `svc -t`), else a minimal built-in
//! respawn loop (restart = TERM to its child). Also the `/proc` readings
//! the benchmark takes of the processes it started.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::servers::Launch;

pub(crate) enum Supervisor {
    Supervise {
        service: PathBuf,
        child: Child,
    },
    Builtin {
        current: Arc<Mutex<Option<u32>>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Supervisor {
    /// Starts `launch` under a supervisor; its stderr goes to `dir/stderr`.
    pub(crate) fn start(builtin: bool, launch: &Launch, dir: &Path) -> Supervisor {
        let stderr = dir.join("stderr");
        if !builtin && which("supervise") && which("svc") {
            let service = dir.join("service");
            std::fs::create_dir_all(&service).expect("service dir");
            // The run script execs the server, as a service definition
            // does; the shell sets the environment (no `env`: one exec less).
            let mut run = String::from("#!/bin/sh\n");
            for (k, v) in &launch.env {
                writeln!(run, "export {k}='{v}'").unwrap();
            }
            write!(run, "exec '{}'", launch.program.display()).unwrap();
            for a in &launch.args {
                write!(run, " '{a}'").unwrap();
            }
            writeln!(run, " 2>>'{}'", stderr.display()).unwrap();
            let path = service.join("run");
            std::fs::write(&path, run).expect("run script");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod run");
            let child = Command::new("supervise")
                .arg(&service)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("supervise");
            return Supervisor::Supervise { service, child };
        }
        let current = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (current, stop) = (current.clone(), stop.clone());
            let launch = launch.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let log = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&stderr)
                        .expect("stderr file");
                    let mut child = launch
                        .command()
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(log)
                        .process_group(0)
                        .spawn()
                        .expect("server");
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

    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Supervisor::Supervise { .. } => "daemontools supervise",
            Supervisor::Builtin { .. } => "built-in respawn loop",
        }
    }

    /// The supervisor's child: the launcher (or the plain server).
    pub(crate) fn child_pid(&self) -> Option<u32> {
        match self {
            Supervisor::Supervise { child, .. } => children(child.id()).first().copied(),
            Supervisor::Builtin { current, .. } => *current.lock().unwrap(),
        }
    }

    /// Restarts the service, the supervisor's way.
    pub(crate) fn restart(&self) {
        match self {
            Supervisor::Supervise { service, .. } => {
                let _ = Command::new("svc").arg("-t").arg(service).status();
            }
            Supervisor::Builtin { .. } => {
                if let Some(pid) = self.child_pid() {
                    // SAFETY: kill(2) with a positive pid of our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    }

    /// Stops the service and kills whatever is left of it, including the
    /// `known` pids (detached generations) that are still alive.
    pub(crate) fn stop(mut self, known: &[u32]) {
        match &mut self {
            Supervisor::Supervise { service, child } => {
                let _ = Command::new("svc").arg("-dx").arg(&*service).status();
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

/// A process started on its own, in its own process group, killed with the
/// group when dropped.
pub(crate) struct Group(pub Child);

impl Group {
    pub(crate) fn spawn(launch: &Launch) -> Group {
        Group(
            launch
                .command()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("server"),
        )
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

pub(crate) fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The program a process runs now.
pub(crate) fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// CPU time (user + system, all threads) a process has used, µs.
pub(crate) fn cpu_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After the command: state is field 3, utime 14 and stime 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf(3) reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) * 1e6 / ticks)
}

/// (VmRSS, RssAnon) in KiB.
pub(crate) fn memory(pid: u32) -> Option<(u64, u64)> {
    let u = usage(pid)?;
    Some((u.vmrss_kib, u.rssanon_kib))
}

/// What a process holds: memory, open files, threads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    pub(crate) vmrss_kib: u64,
    pub(crate) rssanon_kib: u64,
    /// Entries of `/proc/PID/fd`.
    pub(crate) fds: u64,
    pub(crate) threads: u64,
}

/// The process's VmRSS, RssAnon and threads (`/proc/PID/status`) and open
/// fds (`/proc/PID/fd`).
pub(crate) fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Usage {
        vmrss_kib: status_field(&status, "VmRSS:")?,
        rssanon_kib: status_field(&status, "RssAnon:")?,
        fds: fds(pid)?,
        threads: status_field(&status, "Threads:")?,
    })
}

/// The number after `name` in `/proc/PID/status` text (kB units dropped).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// How many files the process has open.
pub(crate) fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The kernel's listen-queue counters (`/proc/net/netstat`, TcpExt),
/// counted since boot for the whole machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct ListenCounters {
    /// Connections dropped because an accept queue was full.
    pub(crate) overflows: u64,
    /// Connection attempts a listener dropped, for any reason.
    pub(crate) drops: u64,
}

pub(crate) fn listen_counters() -> Option<ListenCounters> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    Some(ListenCounters {
        overflows: tcp_ext(&text, "ListenOverflows")?,
        drops: tcp_ext(&text, "ListenDrops")?,
    })
}

/// A TcpExt counter from `/proc/net/netstat`: a line of names, then a line
/// of values, both beginning `TcpExt:`.
fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Raises this process's `RLIMIT_NOFILE`, which the supervisor, the
/// servers and the load tools it starts inherit: the soft limit to the
/// hard one, and as root the hard one to `want` too (within
/// `fs.nr_open`; kept when refused: root in a container may lack
/// `CAP_SYS_RESOURCE`). Returns (soft, hard) before and as set.
pub(crate) fn raise_nofile(want: u64) -> std::io::Result<((u64, u64), (u64, u64))> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = (lim.rlim_cur, lim.rlim_max);
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 && lim.rlim_max < want {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(want);
        let raised = libc::rlimit {
            rlim_cur: want.min(nr_open),
            rlim_max: want.min(nr_open),
        };
        // SAFETY: setrlimit(2) reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok((before, (raised.rlim_cur, raised.rlim_max)));
        }
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit(2) reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, (lim.rlim_cur, lim.rlim_max)))
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A fresh temporary directory for one part of the run.
pub(crate) fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seamless-bench-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ext_reads_the_value_under_its_name() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeouts\n\
                       TcpExt: 0 17 21 5\n\
                       IpExt: InNoRoutes ListenDrops\n\
                       IpExt: 9 9\n";
        assert_eq!(tcp_ext(netstat, "ListenOverflows"), Some(17));
        assert_eq!(tcp_ext(netstat, "ListenDrops"), Some(21));
        assert_eq!(tcp_ext(netstat, "Missing"), None);
        assert_eq!(tcp_ext("", "ListenDrops"), None);
    }

    #[test]
    fn status_fields_drop_their_unit() {
        let status = "Name:\taxum\nVmRSS:\t    5120 kB\nRssAnon:\t    1024 kB\nThreads:\t3\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(5120));
        assert_eq!(status_field(status, "RssAnon:"), Some(1024));
        assert_eq!(status_field(status, "Threads:"), Some(3));
    }

    #[test]
    fn usage_of_this_process() {
        let u = usage(std::process::id()).expect("own /proc");
        assert!(u.fds >= 3 && u.threads >= 1 && u.rssanon_kib > 0);
    }
}

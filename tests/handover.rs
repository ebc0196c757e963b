//! Listener handover under load: 20 restarts while clients keep
//! connections busy (keep-alive, new connections and slow requests). With
//! handover not one request fails; the same run with each generation
//! binding afresh (SO_REUSEPORT) reports what it loses, for the record.
//! Also: systemd socket activation and the sd_notify protocol, spoken the
//! way systemd speaks them.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    slow_ok: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<bool> {
    let response = common::http::read_response(reader)?;
    if response.status != 200 {
        return Err(std::io::Error::other(format!("status {}", response.status)));
    }
    Ok(response.close)
}

/// Keep-alive client: one connection until the server says close.
fn keepalive(port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    for _ in 0..200_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let result = (|| {
            if conn.is_none() {
                let s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                conn = Some((s.try_clone()?, BufReader::new(s)));
            }
            let (w, r) = conn.as_mut().unwrap();
            w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")?;
            read_response(r)
        })();
        match result {
            Ok(close) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                tally
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("keep-alive: {e}"));
                conn = None;
            }
        }
    }
}

fn oneshot(port: u16, path: &'static str, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    for _ in 0..200_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match get(port, path, Duration::from_secs(10)) {
            Ok(_) if path.contains("delay") => tally.slow_ok.fetch_add(1, Ordering::SeqCst),
            Ok(_) => tally.ok.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                tally.errors.lock().unwrap().push(format!("{path}: {e}"));
                0
            }
        };
    }
}

/// 20 restarts under load, the test as the supervisor; returns the tally.
fn restarts_under_load(sb: &Sandbox) -> Arc<Tally> {
    let mut launcher = sb.start();
    let mut daemon = sb.wait_event("ready", &[], T);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for i in 0..6 {
        let (stop, tally, port) = (stop.clone(), tally.clone(), sb.port);
        threads.push(std::thread::spawn(move || match i {
            0 | 1 => keepalive(port, stop, tally),
            2 | 3 => oneshot(port, "/", stop, tally),
            _ => oneshot(port, "/?delay=500", stop, tally),
        }));
    }
    let mut served = vec![daemon];
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        launcher = sb.start();
        daemon = sb.wait_event("ready", &served, T);
        served.push(daemon);
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    // Every older generation is gone; the last one serves.
    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
    assert_eq!(sb.get("/").unwrap(), daemon);
    tally
}

#[test]
fn handover_drops_nothing_across_20_restarts() {
    let sb = Sandbox::new("zero-loss");
    let tally = restarts_under_load(&sb);
    let errors = tally.errors.lock().unwrap();
    let (ok, slow) = (
        tally.ok.load(Ordering::SeqCst),
        tally.slow_ok.load(Ordering::SeqCst),
    );
    eprintln!(
        "handover: {ok} requests and {slow} slow requests ok, {} failed",
        errors.len()
    );
    assert!(ok > 1000 && slow > 20, "load ran: {ok} / {slow}");
    assert!(errors.is_empty(), "failed requests: {errors:?}");
}

/// A pid file wherever the file system allows one: relative, through a
/// symlinked directory, and longer than a unix socket address can hold.
/// The handover endpoint next to it works all the same: nothing is lost.
#[test]
fn handover_drops_nothing_from_a_deep_relative_symlinked_pid_file() {
    let sb = Sandbox::new("deep");
    let level = "d".repeat(40);
    let relative = format!("link/{level}/{level}/{level}/testd.pid");
    let real = sb.dir.join("real");
    std::fs::create_dir_all(real.join(format!("{level}/{level}/{level}"))).unwrap();
    std::os::unix::fs::symlink(&real, sb.dir.join("link")).unwrap();
    assert!(sb.dir.join(&relative).as_os_str().len() > 107);
    let sb = sb.env("TESTD_PID_FILE", &relative); // the launchers start in sb.dir
    let tally = restarts_under_load(&sb);
    let errors = tally.errors.lock().unwrap();
    let output = sb.output();
    for sign_of_a_lost_handover in ["handover endpoint", "cannot take socket", "binding afresh"] {
        assert!(
            !output.contains(sign_of_a_lost_handover),
            "{sign_of_a_lost_handover:?} in:\n{output}"
        );
    }
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(
        real.join(&relative["link/".len()..]).exists(),
        "the pid file is there"
    );
}

/// The same 20 restarts with each generation binding afresh with
/// SO_REUSEPORT: what that loses is printed for the record (how much is
/// up to the kernel's timing, so it is not asserted), but the run itself
/// must have happened: every restart served (checked by
/// `restarts_under_load`) and the load ran throughout, so the figure
/// compares like with like.
#[test]
fn reuseport_alone_is_reported_for_comparison() {
    let sb = Sandbox::new("reuseport").env("TESTD_LISTEN", "reuseport");
    let tally = restarts_under_load(&sb);
    let errors = tally.errors.lock().unwrap();
    let (ok, slow) = (
        tally.ok.load(Ordering::SeqCst),
        tally.slow_ok.load(Ordering::SeqCst),
    );
    eprintln!(
        "SO_REUSEPORT without handover: {ok} requests and {slow} slow requests ok, {} failed: {:?}",
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert!(ok > 1000 && slow > 20, "load ran: {ok} / {slow}");
}

#[test]
fn a_changed_address_is_bound_afresh_not_handed_over() {
    let sb = Sandbox::new("changed");
    let (mut a, old) = {
        let l = sb.start();
        let d = sb.wait_event("ready", &[], T);
        (l, d)
    };
    a.signal(Signal::SIGTERM);
    assert!(a.wait(T).success());
    let port = free_port();
    let mut c = sb.command();
    c.env("TESTD_ADDR", format!("127.0.0.1:{port}"));
    let _b = sb.start_with(c);
    let new = sb.wait_event("ready", &[old], T);
    assert_eq!(get(port, "/", T).unwrap(), new);
    assert!(sb.output().contains("binding afresh"), "{}", sb.output());
}

#[test]
fn systemd_socket_activation_through_the_launcher() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new("activation");
    // The listener systemd would have created, at fd 3 in the launcher,
    // with LISTEN_PID naming the launcher (the process systemd started).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    // LISTEN_PID must name the launcher, whose pid is known only after the
    // fork: a shell sets it and execs, as systemd sets it before exec.
    let mut c = sb.command();
    c.env("TESTD_ADDR", format!("127.0.0.1:{port}"))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "web");
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c").arg(format!("LISTEN_PID=$$ exec '{TESTD}'"));
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    sh.current_dir(&sb.dir).process_group(0);
    // SAFETY: dup2(2) and fcntl(2) are async-signal-safe; fd stays open
    // in the parent until the child has started.
    unsafe {
        sh.pre_exec(move || {
            // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _launcher = sb.start_with(sh);
    let daemon = sb.wait_event("ready", &[], T);
    // Our copy closed: only the inherited socket can answer.
    drop(listener);
    assert_eq!(get(port, "/", T).unwrap(), daemon);
}

/// Starts a generation with `NOTIFY_SOCKET` pointing at a datagram socket
/// of the test's, as systemd does for `Type=notify`.
fn start_with_notify_socket(sb: &Sandbox) -> (UnixDatagram, Launcher) {
    let socket_path = sb.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify.set_read_timeout(Some(T)).unwrap();
    let mut c = sb.command();
    c.env("NOTIFY_SOCKET", &socket_path);
    (notify, sb.start_with(c))
}

/// The next datagram systemd would read.
fn next_notice(notify: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sd_notify_ready_and_stopping() {
    let sb = Sandbox::new("notify");
    let (notify, mut launcher) = start_with_notify_socket(&sb);
    let daemon = sb.wait_event("ready", &[], T);
    let ready = next_notice(&notify);
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", launcher.pid)),
        "{ready}"
    );
    // `systemctl status` shows which generation serves.
    assert_eq!(
        next_notice(&notify),
        format!("STATUS=serving: daemon {daemon} has started")
    );
    // A restart: RELOADING=1, then STOPPING=1 as the launcher steps aside,
    // each with its STATUS= line.
    launcher.signal(Signal::SIGTERM);
    assert!(next_notice(&notify).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(
        next_notice(&notify),
        format!("STATUS=restarting: daemon {daemon} prepares the handover")
    );
    assert_eq!(
        next_notice(&notify),
        format!("STATUS=restarting: daemon {daemon} serves until its successor has started")
    );
    assert_eq!(next_notice(&notify), "STOPPING=1");
    assert!(launcher.wait(T).success());
    wait_dead(daemon, T);
}

#[test]
fn sd_notify_status_says_a_new_generation_failed() {
    let sb = Sandbox::new("notify-fail").env("TESTD_CRASH", "exit3");
    let (notify, mut launcher) = start_with_notify_socket(&sb);
    let daemon = sb.wait_event("start", &[], T);
    assert_eq!(
        next_notice(&notify),
        format!("STATUS=restart failed: daemon {daemon} ended (status 3) before started()")
    );
    assert_eq!(launcher.wait(T).code(), Some(3));
}

#[test]
fn sd_notify_extends_the_stop_timeout_while_the_daemon_drains() {
    let sb = Sandbox::new("notify-drain");
    let (notify, mut launcher) = start_with_notify_socket(&sb);
    let daemon = sb.wait_event("ready", &[], T);
    let port = sb.port;
    let slow = std::thread::spawn(move || get(port, "/?delay=1000", T));
    std::thread::sleep(Duration::from_millis(100));
    // A stop straight to the daemon (as systemd's KillMode=control-group
    // does): STOPPING=1, then the timeout extended while it drains.
    signal(daemon, Signal::SIGTERM);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen
        .iter()
        .any(|m: &String| m.starts_with("EXTEND_TIMEOUT_USEC="))
    {
        let n = notify.recv(&mut buf).unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(seen.contains(&"STOPPING=1".to_owned()), "{seen:?}");
    assert_eq!(slow.join().unwrap().unwrap(), daemon);
    assert_eq!(launcher.wait(T).code(), Some(0));
}

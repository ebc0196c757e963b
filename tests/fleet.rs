//! The rolling restart of `docs/fleet.md`, end to end: the playbook
//! `docs/fleet/rolling-restart.yml` run by ansible-core against two testd
//! services under runit on this machine (`connection: local`), standing in
//! for two hosts.
//!
//! The services run `testd-probation` (a probation of 2 s).
//!
//! - a good binary rolls through both hosts;
//! - a binary that fails on start stops the rollout after the first host,
//!   which is rolled back and serves throughout (an HTTP client counts every
//!   failure), while the second host is left untouched;
//! - so does a binary that panics 1 s after `started()`: its probation
//!   fails, and the first host's old generation, which never stopped
//!   accepting, serves on.
//!
//! ansible-playbook is taken from `$ANSIBLE_PLAYBOOK`, else from the
//! virtual environment `.ci/run` creates (`target/ansible-venv`), else from
//! `PATH`; without it the test fails in CI and prints `NOT RUN` elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::runit::{self, Runsv};
use common::set_executable;
use common::*;

const TOOL: &str = env!("CARGO_BIN_EXE_seamless-tool");
const TESTD_PROBATION: &str = env!("CARGO_BIN_EXE_testd-probation");
const T: Duration = Duration::from_secs(30);

#[track_caller]
fn ansible_playbook() -> Option<PathBuf> {
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ansible-venv/bin/ansible-playbook");
    let found = std::env::var_os("ANSIBLE_PLAYBOOK")
        .map(PathBuf::from)
        .or_else(|| venv.is_file().then_some(venv))
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("ansible-playbook"))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        not_run(
            "ansible-playbook not found (.ci/run installs ansible-core into target/ansible-venv)",
        );
    }
    found
}

/// How a "binary" misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Exits 3 on start, before `started()`.
    OnStart,
    /// Panics 1 s after `started()`, during its probation.
    AfterStarted,
}

/// A "binary": a script that runs testd-probation marked with `mark`.
fn binary(dir: &Path, name: &str, mark: &str, fault: Fault) -> PathBuf {
    let path = dir.join(name);
    let fault = match fault {
        Fault::None => "",
        Fault::OnStart => "export TESTD_CRASH=exit3\n",
        Fault::AfterStarted => "export TESTD_PANIC_AFTER_STARTED_MS=1000\n",
    };
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexport TESTD_MARK={mark}\n{fault}exec '{TESTD_PROBATION}' \"$@\"\n"),
    )
    .unwrap();
    set_executable(&path);
    path
}

/// The serving generation's pid and its mark.
fn serving(sb: &Sandbox) -> (i32, String) {
    let pid = sb.pid_in_file().expect("a generation serves");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let mark = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"TESTD_MARK="))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    (pid, mark)
}

/// A service under runsv. Fields drop in order: runsv and every
/// generation first, then the sandbox and its directory.
struct Host {
    runsv: Option<Runsv>,
    sb: Sandbox,
}

impl Drop for Host {
    fn drop(&mut self) {
        drop(self.runsv.take());
    }
}

impl Host {
    fn start(name: &str, first: &Path) -> Host {
        let sb = Sandbox::new(name);
        let app = sb.dir.join("app");
        std::fs::copy(first, &app).unwrap();
        set_executable(&app);
        let runsv = Runsv::start(&sb, &app);
        let pid = sb.wait_event("ready", &[], T);
        sb.assert_pid_file(Some(pid));
        Host {
            runsv: Some(runsv),
            sb,
        }
    }

    fn inventory_line(&self, name: &str) -> String {
        format!(
            "{name} ansible_connection=local pid_file={} app_path={}\n",
            self.sb.pid_file().display(),
            self.sb.dir.join("app").display()
        )
    }
}

fn run_playbook(playbook: &Path, dir: &Path, hosts: &[&Host], new_binary: &Path) -> (bool, String) {
    let python = playbook.parent().unwrap().join("python3");
    let mut inventory = String::from("[app_servers]\n");
    for (i, h) in hosts.iter().enumerate() {
        inventory += &h.inventory_line(&format!("host{}", i + 1));
    }
    inventory += &format!("[app_servers:vars]\nseamless={TOOL}\nverdict_timeout=1s\n");
    if python.is_file() {
        inventory += &format!("ansible_python_interpreter={}\n", python.display());
    }
    let inventory_path = dir.join("inventory.ini");
    std::fs::write(&inventory_path, inventory).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/fleet/rolling-restart.yml");
    let tmp = dir.join("ansible-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let output = Command::new(playbook)
        .arg("-i")
        .arg(&inventory_path)
        .arg("-e")
        .arg(format!("new_binary={}", new_binary.display()))
        .arg(&source)
        .env("ANSIBLE_LOCAL_TEMP", &tmp)
        .env("ANSIBLE_REMOTE_TEMP", &tmp)
        .env("ANSIBLE_HOME", &tmp)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    eprintln!("{text}");
    (output.status.success(), text)
}

#[test]
fn a_rolling_restart_goes_through_with_a_good_binary_and_stops_at_a_bad_one() {
    let Some(playbook) = ansible_playbook() else {
        return;
    };
    if !runit::installed() {
        return;
    }
    let work = Sandbox::new("fleet");
    let v1 = binary(&work.dir, "v1", "v1", Fault::None);
    let v2 = binary(&work.dir, "v2", "v2", Fault::None);
    let bad = binary(&work.dir, "v3-bad", "v3", Fault::OnStart);
    let panics = binary(&work.dir, "v4-panics", "v4", Fault::AfterStarted);
    let host1 = Host::start("fleet-host1", &v1);
    let host2 = Host::start("fleet-host2", &v1);

    // A good binary rolls through both hosts.
    let before = [serving(&host1.sb).0, serving(&host2.sb).0];
    let (ok, text) = run_playbook(&playbook, &work.dir, &[&host1, &host2], &v2);
    assert!(ok, "{text}");
    for (host, old) in [&host1, &host2].iter().zip(before) {
        let (pid, mark) = serving(&host.sb);
        assert_ne!(pid, old);
        assert_eq!(mark, "v2");
        assert_eq!(host.sb.get("/").unwrap(), pid);
    }

    // A bad one stops at the first host, which serves throughout.
    rollout_stops_at_host1(
        &playbook,
        &work.dir,
        &host1,
        &host2,
        &bad,
        "exited with status 3",
    );
    // So does one that dies during its probation.
    rollout_stops_at_host1(
        &playbook,
        &work.dir,
        &host1,
        &host2,
        &panics,
        "into its probation (status 101)",
    );
}

/// Rolls `bad` out: it must stop at host1, which serves throughout and is
/// back on v2, with host2 untouched. `why` is in the verdict.
fn rollout_stops_at_host1(
    playbook: &Path,
    dir: &Path,
    host1: &Host,
    host2: &Host,
    bad: &Path,
    why: &str,
) {
    let host2_before = serving(&host2.sb).0;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok_count, failures, lost) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let client = {
        let (stop, ok_count, failures, lost) = (
            stop.clone(),
            ok_count.clone(),
            failures.clone(),
            lost.clone(),
        );
        let port = host1.sb.port;
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match get(port, "/", Duration::from_secs(5)) {
                    Ok(_) => ok_count.fetch_add(1, Ordering::SeqCst),
                    // Connected and sent, then no answer: in flight on a
                    // generation that died (a panicking one).
                    Err(e)
                        if e.kind() == std::io::ErrorKind::ConnectionReset
                            || e.to_string().contains("bad answer: \"\"") =>
                    {
                        eprintln!("host1, in flight on a dying generation: {e}");
                        lost.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(e) => {
                        eprintln!("host1: {e}");
                        failures.fetch_add(1, Ordering::SeqCst)
                    }
                };
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (ok, text) = run_playbook(playbook, dir, &[host1, host2], bad);
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    eprintln!(
        "host1 polled: {} answered, {} failed, {} lost in flight on a dying generation",
        ok_count.load(Ordering::SeqCst),
        failures.load(Ordering::SeqCst),
        lost.load(Ordering::SeqCst)
    );
    assert!(!ok, "the rollout must fail: {text}");
    assert!(text.contains("new binary refused on host1"), "{text}");
    assert!(text.contains(why), "{text}");
    assert!(!text.contains("host2"), "host2 never reached: {text}");
    assert_eq!(serving(&host2.sb).0, host2_before, "host2 untouched");
    let (pid, mark) = serving(&host1.sb);
    assert_eq!(mark, "v2", "host1 is back on the previous binary");
    assert_eq!(host1.sb.get("/").unwrap(), pid);
    assert!(ok_count.load(Ordering::SeqCst) > 0);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "host1 refused or dropped requests"
    );
    assert!(
        lost.load(Ordering::SeqCst) <= 2,
        "only a request in flight on a dying generation may be lost"
    );
}

use super::format::*;
use super::judge::*;
use super::*;
use crate::procfs::{ProcessIdentity, ProcessInfo};
use std::os::unix::fs::PermissionsExt;

fn temp_dir() -> PathBuf {
    crate::test_support::temp_dir("test")
}

/// A `sleep 30` child, killed and reaped on drop.
struct Sleeper(std::process::Child);
impl Sleeper {
    fn new() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    fn identity(&self) -> ProcessIdentity {
        ProcessIdentity::of(self.pid()).unwrap().unwrap().identity
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn line(standing: &str, id: &ProcessIdentity) -> String {
    format!(
        "{MAGIC} {standing} {} {} {}\n",
        id.pid, id.start_time, id.boot_id
    )
}

fn entry(standing: Standing, pid: i32, start_time: u64) -> Entry {
    Entry {
        standing,
        identity: ProcessIdentity {
            pid,
            start_time,
            boot_id: "b".into(),
        },
    }
}

#[test]
fn render_and_parse_round_trip() {
    let entries = vec![
        entry(Standing::Newest, 123, 456),
        entry(Standing::Detached, 77, 9),
        entry(Standing::Detached, 78, u64::MAX),
    ];
    let text = render(&entries);
    assert!(text.starts_with("123\n"));
    let parsed = parse(text.as_bytes());
    assert_eq!(parsed.first_line, Some(123));
    assert_eq!(parsed.entries, entries);
    // Without a newest, the first line names the first detached one.
    let detached = &entries[1..];
    let text = render(detached);
    assert!(text.starts_with("77\n"), "{text}");
    assert_eq!(parse(text.as_bytes()).entries, detached);
    // CRLF and surrounding blanks are tolerated.
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(parse(crlf.as_bytes()).entries, detached);
}

#[test]
fn bad_contents_yield_nothing_signallable() {
    for content in [
        "",
        "\n\n\n",
        "garbage",
        "-1234\n",
        "0\n",
        "1\n",
        "-1\n",
        "99999999999\n",
        "\u{0}\u{ff}\n",
        "12\nseamless-v1 newest -5 1 b\n",
        "12\nseamless-v1 newest -1234 1 b\n",
        "12\nseamless-v1 newest 1 1 b\n",
        "12\nseamless-v1 newest 0 1 b\n",
        "12\nseamless-v1 newest 99999999999 1 b\n",
        "12\nseamless-v1 boss 12 1 b\n",
        "12\nseamless-v2 newest 12 1 b\n",
        "12\nseamless-v1 newest 12 x b\n",
        "12\nseamless-v1 newest 12 -1 b\n",
        "12\nseamless-v1 newest 12 1\n",
        "12\nseamless-v1 newest 12 1 b extra\n",
    ] {
        let parsed = parse(content.as_bytes());
        assert!(parsed.entries.is_empty(), "{content:?}");
        assert!(parsed.first_line.is_none_or(|p| p > 1), "{content:?}");
    }
    let long_boot = format!("12\nseamless-v1 newest 12 1 {}\n", "b".repeat(65));
    assert!(parse(long_boot.as_bytes()).entries.is_empty());
    // Duplicates collapse; the count is bounded.
    let dup = "12\nseamless-v1 newest 12 1 b\nseamless-v1 detached 12 2 b\n";
    assert_eq!(parse(dup.as_bytes()).entries.len(), 1);
    let many: String = (2..1000)
        .map(|p| format!("seamless-v1 detached {p} 1 b\n"))
        .collect();
    assert_eq!(
        parse(format!("2\n{many}").as_bytes()).entries.len(),
        MAX_ENTRIES
    );
}

fn context() -> Context {
    let mut ctx = Context::new(Trust::Trusted).unwrap();
    ctx.root = false;
    ctx
}

fn info(id: &ProcessIdentity, state: char, uid: u32) -> io::Result<Option<ProcessInfo>> {
    Ok(Some(ProcessInfo {
        identity: id.clone(),
        state,
        uid,
    }))
}

#[test]
fn the_rules_one_by_one() {
    let ctx = context();
    let other = ProcessIdentity {
        pid: ctx.me.pid + 1,
        start_time: 1000,
        boot_id: ctx.me.boot_id.clone(),
    };
    let refused = |v: Verdict, needle: &str| match v {
        Verdict::Refuse(why) => assert!(why.contains(needle), "{why} / {needle}"),
        Verdict::Signal => panic!("signalled; expected a refusal: {needle}"),
    };
    assert_eq!(
        judge(&other, info(&other, 'S', ctx.uid), &ctx),
        Verdict::Signal
    );
    refused(judge(&other, info(&other, 'Z', ctx.uid), &ctx), "zombie");
    refused(judge(&other, info(&other, 'X', ctx.uid), &ctx), "zombie");
    refused(judge(&other, Ok(None), &ctx), "no such process");
    refused(judge(&other, Err(io::Error::other("boom")), &ctx), "boom");
    let mut later = other.clone();
    later.start_time += 1;
    refused(
        judge(&other, info(&later, 'S', ctx.uid), &ctx),
        "start time",
    );
    let mut elsewhere = other.clone();
    elsewhere.boot_id = "another".into();
    refused(
        judge(&elsewhere, info(&other, 'S', ctx.uid), &ctx),
        "another boot",
    );
    let stranger = ctx.uid.wrapping_add(1);
    refused(judge(&other, info(&other, 'S', stranger), &ctx), "uid");
    let mut root = ctx.clone();
    root.root = true;
    assert_eq!(
        judge(&other, info(&other, 'S', stranger), &root),
        Verdict::Signal,
        "root may stop its own generations that changed uid"
    );
    for pid in [i32::MIN, -1234, -1, 0, 1, ctx.pid_max + 1, i32::MAX] {
        let mut bad = other.clone();
        bad.pid = pid;
        refused(
            judge(&bad, info(&bad, 'S', ctx.uid), &ctx),
            "not a valid pid",
        );
    }
    refused(
        judge(&ctx.me, info(&ctx.me, 'R', ctx.uid), &ctx),
        "our own pid",
    );
    let mut untrusted = ctx.clone();
    untrusted.file = Trust::Untrusted("the pid file is a symbolic link".into());
    refused(
        judge(&other, info(&other, 'S', ctx.uid), &untrusted),
        "symbolic link",
    );
    assert!(send_term(0, None).is_err() && send_term(-1, None).is_err());
    assert!(send_term(1, None).is_err());
}

#[test]
fn both_signal_paths_deliver_term() {
    for use_pidfd in [true, false] {
        let mut sleeper = Sleeper::new();
        let pidfd = open_pidfd(sleeper.pid()).unwrap();
        assert!(pidfd.is_some(), "this kernel has pidfds");
        let fd = if use_pidfd { pidfd.as_ref() } else { None };
        send_term(sleeper.pid(), fd).unwrap();
        let status = sleeper.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        // Reaped: the pidfd now names a process that is gone.
        if use_pidfd {
            assert_eq!(send_term(sleeper.pid(), pidfd.as_ref()), Err(Errno::ESRCH));
        }
    }
}

#[test]
fn claim_refuses_strangers_and_records_us() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let sleeper = Sleeper::new();
    let real = sleeper.identity();
    let me = ProcessIdentity::current().unwrap();
    let mut wrong_start = real.clone();
    wrong_start.start_time += 1;
    let mut wrong_boot = real.clone();
    wrong_boot.boot_id = "00000000-0000-0000-0000-000000000000".into();
    let mut too_big = real.clone();
    too_big.pid = procfs::pid_max() + 1;
    let cases = [
        (format!("{}\n", sleeper.pid()), "bare pid"),
        (format!("-{}\n", sleeper.pid()), ""),
        ("garbage\n\u{0}\n".to_string(), ""),
        ("0\n".to_string(), ""),
        ("1\n".to_string(), ""),
        (format!("{}\n", me.pid), ""),
        (format!("x\n{}", line("newest", &wrong_start)), "start time"),
        (format!("x\n{}", line("detached", &wrong_boot)), "boot"),
        (format!("x\n{}", line("newest", &me)), ""),
        (
            format!("x\n{}", line("newest", &too_big)),
            "not a valid pid",
        ),
    ];
    let pid_file = PidFile::open(&path).unwrap();
    for (content, reason) in cases {
        std::fs::write(&path, &content).unwrap();
        let claimed = pid_file.claim().unwrap();
        assert!(claimed.signalled.is_empty(), "{content:?}");
        if reason.is_empty() {
            assert!(claimed.refused.is_empty(), "{content:?}: {claimed:?}");
        } else {
            assert_eq!(claimed.refused.len(), 1, "{content:?}");
            assert!(claimed.refused[0].1.contains(reason), "{claimed:?}");
        }
        assert!(procfs::is_alive(sleeper.pid()), "{content:?}");
        let parsed = parse(&std::fs::read(&path).unwrap());
        assert_eq!(parsed.first_line, Some(me.pid));
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.entries[0].identity, me);
        assert_eq!(parsed.entries[0].standing, Standing::Newest);
    }
    pid_file.release().unwrap();
    assert!(!path.exists(), "released: no dead pid left behind");
    drop(sleeper);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn claim_signals_proven_generations() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let mut newest = Sleeper::new();
    let mut detached = Sleeper::new();
    let (a, b) = (newest.identity(), detached.identity());
    std::fs::write(
        &path,
        format!("{}\n{}{}", a.pid, line("newest", &a), line("detached", &b)),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pid_file = PidFile::open(&path).unwrap();
    let claimed = pid_file.claim().unwrap();
    assert_eq!(claimed.signalled, [a.pid, b.pid], "{claimed:?}");
    assert!(claimed.refused.is_empty());
    for sleeper in [&mut newest, &mut detached] {
        let status = sleeper.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
    }
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o022, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_untrusted_file_or_a_zombie_is_not_signalled() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let pid_file = PidFile::open(&path).unwrap();
    let sleeper = Sleeper::new();
    let real = sleeper.identity();
    std::fs::write(&path, format!("{}\n{}", real.pid, line("newest", &real))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
    let claimed = pid_file.claim().unwrap();
    assert!(claimed.signalled.is_empty());
    assert!(claimed.refused[0].1.contains("writable by group or others"));
    assert!(procfs::is_alive(sleeper.pid()));
    drop(sleeper);

    // A zombie with the right identity.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    let zombie = loop {
        let info = ProcessIdentity::of(pid).unwrap().unwrap();
        if info.state == 'Z' {
            break info.identity;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    std::fs::write(&path, format!("{pid}\n{}", line("detached", &zombie))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let claimed = pid_file.claim().unwrap();
    assert!(claimed.signalled.is_empty());
    assert!(claimed.refused[0].1.contains("zombie"), "{claimed:?}");
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_planted_symlink_is_replaced_not_followed() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let sleeper = Sleeper::new();
    let real = sleeper.identity();
    // The target even holds a valid identity: it is still not believed.
    let precious = dir.join("precious");
    let content = format!("{}\n{}", real.pid, line("newest", &real));
    std::fs::write(&precious, &content).unwrap();
    std::os::unix::fs::symlink(&precious, &path).unwrap();
    let pid_file = PidFile::open(&path).unwrap();
    let claimed = pid_file.claim().unwrap();
    assert!(claimed.signalled.is_empty());
    assert!(procfs::is_alive(sleeper.pid()));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), content);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_file());
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.entries[0].identity.pid, std::process::id() as i32);

    // release() leaves a symlink alone too.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&precious, &path).unwrap();
    pid_file.release().unwrap();
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), content);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    drop(sleeper);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unusable_location_names_the_path() {
    let dir = temp_dir();
    let file = dir.join("file");
    std::fs::write(&file, "").unwrap();
    let linked = dir.join("linked.pid");
    std::os::unix::fs::symlink(&file, dir.join("linked.pid.lock")).unwrap();
    for path in [dir.join("missing/x.pid"), file.join("x.pid"), linked] {
        let e = PidFile::open(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("pid file {}: ", path.display())),
            "{e}"
        );
        assert!(e.contains("cannot create lock file"), "{e}");
        assert!(e.contains("os error"), "{e}");
    }
    // A directory this user may not write to. Root may write to any
    // mode, but not into sysfs, which refuses to create a file
    // (EACCES, or EROFS where a container mounts it read-only) whoever
    // asks: the check runs either way.
    let (forbidden, reasons) = if nix::unistd::geteuid().is_root() {
        let reasons: &[&str] = &["Permission denied", "Read-only file system"];
        (PathBuf::from("/sys"), reasons)
    } else {
        let ro = dir.join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let reasons: &[&str] = &["Permission denied"];
        (ro, reasons)
    };
    let path = forbidden.join("seamless-test.pid");
    let e = PidFile::open(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("pid file {}: ", path.display())),
        "{e}"
    );
    assert!(reasons.iter().any(|r| e.contains(r)), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn add_detached_then_release() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let pid_file = PidFile::open(&path).unwrap();
    let me = ProcessIdentity::current().unwrap();
    let sleeper = Sleeper::new();
    let newest = sleeper.identity();
    let mut dead = newest.clone();
    dead.start_time += 1;
    std::fs::write(
        &path,
        format!(
            "{}\n{}{}",
            newest.pid,
            line("newest", &newest),
            line("detached", &dead)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    pid_file.add_detached().unwrap();
    pid_file.add_detached().unwrap(); // idempotent
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.first_line, Some(newest.pid));
    assert_eq!(
        parsed.entries,
        [
            Entry {
                standing: Standing::Newest,
                identity: newest.clone()
            },
            Entry {
                standing: Standing::Detached,
                identity: me.clone()
            }
        ]
    );
    // We exit: the newest (alive, ours) stays.
    pid_file.release().unwrap();
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.first_line, Some(newest.pid));
    assert_eq!(parsed.entries.len(), 1);
    // A file that does not name us is not touched.
    let before = std::fs::read(&path).unwrap();
    pid_file.release().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The newest dies; we are detached alone and exit: no file left.
    drop(sleeper);
    pid_file.add_detached().unwrap();
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.first_line, Some(me.pid));
    assert_eq!(parsed.entries.len(), 1);
    pid_file.release().unwrap();
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_lock_serializes() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let pid_file = PidFile::open(&path).unwrap();
    let held = pid_file.lock().unwrap();
    // flock locks belong to the open file: a second open waits.
    let e = match pid_file.lock_within(Duration::from_millis(50)) {
        Err(e) => e,
        Ok(_) => panic!("locked twice"),
    };
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    let (tx, rx) = std::sync::mpsc::channel();
    let claimer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let claimed = PidFile::open(&path).unwrap().claim();
            tx.send(()).unwrap();
            claimed.unwrap()
        })
    };
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    assert!(!path.exists(), "claim went ahead while the lock was held");
    drop(held);
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    claimer.join().unwrap();
    assert!(path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_claims_serialize() {
    let dir = temp_dir();
    let path = dir.join("d.pid");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let pid_file = PidFile::open(&path).unwrap();
                for _ in 0..10 {
                    pid_file.claim().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.first_line, Some(std::process::id() as i32));
    assert_eq!(parsed.entries.len(), 1);
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        leftovers, 2,
        "pid file and lock file only: no temp files left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest::proptest! {
    #[test]
    fn parse_never_panics_nor_yields_pids_below_two(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let parsed = parse(&bytes);
        proptest::prop_assert!(parsed.first_line.is_none_or(|p| p > 1));
        proptest::prop_assert!(parsed.entries.iter().all(|e| e.identity.pid > 1));
    }

    #[test]
    fn parse_of_near_valid_lines(pid in proptest::num::i64::ANY, start in proptest::num::u64::ANY, sep in "[ \t]{1,3}") {
        let text = format!("{pid}\n{MAGIC}{sep}newest{sep}{pid}{sep}{start}{sep}b\n");
        let parsed = parse(text.as_bytes());
        proptest::prop_assert!(parsed.first_line.is_none_or(|p| p > 1));
        proptest::prop_assert!(parsed.entries.iter().all(|e| e.identity.pid > 1));
        proptest::prop_assert_eq!(parsed.entries.len(), usize::from(pid > 1 && pid <= i64::from(i32::MAX)));
    }
}

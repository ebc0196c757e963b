use super::client::*;
use super::paths::*;
use super::server::*;
use super::*;
use crate::test_support::cloexec;
use nix::sys::socket::{self, ControlMessage, MsgFlags};
use std::io::Read;
use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::BorrowedFd;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

fn temp_dir() -> PathBuf {
    crate::test_support::temp_dir("ho")
}

/// What a generation offers, as `net`'s registry would.
#[derive(Default)]
struct Offered(Mutex<Vec<(String, String, OwnedFd)>>);

impl Lookup for Offered {
    fn lookup(&self, name: &str) -> io::Result<Option<(String, OwnedFd)>> {
        let offered = self.0.lock().unwrap();
        let Some((_, address, fd)) = offered.iter().find(|(n, _, _)| n == name) else {
            return Ok(None);
        };
        Ok(Some((address.clone(), fd.try_clone()?)))
    }
}

fn offered() -> Arc<Offered> {
    Arc::new(Offered::default())
}

fn register(offered: &Offered, name: &str, address: &str, fd: BorrowedFd<'_>) {
    let dup = fd.try_clone_to_owned().unwrap();
    let entry = (name.to_owned(), address.to_owned(), dup);
    offered.0.lock().unwrap().push(entry);
}

/// The inode behind an fd, as `/proc/self/fd` shows it.
fn link(fd: RawFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap()
}

/// fds of this process open on the same socket as `fd`.
fn fds_on(fd: RawFd) -> usize {
    let target = link(fd);
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| *l == target)
        .count()
}

/// Sockets bound in `dir`, the endpoint's directory: its listener and
/// the server's end of each connection still open. (The kernel shows
/// the path the listener was bound at: the temporary one.)
fn endpoint_sockets(dir: &Path) -> usize {
    let dir = format!("{}/", dir.to_str().unwrap());
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .count()
}

#[test]
fn endpoint_path_is_next_to_the_pid_file() {
    assert_eq!(
        endpoint_path(Path::new("/run/app.pid")),
        Path::new("/run/app.pid.handover")
    );
    assert_eq!(
        control_path(Path::new("/run/app.pid"), 42),
        Path::new("/run/app.pid.42.ctl")
    );
    // Each generation's endpoint is found again by pid, whatever the
    // length of the pid file's name.
    let dir = temp_dir();
    for name in ["app.pid", &"n".repeat(200)] {
        let pid_file = dir.join(name);
        for pid in [42, 4_194_304] {
            let path = control_path(&pid_file, pid);
            assert!(path.file_name().unwrap().len() <= MAX_ENDPOINT_NAME);
            std::fs::write(&path, b"").unwrap();
        }
        std::fs::write(dir.join(format!("{name}.x.ctl")), b"").unwrap();
        let found: Vec<i32> = control_paths(&pid_file)
            .unwrap()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect();
        assert_eq!(found, [42, 4_194_304], "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tcp_listener_is_handed_over_with_its_queue() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let registry = offered();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    register(&registry, "web", &format!("tcp {addr}"), listener.as_fd());
    let endpoint = open_endpoint(&path, registry.clone()).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Queued before the handover, accepted through the received socket.
    let mut client = TcpStream::connect(addr).unwrap();
    let got = fetch(&path, "web").unwrap().expect("handed over");
    assert_eq!(got.address, format!("tcp {addr}"));
    assert!(cloexec(&got.fd));
    assert_eq!(link(got.fd.as_raw_fd()), link(listener.as_raw_fd()));
    let received = TcpListener::from(got.fd);
    let (mut conn, peer) = received.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    client.write_all(b"x").unwrap();
    let mut byte = [0u8];
    conn.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
    endpoint.close();
    assert!(!path.exists(), "endpoint file removed");
    assert!(fetch(&path, "web").unwrap().is_none(), "no endpoint: None");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unix_and_udp_sockets_are_handed_over() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let registry = offered();
    let sock_path = dir.join("app.sock");
    let unix = UnixListener::bind(&sock_path).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    register(&registry, "ctl", "unix x", unix.as_fd());
    register(&registry, "dns", "udp x", udp.as_fd());
    let _endpoint = open_endpoint(&path, registry).unwrap();

    let got = fetch(&path, "ctl").unwrap().expect("unix handed over");
    assert_eq!(got.address, "unix x");
    let _client = UnixStream::connect(&sock_path).unwrap();
    let received = UnixListener::from(got.fd);
    received.accept().unwrap();

    let got = fetch(&path, "dns").unwrap().expect("udp handed over");
    let received = UdpSocket::from(got.fd);
    assert_eq!(received.local_addr().unwrap(), udp_addr);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"ping", udp_addr).unwrap();
    let mut buf = [0u8; 8];
    let (n, _) = received.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Answers `state` with bytes and fds, as the daemon does.
struct Stateful(Vec<u8>, Vec<OwnedFd>);

impl Service for Stateful {
    fn answer(&self, peer: sys::Peer, request: Request) -> Reply {
        assert_eq!(peer.pid, std::process::id() as i32);
        match request {
            Request::State(name) if name == "keys" => Reply {
                head: Head::Ok(String::new()),
                body: self.0.clone(),
                fds: self.1.iter().map(|fd| fd.try_clone().unwrap()).collect(),
            },
            _ => Reply::head(Head::None),
        }
    }
}

#[test]
fn bytes_and_fds_travel_within_the_limits() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let files: Vec<OwnedFd> = (0..3)
        .map(|_| std::fs::File::open("/proc/self/stat").unwrap().into())
        .collect();
    let body = vec![7u8; 200_000];
    let _endpoint = open_service(&path, Arc::new(Stateful(body.clone(), files))).unwrap();
    let limits = Limits {
        answer: 300_000,
        fds: 3,
        timeout: Duration::from_secs(5),
    };
    let request = Request::State("keys".into());
    let answer = ask(&path, &request, limits).unwrap().unwrap();
    assert_eq!(answer.head, Head::Ok(String::new()));
    assert_eq!(answer.body, body);
    assert_eq!(answer.fds.len(), 3);
    assert!(answer.fds.iter().all(cloexec));
    // More than the client allows: refused, fds closed.
    let small = Limits {
        answer: 1000,
        ..limits
    };
    assert_eq!(
        ask(&path, &request, small).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let fewer = Limits { fds: 2, ..limits };
    assert_eq!(
        ask(&path, &request, fewer).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let other = Request::State("other".into());
    assert_eq!(
        ask(&path, &other, limits).unwrap().unwrap().head,
        Head::None
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_version_is_refused_with_our_version_named() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let _endpoint = open_endpoint(&path, offered()).unwrap();
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"seamless/4 listener web\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(
        answer,
        "seamless/3 refused protocol version mismatch: the peer speaks seamless/4, this generation seamless/3\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_name_gets_none() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let _endpoint = open_endpoint(&path, offered()).unwrap();
    assert!(fetch(&path, "unknown").unwrap().is_none());
    // A stale socket file, nobody listening: None too.
    let stale = dir.join("stale");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(fetch(&stale, "web").unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_names_are_refused_before_connecting() {
    for bad in ["", "a\nb", "nul\0", &"n".repeat(MAX_NAME + 1)] {
        assert!(check_name(bad).is_err(), "{bad:?}");
        assert_eq!(
            fetch(Path::new("/nonexistent"), bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
    assert!(check_name(&"n".repeat(MAX_NAME)).is_ok());
}

#[test]
fn a_replaced_endpoint_file_is_left_alone() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let first = open_endpoint(&path, offered()).unwrap();
    let second = open_endpoint(&path, offered()).unwrap();
    first.close();
    assert!(path.exists(), "the second endpoint's file stays");
    second.close();
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_peers_cannot_block_crash_or_leak() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let registry = offered();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    register(&registry, "web", "tcp x", listener.as_fd());
    let _endpoint = open_endpoint(&path, registry).unwrap();

    // Garbage: hung up on, no fd.
    let mut garbage = UnixStream::connect(&path).unwrap();
    garbage.set_read_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
    garbage.write_all(&[0xff, 0xfe, b'\n']).unwrap();
    let mut answer = Vec::new();
    let _ = garbage.read_to_end(&mut answer);
    assert!(answer.is_empty());
    // A huge name: refused, the server goes on.
    let mut huge = UnixStream::connect(&path).unwrap();
    huge.set_read_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
    huge.set_write_timeout(Some(PEER_TIMEOUT * 2)).unwrap();
    let _ = huge.write_all(&vec![b'a'; 100_000]);
    let mut answer = Vec::new();
    let _ = huge.read_to_end(&mut answer);
    assert!(answer.is_empty());
    // Half a request, then silence; and no request at all.
    let mut half = UnixStream::connect(&path).unwrap();
    half.write_all(b"we").unwrap();
    let silent: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // A good client is still served at once.
    let started = Instant::now();
    assert!(fetch(&path, "web").unwrap().is_some());
    assert!(started.elapsed() < Duration::from_secs(1));
    // The silent ones are hung up on after PEER_TIMEOUT.
    for mut s in silent.into_iter().chain([half]) {
        s.set_read_timeout(Some(PEER_TIMEOUT * 3)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "hung up on");
    }
    assert!(started.elapsed() < PEER_TIMEOUT * 2);

    // No fd leaks over a burst of fetches, on either side: the handed
    // socket has as many fds as before (ours and the registry's), and
    // the endpoint has only its listener left.
    let before = fds_on(listener.as_raw_fd());
    assert_eq!(before, 2);
    for _ in 0..50 {
        let got = fetch(&path, "web").unwrap().unwrap();
        assert_eq!(fds_on(listener.as_raw_fd()), 3);
        drop(got);
        assert!(fetch(&path, "nothing").unwrap().is_none());
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while (endpoint_sockets(&dir) != 1 || fds_on(listener.as_raw_fd()) != before)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fds_on(listener.as_raw_fd()), before);
    assert_eq!(endpoint_sockets(&dir), 1, "only the listener is left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_misbehaving_endpoint_gives_at_most_one_fd() {
    let dir = temp_dir();
    let path = dir.join("ep");
    let fake = UnixListener::bind(&path).unwrap();
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let before = fds_on(a.as_raw_fd());
    let server = std::thread::spawn(move || {
        let replies: [(&[u8], usize); 4] = [
            (b"seamless/3 ok tcp x\n", 2),
            (b"seamless/3 ok tcp x\n", 0),
            (b"?", 1),
            (b"seamless/3 none\n", 1),
        ];
        for (payload, count) in replies {
            let (s, _) = fake.accept().unwrap();
            let mut line = [0u8; 64];
            let _ = (&s).read(&mut line).unwrap();
            let fds = vec![a.as_raw_fd(); count];
            let cmsgs: Vec<ControlMessage<'_>> = if count > 0 {
                vec![ControlMessage::ScmRights(&fds)]
            } else {
                Vec::new()
            };
            socket::sendmsg::<()>(
                s.as_raw_fd(),
                &[io::IoSlice::new(payload)],
                &cmsgs,
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        }
        a
    });
    assert_eq!(
        fetch(&path, "web").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        fetch(&path, "web").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert_eq!(
        fetch(&path, "web").unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    assert!(
        fetch(&path, "web").unwrap().is_none(),
        "fd with `none` dropped"
    );
    let a = server.join().unwrap();
    assert_eq!(fds_on(a.as_raw_fd()), before, "extra fds were closed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_peer_of_another_user_gets_nothing() {
    if !nix::unistd::geteuid().is_root() {
        crate::test_support::not_run("running a peer as another user needs root");
        return;
    }
    let dir = temp_dir();
    let path = dir.join("ep");
    let registry = offered();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    register(&registry, "ho-uid", "x", listener.as_fd());
    let _endpoint = open_endpoint(&path, registry).unwrap();
    // Let anyone connect, so that only SO_PEERCRED stands in the way.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the child makes only async-signal-safe calls (setgid,
    // setuid, socket, connect, write, recvmsg, _exit) on memory
    // prepared before the fork; the parent waits for it.
    let child = unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let mut code = 2;
            if libc::setgid(65534) == 0 && libc::setuid(65534) == 0 {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let mut addr: libc::sockaddr_un = std::mem::zeroed();
                addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (i, b) in c_path.as_bytes().iter().enumerate() {
                    addr.sun_path[i] = *b as libc::c_char;
                }
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0 {
                    libc::write(fd, b"ho-uid\n".as_ptr().cast(), 7);
                    let mut data = [0u8; 300];
                    let mut control = [0u8; 64];
                    let mut iov = libc::iovec {
                        iov_base: data.as_mut_ptr().cast(),
                        iov_len: data.len(),
                    };
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = &mut iov;
                    msg.msg_iovlen = 1;
                    msg.msg_control = control.as_mut_ptr().cast();
                    msg.msg_controllen = control.len() as _;
                    let n = libc::recvmsg(fd, &mut msg, 0);
                    // 0: closed (or reset: the request was left unread)
                    // without a byte; an fd only ever comes with one.
                    code = if n <= 0 { 0 } else { 1 };
                } else {
                    code = 3;
                }
            }
            libc::_exit(code);
        }
        pid
    };
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child), 0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

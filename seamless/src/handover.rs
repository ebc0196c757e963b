//! Listener handover between generations.
//!
//! Every socket obtained through [`crate::net`] is kept here, in a registry
//! of named duplicates. At stage 1 the old generation opens an endpoint: a
//! unix stream socket at `<pid file>.handover`, mode 0600, bound at a
//! temporary path and renamed into place. A thread (`seamless-handover`)
//! accepts and answers a peer whose request is already there; any other
//! peer gets a thread of its own (16 at most at once), so a silent peer
//! delays nobody. One request per connection: the peer sends
//! a name and a newline;
//! the answer is `+<address>` with the socket attached (`SCM_RIGHTS`), or
//! `-` when there is no socket by that name. Only a peer running as our
//! effective uid (`SO_PEERCRED`) gets an answer; a request is at most 256
//! bytes and must arrive within 2 s; every fd is closed after each
//! connection, whatever the peer did. The endpoint closes at stage 3 and its
//! file is removed if it is still ours.
//!
//! Both generations then hold the same socket: one accept queue, nothing
//! reset when the old generation stops accepting.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::report;

const MAX_REQUEST: usize = 256;
/// How long a peer may take to send its request.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `fetch` waits for the answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Peers served at once.
const MAX_IN_FLIGHT: usize = 16;
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Registered {
    name: String,
    /// Kind and address the program asked for, e.g. `tcp 127.0.0.1:80`.
    address: String,
    fd: OwnedFd,
}

static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a duplicate of `fd` under `name`, to hand on later.
pub(crate) fn register(name: &str, address: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut registry = registry();
    if registry.iter().any(|r| r.name == name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a socket named {name:?} exists already in this process"),
        ));
    }
    registry.push(Registered {
        name: name.to_owned(),
        address: address.to_owned(),
        fd: fd.try_clone_to_owned()?,
    });
    Ok(())
}

/// Where the endpoint of the generation using `pid_file` lives.
pub(crate) fn endpoint_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".handover");
    PathBuf::from(name)
}

/// A running handover endpoint; dropping it stops it and removes its file.
pub(crate) struct Endpoint {
    path: PathBuf,
    inode: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .finish()
    }
}

/// Opens the endpoint at `path` and starts serving the registry.
pub(crate) fn open_endpoint(path: &Path) -> io::Result<Endpoint> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|_| std::fs::rename(&tmp, path))
        .and_then(|_| std::fs::symlink_metadata(path));
    let inode = match placed {
        Ok(meta) => meta.ino(),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("seamless-handover".into())
            .spawn(move || serve(listener, &stop))?
    };
    Ok(Endpoint {
        path: path.to_owned(),
        inode,
        stop,
        thread: Some(thread),
    })
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Only if it is still ours: a later generation may have replaced it.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn serve(listener: UnixListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if !crate::net::readable(&listener, Duration::from_millis(50)).unwrap_or(false) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                // The usual peer has sent its request by the time it is
                // accepted: answer it here, without a thread.
                if crate::net::readable(&stream, Duration::ZERO).unwrap_or(false) {
                    if let Err(e) = answer(stream) {
                        report::debug!("handover request failed: {e}");
                    }
                    continue;
                }
                // Otherwise one thread per peer, a bounded number of them: a
                // peer that never speaks holds only its own thread, for
                // PEER_TIMEOUT.
                if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                    report::warning!("handover endpoint: too many peers at once; one refused");
                    continue;
                }
                let spawned = std::thread::Builder::new()
                    .name("seamless-handover-peer".into())
                    .spawn(move || {
                        if let Err(e) = answer(stream) {
                            report::debug!("handover request failed: {e}");
                        }
                        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                report::warning!("handover endpoint: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn answer(mut stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let peer = socket::getsockopt(&stream, sockopt::PeerCredentials)?;
    if peer.uid() != nix::unistd::geteuid().as_raw() {
        report::warning!(
            "handover endpoint: refused pid {} running as uid {}",
            peer.pid(),
            peer.uid()
        );
        return Ok(());
    }
    stream.set_read_timeout(Some(PEER_TIMEOUT))?;
    stream.set_write_timeout(Some(PEER_TIMEOUT))?;
    let name = read_request(&mut stream)?;
    let registry = registry();
    let Some(found) = registry.iter().find(|r| r.name == name) else {
        stream.write_all(b"-")?;
        return Ok(());
    };
    let payload = format!("+{}", found.address);
    let fds = [found.fd.as_raw_fd()];
    let sent = socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(payload.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    sent.map(|_| ()).map_err(io::Error::from)
}

/// Reads `name\n`, at most [`MAX_REQUEST`] bytes.
fn read_request(stream: &mut UnixStream) -> io::Result<String> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 64];
    loop {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            buf.truncate(end);
            return String::from_utf8(buf)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "name is not UTF-8"));
        }
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
    }
}

/// What the previous generation handed over.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) fd: OwnedFd,
    pub(crate) address: String,
}

/// Asks the endpoint at `path` for the socket named `name`. `Ok(None)` when
/// there is no endpoint or no such socket.
pub(crate) fn fetch(path: &Path, name: &str) -> io::Result<Option<Received>> {
    if name.len() >= MAX_REQUEST || name.contains('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long or has a newline",
        ));
    }
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(FETCH_TIMEOUT))?;
    stream.set_write_timeout(Some(FETCH_TIMEOUT))?;
    stream.write_all(format!("{name}\n").as_bytes())?;
    let mut payload = [0u8; MAX_REQUEST + 1];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let (bytes, fds) = {
        let mut iov = [IoSliceMut::new(&mut payload)];
        let msg = socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just installed these fds in our table;
                // nothing else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let text = String::from_utf8_lossy(&payload[..bytes]).into_owned();
    match (text.strip_prefix('+'), fds.len()) {
        (Some(address), 1) => Ok(Some(Received {
            fd: fds.into_iter().next().expect("one fd"),
            address: address.to_owned(),
        })),
        (Some(_), n) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected one socket, received {n}"),
        )),
        (None, _) => Ok(None), // extra fds, if any, are closed on drop
    }
}

#[cfg(test)]
pub(crate) fn clear_registry_for_tests(name: &str) {
    registry().retain(|r| r.name != name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::sync::atomic::AtomicUsize;

    fn temp_dir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "seamless-ho-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn a_tcp_listener_is_handed_over_with_its_queue() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        register("ho-tcp", &addr.to_string(), listener.as_fd()).unwrap();
        let endpoint = open_endpoint(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Queued before the handover, accepted through the received socket.
        let _client = TcpStream::connect(addr).unwrap();
        let got = fetch(&path, "ho-tcp").unwrap().expect("handed over");
        assert_eq!(got.address, addr.to_string());
        let received = TcpListener::from(got.fd);
        let (_conn, _) = received.accept().unwrap();
        assert!(fetch(&path, "unknown").unwrap().is_none());
        drop(endpoint);
        assert!(!path.exists(), "endpoint removed");
        assert!(fetch(&path, "ho-tcp").unwrap().is_none());
        clear_registry_for_tests("ho-tcp");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_peers_cannot_block_crash_or_leak() {
        let dir = temp_dir();
        let path = dir.join("ep");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        register("ho-hostile", "x", listener.as_fd()).unwrap();
        let _endpoint = open_endpoint(&path).unwrap();
        // Garbage, then a huge name, then a client that never speaks.
        let mut garbage = UnixStream::connect(&path).unwrap();
        garbage.write_all(&[0xff, 0xfe, b'\n']).unwrap();
        let mut huge = UnixStream::connect(&path).unwrap();
        let _ = huge.write_all(&vec![b'a'; 100_000]);
        let _silent = UnixStream::connect(&path).unwrap();
        // A good client is still served at once: the silent one holds only
        // its own thread.
        let started = std::time::Instant::now();
        assert!(fetch(&path, "ho-hostile").unwrap().is_some());
        assert!(started.elapsed() < Duration::from_secs(1));
        // No fd leaks over many fetches.
        let before = open_fds();
        for _ in 0..50 {
            drop(fetch(&path, "ho-hostile").unwrap());
        }
        // The server's side closes as each peer thread ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while open_fds() != before && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(open_fds(), before);
        assert!(fetch(&path, &"n".repeat(300)).is_err(), "refused locally");
        clear_registry_for_tests("ho-hostile");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peer_of_another_user_gets_nothing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: running a peer as another user needs root");
            return;
        }
        let dir = temp_dir();
        let path = dir.join("ep");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        register("ho-uid", "x", listener.as_fd()).unwrap();
        let _endpoint = open_endpoint(&path).unwrap();
        // Let anyone connect, so that only SO_PEERCRED stands in the way.
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
        clear_registry_for_tests("ho-uid");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_are_unique_per_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        register("ho-dup", "x", listener.as_fd()).unwrap();
        assert!(register("ho-dup", "x", listener.as_fd()).is_err());
        clear_registry_for_tests("ho-dup");
    }
}

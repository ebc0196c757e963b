//! systemd's readiness protocol (`sd_notify`), spoken by the launcher.
//!
//! Under `Type=notify` systemd watches its main pid, which is the launcher.
//! The launcher reports `READY=1` once the daemon has called `started()`,
//! `RELOADING=1` when a restart is requested, `STOPPING=1` when it steps
//! aside or the daemon begins its graceful shutdown, and, while a drain
//! lasts, `EXTEND_TIMEOUT_USEC` every few seconds so that systemd's stop
//! timeout does not cut it; `STATUS=` lines name the generation and how a
//! restart went (`systemctl status` shows the last one). Nothing happens
//! when `NOTIFY_SOCKET` is not set.

use std::os::unix::net::UnixDatagram;

use crate::report;

/// Sends state lines to `$NOTIFY_SOCKET`, if there is one.
pub(crate) struct Notifier {
    target: Option<std::ffi::OsString>,
    socket: Option<UnixDatagram>,
    ready_sent: bool,
}

impl Notifier {
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").filter(|t| !t.is_empty());
        let socket = target.as_ref().and_then(|_| UnixDatagram::unbound().ok());
        Notifier {
            target,
            socket,
            ready_sent: false,
        }
    }

    fn send(&self, state: &str) {
        let (Some(target), Some(socket)) = (&self.target, &self.socket) else {
            return;
        };
        let result = match target.as_encoded_bytes() {
            [b'@', name @ ..] => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
            }
            _ => socket.send_to(state.as_bytes(), target),
        };
        if let Err(e) = result {
            report::debug!("sd_notify {state:?} failed: {e}");
        }
    }

    /// Whether there is a `NOTIFY_SOCKET` to talk to.
    pub(crate) fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// Asks systemd for `by` more before it gives up on the stop.
    pub(crate) fn extend_timeout(&self, by: std::time::Duration) {
        self.send(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    /// The daemon called `started()` (only the first time counts).
    pub(crate) fn ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.send(&format!("READY=1\nMAINPID={}", std::process::id()));
        }
    }

    /// A restart was requested.
    pub(crate) fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// A free-form status line for `systemctl status` (one line).
    pub(crate) fn status(&self, line: &str) {
        self.send(&format!("STATUS={}", line.replace('\n', " ")));
    }

    /// The launcher steps aside, or the daemon is draining.
    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("seamless-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier {
            target: Some(path.clone().into_os_string()),
            socket: UnixDatagram::unbound().ok(),
            ready_sent: false,
        };
        n.ready();
        n.ready();
        n.status("generation 7 serving\nnow");
        n.stopping();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..len])
            .unwrap()
            .starts_with("READY=1\nMAINPID="));
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=generation 7 serving now");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

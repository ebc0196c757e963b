//! TLS under the drain (feature `rustls`): the handshake runs in each
//! connection's own task, bounded by a timeout and by the drain's
//! deadline, never in the accept loop, so that a slow or silent client
//! delays no other. ALPN tells HTTP/2 from HTTP/1.1 before a byte of HTTP
//! is read. After the handshake the connection is driven by the same rules
//! as a cleartext one, over the TLS stream: its shutdown sends
//! `close_notify` and then the TCP end-of-file, and the lingering close
//! reads what the client still sends (its own `close_notify`) through TLS.

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::track::{Pending, TrackedIo};
use crate::report;

/// How long a client may take over its TLS handshake, by default: enough
/// for a slow network, short enough that a client that connects and says
/// nothing holds its socket no longer than a request would.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocols offered when the configuration names none: HTTP/2
/// first, as browsers and gRPC clients expect.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What `Serve::tls` sets: the acceptor and the handshake's time limit.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl Tls {
    /// TLS with `config`; a configuration without ALPN protocols gets
    /// `h2` and `http/1.1`, both of which the server speaks.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Tls {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        } else {
            config
        };
        Tls {
            acceptor: TlsAcceptor::from(config),
            timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs the handshake on `io`, the connection `pending` counts; its
    /// TLS stream, counted for the drain, or `None` if the handshake
    /// failed, timed out, or the drain's deadline passed first.
    pub(crate) async fn handshake<I>(
        &self,
        io: I,
        pending: Pending,
    ) -> Option<TrackedIo<TlsStream<I>>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let accept = tokio::time::timeout(self.timeout, self.acceptor.accept(io));
        let mut accept = std::pin::pin!(accept);
        let done = poll_fn(|cx| {
            if let Poll::Ready(done) = accept.as_mut().poll(cx) {
                return Poll::Ready(Some(done));
            }
            pending.poll_cut(cx).map(|()| None)
        })
        .await;
        let stream = match done {
            Some(Ok(Ok(stream))) => stream,
            Some(Ok(Err(e))) => {
                report::debug!("TLS handshake: {e}");
                return None;
            }
            Some(Err(_)) => {
                report::debug!("TLS handshake: no answer within {:?}", self.timeout);
                return None;
            }
            None => return None,
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            // The drain sends this connection a GOAWAY, even before its
            // client's preface is read.
            if let Some(track) = pending.track() {
                track.mark_h2();
            }
        }
        pending.into_io(stream)
    }
}

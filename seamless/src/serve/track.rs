//! What the drain knows about each connection, and the I/O wrapper that
//! learns it.
//!
//! [`Shared`] is one per server: the phase (serving, draining, cut), the
//! live connections (a connection counts from its accept to the drop of
//! its socket, upgraded ones included) and the wakers to call when the
//! phase changes. [`Track`] is one per connection: requests in flight, an
//! activity count (bytes received, responses finished), the protocol.
//! [`TrackedIo`] counts what is read, recognises HTTP/2 by its preface, and
//! fails the I/O of a connection the drain cut.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Options, Upgrades};

const SERVING: u8 = 0;
const DRAINING: u8 = 1;
const CUT: u8 = 2;

/// The state a server's connections share.
pub(crate) struct Shared {
    pub(crate) options: Options,
    phase: AtomicU8,
    conns: Mutex<Conns>,
    /// Woken when the last connection is gone.
    serve_waker: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    live: HashMap<u64, Arc<Track>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn keep_waker(slot: &mut Option<Waker>, waker: &Waker) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *slot = Some(waker.clone());
    }
}

impl Shared {
    pub(crate) fn new(options: Options) -> Shared {
        Shared {
            options,
            phase: AtomicU8::new(SERVING),
            conns: Mutex::new(Conns::default()),
            serve_waker: Mutex::new(None),
        }
    }

    /// True once the shutdown began: responses carry `Connection: close`.
    pub(crate) fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Acquire) >= DRAINING
    }

    /// True once the deadline passed: every connection is closed.
    pub(crate) fn is_cut(&self) -> bool {
        self.phase.load(Ordering::Acquire) == CUT
    }

    /// A new connection, live until its [`TrackedIo`] is dropped.
    pub(crate) fn register(&self) -> Arc<Track> {
        let mut conns = lock(&self.conns);
        let id = conns.next_id;
        conns.next_id += 1;
        let track = Arc::new(Track {
            id,
            in_flight: AtomicUsize::new(0),
            activity: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            wakers: Mutex::new(Wakers::default()),
        });
        conns.live.insert(id, track.clone());
        track
    }

    fn unregister(&self, id: u64) {
        let empty = {
            let mut conns = lock(&self.conns);
            conns.live.remove(&id);
            conns.live.is_empty()
        };
        if empty && self.is_draining() {
            if let Some(w) = lock(&self.serve_waker).take() {
                w.wake();
            }
        }
    }

    /// The shutdown began: wake every connection so that it applies the
    /// drain's rules; with [`Upgrades::Close`], cut the upgraded ones.
    pub(crate) fn begin_drain(&self) {
        self.phase.store(DRAINING, Ordering::Release);
        let close_upgraded = self.options.upgrades == Upgrades::Close;
        for track in self.live() {
            if close_upgraded && track.upgraded.load(Ordering::Acquire) {
                track.cut.store(true, Ordering::Release);
            }
            track.wake_all();
        }
    }

    /// The deadline passed: cut every connection left; returns how many.
    pub(crate) fn cut_all(&self) -> usize {
        self.phase.store(CUT, Ordering::Release);
        let live = self.live();
        for track in &live {
            track.cut.store(true, Ordering::Release);
            track.wake_all();
        }
        live.len()
    }

    /// The HTTP part of a connection is over. If it was upgraded and the
    /// drain closes upgrades, its I/O fails from now on.
    pub(crate) fn connection_ended(&self, track: &Track) {
        if track.upgraded.load(Ordering::Acquire)
            && self.is_draining()
            && self.options.upgrades == Upgrades::Close
        {
            track.cut.store(true, Ordering::Release);
            track.wake_all();
        }
    }

    /// Ready when no connection is left.
    pub(crate) fn poll_all_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        keep_waker(&mut lock(&self.serve_waker), cx.waker());
        if lock(&self.conns).live.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn live(&self) -> Vec<Arc<Track>> {
        lock(&self.conns).live.values().cloned().collect()
    }
}

/// One connection, as the drain sees it.
pub(crate) struct Track {
    id: u64,
    /// Requests whose response is not finished (the service's future, then
    /// the response body).
    in_flight: AtomicUsize,
    /// Bumped on every read that returned bytes and every finished
    /// response: unchanged over a linger means idle over it.
    activity: AtomicU64,
    h2: AtomicBool,
    /// A `101 Switching Protocols` was sent.
    upgraded: AtomicBool,
    /// The drain closed this connection: its I/O fails.
    cut: AtomicBool,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    /// The task driving the HTTP connection.
    task: Option<Waker>,
    /// The tasks using the connection after an upgrade.
    read: Option<Waker>,
    write: Option<Waker>,
}

impl Track {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Ordering::Acquire)
    }

    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    pub(crate) fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn request_ended(&self) {
        self.activity.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn set_task_waker(&self, waker: &Waker) {
        keep_waker(&mut lock(&self.wakers).task, waker);
    }

    /// Wakes the connection's tasks. The wakers stay: the connection task
    /// gives its waker once, not at every poll, and must be woken again
    /// by a later event (the deadline after the drain began).
    fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let w = lock(&self.wakers);
            [&w.task, &w.read, &w.write]
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// The HTTP/2 connection preface starts with these bytes (RFC 9113, 3.4);
/// no HTTP/1 request does (`PRI` is reserved for this).
const H2_PREFACE: &[u8] = b"PRI ";

/// A connection's I/O, counted for the drain. Dropping it (hyper's
/// connection, or the application's upgraded stream) ends the connection
/// for the drain.
pub(crate) struct TrackedIo<I> {
    inner: I,
    track: Arc<Track>,
    shared: Arc<Shared>,
    /// How many of the first bytes matched the HTTP/2 preface; `None` once
    /// decided.
    sniffing: Option<usize>,
    /// The lingering close under way: its time limit.
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a closing connection goes on reading (and discarding) what the
/// client still sends, after our side of it was shut down.
///
/// Closing a socket whose receive queue holds data makes the kernel send a
/// reset, and a reset makes the client's kernel discard what it received
/// but the client has not read yet: the last response, lost. So a
/// connection is closed in two steps (RFC 9112, 9.6): `shutdown(SHUT_WR)`,
/// which sends our end-of-file after the response, then reads until the
/// client's end-of-file (a client that got `Connection: close` or a
/// GOAWAY closes at once) or this limit.
const LINGERING_CLOSE: std::time::Duration = std::time::Duration::from_secs(2);

impl<I> TrackedIo<I> {
    pub(crate) fn new(inner: I, track: Arc<Track>, shared: Arc<Shared>) -> TrackedIo<I> {
        TrackedIo {
            inner,
            track,
            shared,
            sniffing: Some(0),
            lingering: None,
        }
    }

    fn sniff(&mut self, bytes: &[u8]) {
        let Some(matched) = self.sniffing else { return };
        let want = &H2_PREFACE[matched..];
        let n = want.len().min(bytes.len());
        if bytes[..n] != want[..n] {
            self.sniffing = None;
        } else if matched + n == H2_PREFACE.len() {
            self.sniffing = None;
            self.track.mark_h2();
        } else {
            self.sniffing = Some(matched + n);
        }
    }

    /// For a cut connection, the error every call returns; for an upgraded
    /// one, keeps the waker so that a cut wakes it.
    fn check(&self, cx: &mut Context<'_>, write: bool) -> Option<io::Error> {
        if self.track.cut.load(Ordering::Acquire) {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the server's graceful shutdown",
            ));
        }
        if self.track.upgraded.load(Ordering::Acquire) {
            let mut wakers = lock(&self.track.wakers);
            let slot = if write {
                &mut wakers.write
            } else {
                &mut wakers.read
            };
            keep_waker(slot, cx.waker());
        }
        None
    }
}

impl<I> Drop for TrackedIo<I> {
    fn drop(&mut self) {
        self.shared.unregister(self.track.id);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TrackedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx, false) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.track.activity.fetch_add(1, Ordering::AcqRel);
                if self.sniffing.is_some() {
                    self.sniff(new);
                }
            }
        }
        result
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TrackedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx, true) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx, true) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx, true) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lingering.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if this.track.upgraded.load(Ordering::Acquire) {
                // The application's stream: its close is its own.
                return Poll::Ready(Ok(()));
            }
            this.lingering = Some(Box::pin(tokio::time::sleep(LINGERING_CLOSE)));
        }
        if this.track.cut.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut discard = [0u8; 1024];
        loop {
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        match this.lingering.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniffed(chunks: &[&[u8]]) -> bool {
        let shared = Arc::new(Shared::new(Options::default()));
        let track = shared.register();
        let mut io = TrackedIo::new((), track.clone(), shared);
        for c in chunks {
            io.sniff(c);
        }
        track.is_h2()
    }

    #[test]
    fn the_h2_preface_is_recognised_across_reads() {
        assert!(sniffed(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]));
        assert!(sniffed(&[b"P", b"R", b"I * HTTP/2.0"]));
        assert!(!sniffed(&[b"GET / HTTP/1.1\r\n"]));
        assert!(!sniffed(&[b"PR", b"IX"]));
        assert!(!sniffed(&[b"PUT ", b"PRI "]));
    }
}

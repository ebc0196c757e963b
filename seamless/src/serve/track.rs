//! What the drain knows about each connection, and the I/O wrapper that
//! learns it.
//!
//! [`Shared`] is one per server, and nothing on a request's path writes to
//! it. It holds the phase (serving, draining, cut), stored twice in a
//! server's life and otherwise only read; the count of live connections (a
//! connection counts from its accept to the drop of its socket, upgraded
//! ones included), changed once at the accept and once at the close; and
//! the live connections themselves, in shards, so that the drain can wake
//! each one. A connection's shard is its accept number modulo the number
//! of shards: consecutive connections, whose closes come from different
//! workers, take different locks, and no lock is common to all accepts and
//! closes.
//!
//! [`Track`] is one per connection: requests in flight, an activity count
//! (bytes received, responses finished), the protocol, whether its driver
//! saw the drain begin, and the wakers the drain calls. Only the
//! connection's own tasks write to it.
//!
//! [`TrackedIo`] counts what is read, recognises HTTP/2 by its preface, and
//! fails the I/O of a connection the drain cut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Options, Upgrades};

/// Where the server is in its life; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    /// The shutdown began: the drain's rules apply.
    Draining,
    /// The deadline passed: every connection is closed.
    Cut,
}

impl Phase {
    fn from_u8(phase: u8) -> Phase {
        match phase {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Cut,
        }
    }
}

/// The state a server's connections share.
pub(crate) struct Shared {
    pub(crate) options: Options,
    /// A [`Phase`]. Read on every poll of every connection, written twice:
    /// its cache line stays in every core's cache until the drain.
    phase: AtomicU8,
    live: AtomicUsize,
    shards: Box<[Mutex<Shard>]>,
    /// Woken when the last connection is gone during the drain.
    serve_waker: Mutex<Option<Waker>>,
    /// Told when the drain begins: the `GoingAway` signals wait on it.
    pub(crate) drain_began: Notify,
    /// When the drain must end; set as it begins.
    deadline: OnceLock<Instant>,
}

/// Some of the live connections: a slab, so that a connection's slot is
/// found without a search.
#[derive(Default)]
struct Shard {
    slots: Vec<Option<Arc<Track>>>,
    free: Vec<usize>,
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
        // A few shards per worker: accepts and closes on different workers
        // rarely meet on one lock.
        let workers = std::thread::available_parallelism().map_or(4, |n| n.get());
        Shared {
            options,
            phase: AtomicU8::new(Phase::Serving as u8),
            live: AtomicUsize::new(0),
            shards: (0..workers * 4).map(|_| Mutex::default()).collect(),
            serve_waker: Mutex::new(None),
            drain_began: Notify::new(),
            deadline: OnceLock::new(),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    /// Whether the I/O of `track`'s connection fails: at the deadline, and
    /// from the shutdown on for an upgraded connection with
    /// [`Upgrades::Close`] once the application owns it (its `101` is
    /// written).
    fn is_cut(&self, track: &Track) -> bool {
        match self.phase() {
            Phase::Serving => false,
            Phase::Draining => {
                self.options.upgrades == Upgrades::Close && track.handed_off.load(Ordering::SeqCst)
            }
            Phase::Cut => true,
        }
    }

    /// A new connection, the `number`th accepted, live until its
    /// [`TrackedIo`] is dropped.
    pub(crate) fn register(&self, number: u64) -> Arc<Track> {
        let shard = (number % self.shards.len() as u64) as usize;
        self.live.fetch_add(1, Ordering::SeqCst);
        let mut s = lock(&self.shards[shard]);
        let slot = s.free.pop().unwrap_or_else(|| {
            s.slots.push(None);
            s.slots.len() - 1
        });
        let track = Arc::new(Track {
            shard,
            slot,
            in_flight: AtomicUsize::new(0),
            activity: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            handed_off: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wakers: Mutex::new(Wakers::default()),
        });
        s.slots[slot] = Some(track.clone());
        track
    }

    fn unregister(&self, track: &Track) {
        {
            let mut s = lock(&self.shards[track.shard]);
            s.slots[track.slot] = None;
            s.free.push(track.slot);
        }
        // The phase is read after the count: `poll_all_closed` stores its
        // waker before it reads the count, and `begin_drain` stores the
        // phase before the server first polls it.
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && self.phase() != Phase::Serving {
            if let Some(w) = lock(&self.serve_waker).take() {
                w.wake();
            }
        }
    }

    /// The shutdown began: wake every connection so that it applies the
    /// drain's rules (and, with [`Upgrades::Close`], an upgraded one finds
    /// its I/O cut).
    pub(crate) fn begin_drain(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::SeqCst);
        self.drain_began.notify_waiters();
        self.wake_all();
    }

    /// The drain ends at `deadline`; said before it begins.
    pub(crate) fn set_deadline(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
    }

    /// When the drain must end, once it began.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// The deadline passed: cut every connection left; returns how many.
    pub(crate) fn cut_all(&self) -> usize {
        self.phase.store(Phase::Cut as u8, Ordering::SeqCst);
        self.wake_all();
        self.live.load(Ordering::SeqCst)
    }

    /// Wakes the tasks of every live connection, one shard at a time and
    /// outside its lock.
    fn wake_all(&self) {
        for shard in self.shards.iter() {
            let tracks: Vec<Arc<Track>> = lock(shard).slots.iter().flatten().cloned().collect();
            for track in tracks {
                track.wake_all();
            }
        }
    }

    /// The HTTP part of a connection is over. If it was upgraded, the
    /// application owns it now, and the drain may cut it.
    pub(crate) fn connection_ended(&self, track: &Track) {
        if track.upgraded.load(Ordering::Acquire) {
            track.handed_off.store(true, Ordering::SeqCst);
            if self.is_cut(track) {
                track.wake_all();
            }
        }
    }

    /// Ready when no connection is left.
    pub(crate) fn poll_all_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        keep_waker(&mut lock(&self.serve_waker), cx.waker());
        if self.live.load(Ordering::SeqCst) == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// One connection, as the drain sees it.
pub(crate) struct Track {
    /// Where [`Shared`] keeps it.
    shard: usize,
    slot: usize,
    /// Requests whose response is not finished (the service's future, then
    /// the response body).
    in_flight: AtomicUsize,
    /// Bumped on every read that returned bytes and every finished
    /// response: unchanged over a linger means idle over it.
    activity: AtomicU64,
    h2: AtomicBool,
    /// A `101 Switching Protocols` was sent.
    upgraded: AtomicBool,
    /// The HTTP part of an upgraded connection is over: the application
    /// owns the socket.
    handed_off: AtomicBool,
    /// The connection's driver saw the shutdown begin: HTTP/1 responses
    /// carry `Connection: close` from now on. Written by that task only,
    /// before it polls the responses that read it.
    draining: AtomicBool,
    wakers: Mutex<Wakers>,
}

/// Which of a connection's tasks a waker belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// The task driving the HTTP connection.
    Task,
    /// The tasks using the connection after an upgrade.
    Read,
    Write,
}

/// The wakers the drain calls, one per [`Side`]. Locked when a task gives a
/// new waker (once per task, as each side keeps what it gave) and when the
/// drain wakes the connection: never per read or write.
#[derive(Default)]
struct Wakers([Option<Waker>; 3]);

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

    /// Whether an HTTP/1 response finished now carries `Connection: close`.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The connection's driver saw the shutdown begin.
    pub(crate) fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(crate) fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn request_ended(&self) {
        self.activity.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Gives the drain `side`'s waker. The caller keeps a copy and calls
    /// this only when its waker changes.
    pub(crate) fn set_waker(&self, side: Side, waker: &Waker) {
        keep_waker(&mut lock(&self.wakers).0[side as usize], waker);
    }

    /// Wakes the connection's tasks. The wakers stay: each task gives its
    /// waker once, not at every poll, and must be woken again by a later
    /// event (the deadline after the drain began).
    fn wake_all(&self) {
        let wakers: Vec<Waker> = lock(&self.wakers).0.iter().flatten().cloned().collect();
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
    /// The wakers an upgraded connection's reads and writes last gave the
    /// drain, compared here so that a read or a write takes no lock.
    given_read: Option<Waker>,
    given_write: Option<Waker>,
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
            given_read: None,
            given_write: None,
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

    /// For a cut connection, the error every call returns. An upgraded
    /// connection first gives the drain its waker, if it changed, so that
    /// a cut wakes it: given before the phase is read, it cannot miss one.
    fn check(&mut self, cx: &mut Context<'_>, side: Side) -> Option<io::Error> {
        if self.track.upgraded.load(Ordering::Acquire) {
            let given = match side {
                Side::Read | Side::Task => &mut self.given_read,
                Side::Write => &mut self.given_write,
            };
            if !given.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                self.track.set_waker(side, cx.waker());
                *given = Some(cx.waker().clone());
            }
        }
        self.shared.is_cut(&self.track).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the server's graceful shutdown",
            )
        })
    }
}

impl<I> Drop for TrackedIo<I> {
    fn drop(&mut self) {
        self.shared.unregister(&self.track);
    }
}

/// A connection registered at its accept whose I/O is not ready yet (its
/// TLS handshake is under way in its own task): the drain counts it and
/// can cut it. Dropped without becoming a [`TrackedIo`] (the handshake
/// failed), it is unregistered.
#[cfg(feature = "rustls")]
pub(crate) struct Pending(Option<(Arc<Track>, Arc<Shared>)>);

#[cfg(feature = "rustls")]
impl Pending {
    pub(crate) fn new(track: Arc<Track>, shared: Arc<Shared>) -> Pending {
        Pending(Some((track, shared)))
    }

    pub(crate) fn track(&self) -> Option<&Arc<Track>> {
        self.0.as_ref().map(|(track, _)| track)
    }

    /// Whether the drain's deadline passed; `track`'s task is woken when
    /// it does.
    pub(crate) fn poll_cut(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((track, shared)) = &self.0 else {
            return Poll::Ready(());
        };
        track.set_waker(Side::Task, cx.waker());
        if shared.phase() == Phase::Cut {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The connection's I/O is ready: from now on it counts as `inner`.
    pub(crate) fn into_io<I>(mut self, inner: I) -> Option<TrackedIo<I>> {
        let (track, shared) = self.0.take()?;
        Some(TrackedIo::new(inner, track, shared))
    }
}

#[cfg(feature = "rustls")]
impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((track, shared)) = self.0.take() {
            shared.unregister(&track);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TrackedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx, Side::Read) {
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
        if let Some(e) = self.check(cx, Side::Write) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx, Side::Write) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx, Side::Write) {
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
        if this.shared.is_cut(&this.track) {
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
        let track = shared.register(0);
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

    /// Counts the times it is woken.
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_drain_reaches_every_live_connection_in_every_shard() {
        let shared = Arc::new(Shared::new(Options::default()));
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let woken = || wakes.0.load(Ordering::SeqCst);
        let mut ios: Vec<_> = (0..10 * shared.shards.len() as u64)
            .map(|n| {
                let track = shared.register(n);
                track.set_waker(Side::Task, &waker);
                TrackedIo::new((), track, shared.clone())
            })
            .collect();
        // Every other connection closes before the shutdown; their slots
        // are taken again by new ones.
        let closed = ios.len() / 2;
        for n in 0..closed {
            drop(ios.swap_remove(n));
        }
        for n in 0..3 {
            let track = shared.register(n);
            track.set_waker(Side::Task, &waker);
            ios.push(TrackedIo::new((), track, shared.clone()));
        }
        let live = ios.len();
        assert_eq!(woken(), 0);

        shared.begin_drain();
        assert_eq!(woken(), live, "each live connection woken once");
        assert!(ios.iter().all(|io| !shared.is_cut(&io.track)));
        assert_eq!(shared.cut_all(), live);
        assert_eq!(woken(), 2 * live, "and once more at the deadline");
        assert!(ios.iter().all(|io| shared.is_cut(&io.track)));

        let mut cx = Context::from_waker(&waker);
        assert!(shared.poll_all_closed(&mut cx).is_pending());
        drop(ios);
        assert!(shared.poll_all_closed(&mut cx).is_ready());
    }
}

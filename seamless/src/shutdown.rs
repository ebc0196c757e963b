//! The shutdown signal a server waits on, and the completion of the
//! shutdown handlers.
//!
//! Both are one-way latches. [`Shutdown`] fires when stage 3 begins (a TERM
//! from the next generation or the supervisor, Ctrl-C, the handover timeout,
//! or the loss of the launcher); it is a blocking waiter and a
//! runtime-agnostic [`Future`] at once. The completion latch opens when
//! every `on_shutdown` handler has returned; [`wait_for_shutdown_handlers`]
//! and the code the `#[seamless::daemon]` attribute generates after `main`
//! wait on it.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

/// A one-way latch: async waiters, blocking waiters and an fd that
/// becomes readable, all released when it opens.
///
/// Each async waiter owns one slot of a slab, found by index: registering,
/// refreshing and releasing it are O(1) under a lock held for just that,
/// and a waiter that is dropped or has seen the latch open gives its slot
/// back, so nothing of a finished task stays behind (a tokio waker keeps
/// its whole task alive). The slab holds at most as many slots as there are
/// waiters at once, and its memory is returned once none is left.
///
/// A slab rather than a crate's waiter list (`event-listener`, tokio's
/// `Notify`): the latch opens once, so it needs no queueing or fairness,
/// only O(1) slots, and the runtime crate stays free of an async runtime
/// and of another dependency for some 60 lines.
pub(crate) struct Latch {
    /// Read without the lock by the fast paths; written under it.
    open: AtomicBool,
    waiters: Mutex<Waiters>,
    changed: Condvar,
    /// Readable once the latch is open; made on first request.
    fd: OnceLock<EventFd>,
}

#[derive(Default)]
struct Waiters {
    open: bool,
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Waiters {
    fn take_slot(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(waker);
                slot
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn give_back(&mut self, slot: usize) {
        self.slots[slot] = None;
        self.free.push(slot);
        if self.free.len() == self.slots.len() {
            // Nobody waits: return what a crowd of waiters grew.
            *self = Waiters {
                open: self.open,
                ..Waiters::default()
            };
        }
    }
}

/// How many slots the slab holds and how many of them are taken.
#[cfg(test)]
fn slots(latch: &Latch) -> (usize, usize) {
    let waiters = latch.lock();
    (
        waiters.slots.len(),
        waiters.slots.len() - waiters.free.len(),
    )
}

impl Latch {
    pub(crate) const fn new() -> Latch {
        Latch {
            open: AtomicBool::new(false),
            waiters: Mutex::new(Waiters {
                open: false,
                slots: Vec::new(),
                free: Vec::new(),
            }),
            changed: Condvar::new(),
            fd: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the latch; returns false if it was open already.
    pub(crate) fn open(&self) -> bool {
        let wakers: Vec<Waker> = {
            let mut waiters = self.lock();
            if waiters.open {
                return false;
            }
            waiters.open = true;
            self.open.store(true, Ordering::Release);
            if let Some(fd) = self.fd.get() {
                signal(fd);
            }
            // The slots stay (their owners give them back); the wakers go.
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        true
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn wait(&self) {
        let mut waiters = self.lock();
        while !waiters.open {
            waiters = self
                .changed
                .wait(waiters)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits at most `timeout`; true if the latch is open.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut waiters = self.lock();
        while !waiters.open {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            waiters = self
                .changed
                .wait_timeout(waiters, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Polls on behalf of the waiter that owns `slot` (none yet: `None`).
    /// Ready gives the slot back; pending keeps the newest waker in it.
    fn poll(&self, slot: &mut Option<usize>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_open() {
            self.release(slot);
            return Poll::Ready(());
        }
        let mut waiters = self.lock();
        if waiters.open {
            drop(waiters);
            self.release(slot);
            return Poll::Ready(());
        }
        match *slot {
            Some(taken) => match &mut waiters.slots[taken] {
                Some(kept) if kept.will_wake(cx.waker()) => {}
                kept => *kept = Some(cx.waker().clone()),
            },
            None => *slot = Some(waiters.take_slot(cx.waker().clone())),
        }
        Poll::Pending
    }

    /// Gives `slot` back, if the waiter holds one.
    fn release(&self, slot: &mut Option<usize>) {
        if let Some(taken) = slot.take() {
            self.lock().give_back(taken);
        }
    }

    /// An fd that is readable from the moment the latch opens.
    pub(crate) fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_fd());
        }
        // Made under the lock, so that `open` either finds it and signals
        // it, or has opened the latch before and it is signalled here.
        let waiters = self.lock();
        if self.fd.get().is_none() {
            let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            if waiters.open {
                signal(&fd);
            }
            let _ = self.fd.set(fd);
        }
        drop(waiters);
        Ok(self.fd.get().expect("set above").as_fd())
    }
}

/// Makes `fd` readable for good: nobody reads it, so its counter never
/// drops back to zero.
fn signal(fd: &EventFd) {
    // Only a full counter refuses a write (EAGAIN, after 2^64 - 2 of
    // them); the latch opens once, so this one cannot fail.
    let _ = fd.write(1);
}

/// Opens when stage 3 (the graceful shutdown) begins.
/// When the graceful shutdown must be over (its start plus
/// `shutdown_timeout`), set by the daemon as the shutdown begins.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Records when the shutdown about to begin must be over.
pub(crate) fn set_deadline(at: Option<Instant>) {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner()) = at;
}

/// When the graceful shutdown must be over, if it has begun and a
/// `shutdown_timeout` is set.
pub(crate) fn deadline() -> Option<Instant> {
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) static SHUTDOWN: Latch = Latch::new();
/// Opens when every shutdown handler has returned.
pub(crate) static HANDLERS_DONE: Latch = Latch::new();

/// Fires when this process must shut down gracefully: stop accepting, finish
/// what is in flight, return from `main`.
///
/// A `Shutdown` is, at once:
///
/// - a [`Future`] that works with any async runtime (it only uses the waker
///   it is given). A waiting `Shutdown` holds one slot, given back when it
///   completes or is dropped, so a server can wait on it in every
///   connection's task for months: nothing of a finished task is kept;
/// - a blocking waiter ([`wait`](Shutdown::wait),
///   [`wait_timeout`](Shutdown::wait_timeout));
/// - a file descriptor ([`AsFd`], [`AsRawFd`]) that becomes readable when
///   the shutdown begins, for `poll(2)`, epoll or mio next to the sockets
///   of a blocking server. [`net::accept`](crate::net::accept) waits on it
///   and a listener at once.
///
/// Clones are cheap and all fire together; each clone waits on its own.
///
/// ```no_run
/// # async fn serve() {
/// // axum: axum::serve(listener, app).with_graceful_shutdown(seamless::shutdown())
/// seamless::shutdown().await;
/// # }
/// ```
///
/// ```no_run
/// std::thread::spawn(|| {
///     seamless::shutdown().wait();
///     // stop the accept loop here
/// });
/// ```
#[derive(Debug, Default)]
pub struct Shutdown {
    /// The slot this waiter holds in the latch while it waits.
    slot: Option<usize>,
}

impl Clone for Shutdown {
    /// A new waiter: it holds no slot until it is polled.
    fn clone(&self) -> Shutdown {
        Shutdown { slot: None }
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        SHUTDOWN.release(&mut self.slot);
    }
}

impl Shutdown {
    /// Blocks the calling thread until the shutdown begins (not until the
    /// shutdown handlers are done: that is
    /// [`wait_for_shutdown_handlers`]).
    pub fn wait(&self) {
        SHUTDOWN.wait();
    }

    /// Blocks at most `timeout`; returns true if the shutdown has begun.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        SHUTDOWN.wait_timeout(timeout)
    }

    /// True once the shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        SHUTDOWN.is_open()
    }

    /// When the graceful shutdown must be over: its start plus the
    /// daemon's `shutdown_timeout`, past which the process exits with
    /// status 1. `None` before the shutdown begins, or without a
    /// `shutdown_timeout`. A server bounds its drain by it
    /// (`seamless::axum::serve` and `seamless::hyper::serve` end theirs a
    /// little before it, so that `main` returns first).
    ///
    /// ```no_run
    /// let shutdown = seamless::shutdown();
    /// shutdown.wait();
    /// if let Some(deadline) = shutdown.deadline() {
    ///     let left = deadline.saturating_duration_since(std::time::Instant::now());
    ///     println!("{left:?} to drain");
    /// }
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        deadline()
    }

    /// The fd behind [`AsFd`], or why it could not be made (the process
    /// is out of file descriptors). A daemon started by
    /// `#[seamless::daemon]` or [`Builder`](crate::Builder) made it at
    /// start-up, so this cannot fail there.
    ///
    /// ```no_run
    /// let fd = seamless::shutdown().try_as_fd()?;
    /// # let _ = fd;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_as_fd(&self) -> io::Result<BorrowedFd<'static>> {
        SHUTDOWN.fd()
    }
}

impl AsFd for Shutdown {
    /// An eventfd that becomes readable when the shutdown begins and stays
    /// readable. Poll it; do not read it, which would make it unreadable
    /// for every other waiter.
    ///
    /// # Panics
    ///
    /// Outside a daemon started by seamless, if the process has no file
    /// descriptor left for it; see [`Shutdown::try_as_fd`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self.try_as_fd() {
            Ok(fd) => fd,
            Err(e) => panic!("seamless: cannot make the shutdown fd: {e}"),
        }
    }
}

impl AsRawFd for Shutdown {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Future for Shutdown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        SHUTDOWN.poll(&mut self.get_mut().slot, cx)
    }
}

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch")
            .field("open", &self.is_open())
            .finish()
    }
}

/// The handle a server waits on to shut down gracefully; see [`Shutdown`].
///
/// ```no_run
/// use std::os::fd::AsFd;
///
/// let shutdown = seamless::shutdown();
/// // Next to the sockets of a poll loop of one's own: readable once the
/// // shutdown begins.
/// let mut fds = [nix::poll::PollFd::new(shutdown.as_fd(), nix::poll::PollFlags::POLLIN)];
/// nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE)?;
/// assert!(shutdown.is_triggered());
/// # Ok::<(), nix::errno::Errno>(())
/// ```
pub fn shutdown() -> Shutdown {
    Shutdown { slot: None }
}

/// Blocks until the `on_shutdown` handlers have all returned (the
/// original's `Wait()`), where [`Shutdown::wait`] blocks until the shutdown
/// begins, before they run.
///
/// Code generated by `#[seamless::daemon]`, and
/// [`Session::finish`](crate::Session::finish), already do this after
/// `main`; call it only where a program ends some other way. It waits for
/// ever if no shutdown ever begins.
///
/// ```no_run
/// seamless::shutdown().wait(); // the shutdown began: stop serving
/// seamless::wait_for_shutdown_handlers(); // the handlers are done: exit
/// ```
pub fn wait_for_shutdown_handlers() {
    HANDLERS_DONE.wait();
}

/// The old name of [`wait_for_shutdown_handlers`], which says what it
/// waits for ([`Shutdown::wait`] waits for something else). Removed in 1.0.
#[deprecated(note = "renamed `wait_for_shutdown_handlers`")]
pub fn wait() {
    wait_for_shutdown_handlers();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn leaked() -> &'static Latch {
        Box::leak(Box::new(Latch::new()))
    }

    #[test]
    fn latch_wakes_future_and_waiters_once() {
        let latch = leaked();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = None;
        assert!(latch.poll(&mut slot, &mut cx).is_pending());
        assert!(latch.poll(&mut slot, &mut cx).is_pending());
        assert_eq!(slots(latch), (1, 1), "one waiter holds one slot");
        let t = std::thread::spawn(move || latch.wait());
        assert!(!latch.wait_timeout(Duration::from_millis(10)));
        assert!(latch.open());
        assert!(!latch.open());
        t.join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(latch.poll(&mut slot, &mut cx).is_ready());
        assert_eq!(slot, None, "ready gives the slot back");
        assert_eq!(slots(latch), (0, 0));
    }

    #[test]
    fn a_new_waker_replaces_the_old_one_in_the_same_slot() {
        let latch = leaked();
        let (first, second) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let mut slot = None;
        for count in [&first, &second] {
            let waker = Waker::from(count.clone());
            assert!(latch
                .poll(&mut slot, &mut Context::from_waker(&waker))
                .is_pending());
        }
        assert_eq!(slots(latch), (1, 1));
        assert_eq!(Arc::strong_count(&first), 1, "the old waker is not kept");
        latch.open();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        latch.release(&mut slot);
    }

    #[test]
    fn waiters_that_go_leave_nothing_behind() {
        let latch = leaked();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut held: Vec<Option<usize>> = Vec::new();
        for _ in 0..1000 {
            let mut slot = None;
            assert!(latch.poll(&mut slot, &mut cx).is_pending());
            held.push(slot);
        }
        assert_eq!(slots(latch), (1000, 1000));
        // Half go: their slots are reused, the slab does not grow.
        for slot in held.iter_mut().step_by(2) {
            latch.release(slot);
        }
        assert_eq!(slots(latch), (1000, 500));
        for _ in 0..500 {
            let mut slot = None;
            assert!(latch.poll(&mut slot, &mut cx).is_pending());
            held.push(slot);
        }
        assert_eq!(slots(latch), (1000, 1000));
        // All go: nothing is left, not even the waker clones.
        for slot in &mut held {
            latch.release(slot);
        }
        assert_eq!(slots(latch), (0, 0));
        assert_eq!(Arc::strong_count(&count), 2, "only `waker` and `count`");
        assert_eq!(
            latch.lock().slots.capacity(),
            0,
            "the slab's memory is returned"
        );
    }

    #[test]
    fn the_fd_is_readable_once_open_whenever_it_was_made() {
        let readable = |fd: BorrowedFd<'_>| crate::sys::readable(fd, Duration::ZERO).unwrap();
        let before = leaked();
        let fd = before.fd().unwrap();
        assert!(!readable(fd));
        before.open();
        assert!(readable(fd));
        assert!(readable(fd), "it stays readable");
        assert!(crate::test_support::cloexec(&fd));

        let after = leaked();
        after.open();
        assert!(readable(after.fd().unwrap()));
    }

    #[test]
    fn a_dropped_shutdown_gives_its_slot_back() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = shutdown();
        assert!(Pin::new(&mut shutdown).poll(&mut cx).is_pending());
        let clone = shutdown.clone();
        assert_eq!(clone.slot, None, "a clone waits on its own");
        assert!(slots(&SHUTDOWN).1 >= 1);
        drop(shutdown);
        assert_eq!(Arc::strong_count(&count), 2, "the waker went with it");
    }
}

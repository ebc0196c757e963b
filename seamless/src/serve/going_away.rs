//! [`GoingAway`]: the per-connection signal of [`Upgrades::GoAway`]. An
//! upgraded connection (a WebSocket) is the application's; the polite move
//! at a restart is for the application to close it with a status the
//! client understands (WebSocket: 1001, going away), and for the client to
//! reconnect, to the next generation. The signal fires when the drain
//! begins plus a delay of the connection's own, drawn at random up to the
//! spread ([`DEFAULT_GOING_AWAY_SPREAD`]), so that the clients of a
//! generation do not all reconnect in the same millisecond. The delay is
//! bounded by half the time left to the drain's deadline: the other half
//! is the application's to close.

use std::future::{Future, IntoFuture};
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::track::{Phase, Shared};
#[cfg(doc)]
use super::Upgrades;

/// How far apart, at most, the [`GoingAway`] signals of a server's
/// connections fire by default, counted from the start of the drain.
pub const DEFAULT_GOING_AWAY_SPREAD: Duration = Duration::from_secs(1);

/// Tells an upgraded connection (a WebSocket) that the server is going
/// away: `.await` it beside the connection's reads, and when it completes,
/// close the connection politely (WebSocket: a Close frame with status
/// 1001) so that the client reconnects, to the next generation.
///
/// With [`Upgrades::GoAway`], the server puts one in the extensions of each
/// upgrade request (an `Upgrade` header, or an HTTP/2 `CONNECT`): take it
/// with [`GoingAway::of`] (hyper) or as an extractor (axum). It completes
/// when the drain begins, plus a random delay of its own up to the spread.
/// Elsewhere (another mode, another server) the default one completes
/// when [`seamless::shutdown()`](crate::shutdown()) fires.
///
/// ```no_run
/// # async fn f(request: hyper::Request<hyper::body::Incoming>) {
/// let going_away = seamless::hyper::GoingAway::of(&request);
/// // ... upgrade, then in the connection's loop:
/// tokio::select! {
///     () = going_away => { /* send Close 1001, read until the client's Close */ }
///     // message = socket.recv() => ...
/// }
/// # }
/// ```
#[derive(Clone, Default)]
pub struct GoingAway {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for GoingAway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoingAway")
            .field("from_drain", &self.shared.is_some())
            .finish()
    }
}

impl GoingAway {
    pub(crate) fn new(shared: Arc<Shared>) -> GoingAway {
        GoingAway {
            shared: Some(shared),
        }
    }

    /// The signal the server put in `request`'s extensions, or the default
    /// one (the shutdown, no spread).
    ///
    /// ```no_run
    /// # fn f(request: &hyper::Request<hyper::body::Incoming>) {
    /// let going_away = seamless::hyper::GoingAway::of(request);
    /// # drop(going_away);
    /// # }
    /// ```
    pub fn of<B>(request: &http::Request<B>) -> GoingAway {
        request
            .extensions()
            .get::<GoingAway>()
            .cloned()
            .unwrap_or_default()
    }

    async fn wait(self) {
        let Some(shared) = self.shared else {
            return crate::shutdown::shutdown().await;
        };
        let began = shared.drain_began.notified();
        let mut began = std::pin::pin!(began);
        // Registered before the phase is read: a drain that begins in
        // between still wakes it.
        began.as_mut().enable();
        if shared.phase() == Phase::Serving {
            began.await;
        }
        let delay = delay(
            shared.options.going_away_spread,
            shared.deadline(),
            Instant::now(),
            RandomState::new().hash_one(Arc::as_ptr(&shared)),
        );
        tokio::time::sleep(delay).await;
    }
}

/// This connection's delay: `random` scaled into the spread, which is at
/// most half the time left to the drain's `deadline`.
fn delay(spread: Duration, deadline: Option<Instant>, now: Instant, random: u64) -> Duration {
    let spread = match deadline {
        Some(deadline) => spread.min(deadline.saturating_duration_since(now) / 2),
        None => spread,
    };
    let micros = spread.as_micros().min(u64::MAX as u128) as u64;
    Duration::from_micros(random.checked_rem(micros + 1).unwrap_or(0))
}

impl IntoFuture for GoingAway {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_stays_within_the_spread_and_half_the_time_left() {
        let now = Instant::now();
        let spread = Duration::from_secs(1);
        for random in [0, 1, 999_999, 1_000_000, u64::MAX] {
            assert!(delay(spread, None, now, random) <= spread);
            let soon = Some(now + Duration::from_millis(400));
            assert!(delay(spread, soon, now, random) <= Duration::from_millis(200));
            assert_eq!(delay(spread, Some(now), now, random), Duration::ZERO);
        }
        assert_eq!(delay(spread, None, now, 1_000_000), spread);
        assert_eq!(
            delay(spread, None, now, 500_000),
            Duration::from_millis(500)
        );
    }
}

//! [`ConnectionTracker`]: the in-flight count, the drain flag and the wake-up of waiters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::drained::{Drained, Draining};
use crate::error::DrainTimeout;
use crate::guard::InFlightGuard;
use crate::loom::sync::{AtomicU64, AtomicUsize, Notify, Ordering};
use crate::signal::DrainSignal;
use crate::token_watch::TokenWatch;

/// Bit set once the token is cancelled: new work is refused from then on. Never cleared.
const DRAINING: usize = 0b01;
/// Bit set once shutdown is announced (or draining began): readiness fails. Never cleared.
const UNREADY: usize = 0b10;
const FLAGS: usize = DRAINING | UNREADY;
/// The in-flight count lives above the flag bits, so that one atomic holds both and a
/// single read-modify-write decides admission (as tokio-util's `TaskTracker` does).
const ONE: usize = 0b100;

/// Counts in-flight requests and tells when a drain has finished.
///
/// A tracker is shared state behind an [`Arc`]: cloning it is cheap and every clone sees the
/// same count. Get one from [`DrainLayer::tracker`](crate::DrainLayer::tracker); every service
/// built by that layer (and every clone of the layer) counts into it.
///
/// The tracker mirrors the layer's [`CancellationToken`] into its own atomic state, so the
/// per-request check is one atomic load rather than `CancellationToken::is_cancelled`, which
/// takes a mutex. The mirror is updated synchronously inside `cancel()`: once `cancel()`
/// returns, [`is_draining`](Self::is_draining) is `true` and no further request is admitted.
///
/// # States
///
/// 1. **Serving**: requests are admitted, readiness answers 200.
/// 2. **Announced** (optional, [`announce_shutdown`](Self::announce_shutdown)): readiness
///    answers 503 and HTTP/1.x responses carry `Connection: close`, but requests are still
///    admitted. This is the notice period that lets load balancers move traffic away.
/// 3. **Draining** (the token is cancelled): new requests are refused; those in flight finish.
/// 4. **Drained**: draining and nothing in flight. [`drained`](Self::drained) resolves.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
/// use tower_drain::DrainLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = CancellationToken::new();
/// let tracker = DrainLayer::new(token.clone()).tracker();
///
/// // Work outside a request (a WebSocket after its upgrade, a job) can be counted too.
/// let guard = tracker.guard().expect("not draining yet");
/// assert_eq!(tracker.in_flight(), 1);
///
/// token.cancel();
/// assert!(tracker.is_draining());
/// assert!(tracker.guard().is_none(), "nothing is admitted once draining");
///
/// // The drain cannot finish while the guard is alive.
/// let err = tracker.drained_timeout(Duration::from_millis(10)).await.unwrap_err();
/// assert_eq!(err.in_flight(), 1);
///
/// drop(guard);
/// tracker.drained().await;
/// assert_eq!(tracker.in_flight(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct ConnectionTracker {
    pub(crate) shared: Arc<Shared>,
}

/// The state every clone of a tracker, every guard and every signal points to.
pub(crate) struct Shared {
    /// Flag bits (`DRAINING`, `UNREADY`) plus the in-flight count in units of `ONE`.
    state: AtomicUsize,
    /// Woken when draining starts and when the count reaches zero while draining.
    notify: Notify,
    admitted: AtomicU64,
    rejected: AtomicU64,
    token: CancellationToken,
    /// Keeps the registration on the token alive; cancelled (and the cycle broken) on drop.
    watch: Arc<TokenWatch>,
}

impl ConnectionTracker {
    /// Creates a tracker that starts draining when `token` is cancelled.
    pub(crate) fn new(token: CancellationToken) -> Self {
        let shared = Arc::new_cyclic(|weak| Shared {
            state: AtomicUsize::new(0),
            notify: Notify::new(),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            watch: TokenWatch::new(token.clone(), weak.clone()),
            token,
        });
        // Registers on the token; if it is already cancelled this starts draining at once.
        shared.watch.poll_token();
        Self { shared }
    }

    /// The number of requests (and [`InFlightGuard`]s) admitted and not yet finished.
    ///
    /// A request finishes when its response body has been read to the end, has failed, or
    /// has been dropped; or, if no response was produced, when its response future is dropped.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Returns `true` once the token has been cancelled: new requests are refused.
    pub fn is_draining(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) & DRAINING != 0
    }

    /// Returns `true` while the service should receive traffic: neither announced nor draining.
    ///
    /// This is what [`ReadinessService`](crate::ReadinessService) reports.
    pub fn is_ready(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) & UNREADY == 0
    }

    /// Returns `true` once draining has started and nothing is in flight.
    ///
    /// Once this returns `true` it stays `true`: no request is admitted after it.
    pub fn is_drained(&self) -> bool {
        self.shared.is_drained()
    }

    /// Starts the notice period: readiness fails from now on and HTTP/1.x responses carry
    /// `Connection: close`, but requests are still admitted and served normally.
    ///
    /// Call this when shutdown begins, wait a few seconds for load balancers to notice, then
    /// cancel the token. Idempotent.
    pub fn announce_shutdown(&self) {
        self.shared.set_flags(UNREADY);
    }

    /// Total number of admissions (requests and guards) since the tracker was created.
    pub fn admitted_total(&self) -> u64 {
        self.shared.admitted.load(Ordering::Relaxed)
    }

    /// Total number of requests (and [`guard`](Self::guard) calls) refused because the
    /// tracker was draining. Requests to exempt paths and probes are never refused.
    pub fn rejected_total(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// The token whose cancellation starts the drain.
    pub fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// Counts a piece of work that is not a request, such as an upgraded connection or a
    /// job started by a handler. Returns `None` once draining has started.
    ///
    /// The work counts until the returned guard is dropped.
    pub fn guard(&self) -> Option<InFlightGuard> {
        self.shared.try_admit()
    }

    /// A cheap handle that tells handlers when draining starts. See [`DrainSignal`].
    pub fn signal(&self) -> DrainSignal {
        DrainSignal {
            tracker: self.clone(),
        }
    }

    /// Waits until draining has started **and** nothing is in flight.
    ///
    /// Resolves immediately if that is already the case. Any number of tasks may wait at once.
    /// The wait is event driven: the last guard to be released wakes every waiter, with no
    /// polling interval and no lost wake-up.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future has no effect on the tracker.
    ///
    /// # Examples
    ///
    /// ```
    /// # use tokio_util::sync::CancellationToken;
    /// # use tower_drain::DrainLayer;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let tracker = DrainLayer::new(token.clone()).tracker();
    /// token.cancel();
    /// tracker.drained().await; // nothing was in flight
    /// # }
    /// ```
    pub fn drained(&self) -> Drained<'_> {
        Drained::new(&self.shared)
    }

    /// Like [`drained`](Self::drained), but gives up after `timeout`.
    ///
    /// The error tells how many requests were still in flight when time ran out, and the
    /// timer starts when this method is called (not when draining starts).
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub async fn drained_timeout(&self, timeout: Duration) -> Result<(), DrainTimeout> {
        match tokio::time::timeout(timeout, self.drained()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout::new(self.in_flight(), timeout)),
        }
    }

    /// Waits until draining starts (the token is cancelled).
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn draining(&self) -> Draining<'_> {
        Draining::new(&self.shared)
    }
}

impl fmt::Debug for ConnectionTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.load(Ordering::Acquire);
        f.debug_struct("ConnectionTracker")
            .field("in_flight", &(state / ONE))
            .field("ready", &(state & UNREADY == 0))
            .field("draining", &(state & DRAINING != 0))
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) / ONE
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.state.load(Ordering::Acquire) & DRAINING != 0
    }

    pub(crate) fn is_ready(&self) -> bool {
        // Relaxed: the flag carries no data with it; this is only asked to decide a header.
        self.state.load(Ordering::Relaxed) & UNREADY == 0
    }

    pub(crate) fn is_drained(&self) -> bool {
        // Acquire: pairs with the Release in `release`, so that everything the finished
        // requests did happens-before the code that runs after `drained()` (closing a pool).
        let state = self.state.load(Ordering::Acquire);
        state & DRAINING != 0 && state < ONE
    }

    pub(crate) fn notified(&self) -> crate::loom::sync::Notified<'_> {
        self.notify.notified()
    }

    /// Admits one unit of work, or returns `None` if draining has started.
    ///
    /// The pass-through cost: one load, one `fetch_add` on the state, one on the admitted
    /// counter, one `Arc` clone. No lock, no allocation.
    #[inline]
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<InFlightGuard> {
        // Relaxed: only a shortcut for the refusal path; the read-modify-write below decides.
        if self.state.load(Ordering::Relaxed) & DRAINING != 0 {
            return self.refuse();
        }
        // Relaxed is enough: all updates of `state` are read-modify-writes on one atomic, so
        // they are totally ordered. Either this increment comes before the `DRAINING` bit in
        // that order (then `drained()` cannot see a zero count until the guard is released),
        // or it sees the bit and backs out below. What the request then does is published by
        // the Release in `release`.
        let prev = self.state.fetch_add(ONE, Ordering::Relaxed);
        if prev & DRAINING != 0 {
            // Draining started between the load and the increment: undo, and wake any
            // waiter that looked at the count in between.
            self.release();
            return self.refuse();
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(InFlightGuard::new(Arc::clone(self)))
    }

    #[cold]
    fn refuse(&self) -> Option<InFlightGuard> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Releases one unit of work. Called exactly once per admission, by the guard's `Drop`.
    #[inline]
    pub(crate) fn release(&self) {
        // Release: publishes the request's effects to the waiter that sees the count reach
        // zero with its Acquire load (`is_drained`).
        let prev = self.state.fetch_sub(ONE, Ordering::Release);
        if prev & DRAINING != 0 && prev < 2 * ONE {
            self.notify_now();
        }
    }

    /// Sets flag bits; wakes waiters if this call started the drain.
    pub(crate) fn set_flags(&self, flags: usize) {
        debug_assert_eq!(flags & !FLAGS, 0);
        // AcqRel: Release so that a waiter that sees the flag also sees what the caller did
        // before starting the drain; Acquire so that, if the count read here is zero, the
        // finished requests' effects are visible to the waiters woken below.
        let prev = self.state.fetch_or(flags, Ordering::AcqRel);
        if flags & DRAINING != 0 && prev & DRAINING == 0 {
            // Wakes both `draining()` waiters and, if nothing is in flight, `drained()` ones.
            // If something is in flight, the last `release` wakes them again.
            self.notify_now();
        }
    }

    pub(crate) fn start_draining(&self) {
        self.set_flags(DRAINING | UNREADY);
    }

    #[cold]
    #[inline(never)]
    fn notify_now(&self) {
        self.notify.notify_waiters();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The token's waiter list holds a waker that points to `watch`: deregister it so that
        // a token that outlives every tracker does not keep the watch alive.
        self.watch.cancel();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn tracker() -> (CancellationToken, ConnectionTracker) {
        let token = CancellationToken::new();
        (token.clone(), ConnectionTracker::new(token))
    }

    #[test]
    fn cancel_is_mirrored_before_cancel_returns() {
        let (token, tracker) = tracker();
        assert!(!tracker.is_draining());
        token.cancel();
        assert!(tracker.is_draining());
        assert!(!tracker.is_ready());
    }

    #[test]
    fn already_cancelled_token_starts_draining_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let tracker = ConnectionTracker::new(token);
        assert!(tracker.is_draining());
        assert!(tracker.is_drained());
    }

    #[test]
    fn parent_token_cancellation_reaches_a_child_token_tracker() {
        let parent = CancellationToken::new();
        let tracker = ConnectionTracker::new(parent.child_token());
        parent.cancel();
        assert!(tracker.is_draining());
    }

    #[test]
    fn guards_count_and_release_exactly_once() {
        let (_token, tracker) = tracker();
        let a = tracker.guard().unwrap();
        let b = tracker.guard().unwrap();
        assert_eq!(tracker.in_flight(), 2);
        drop(a);
        assert_eq!(tracker.in_flight(), 1);
        drop(b);
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.admitted_total(), 2);
    }

    #[test]
    fn guard_is_refused_and_counted_once_draining() {
        let (token, tracker) = tracker();
        token.cancel();
        assert!(tracker.guard().is_none());
        assert_eq!(tracker.rejected_total(), 1);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn announce_fails_readiness_but_still_admits() {
        let (_token, tracker) = tracker();
        tracker.announce_shutdown();
        assert!(!tracker.is_ready());
        assert!(!tracker.is_draining());
        assert!(tracker.guard().is_some());
    }

    #[test]
    fn dropping_every_tracker_frees_the_token_registration() {
        let (token, tracker) = tracker();
        let weak = Arc::downgrade(&tracker.shared.watch);
        drop(tracker);
        assert!(
            weak.upgrade().is_none(),
            "the watch leaked through the token"
        );
        token.cancel();
    }

    #[tokio::test]
    async fn drained_waits_for_the_last_guard() {
        let (token, tracker) = tracker();
        let guard = tracker.guard().unwrap();
        token.cancel();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.drained().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        waiter.await.unwrap();
        assert!(tracker.is_drained());
    }

    #[tokio::test]
    async fn drained_timeout_reports_stragglers() {
        let (token, tracker) = tracker();
        let _a = tracker.guard().unwrap();
        let _b = tracker.guard().unwrap();
        token.cancel();
        let err = tracker
            .drained_timeout(Duration::from_millis(5))
            .await
            .unwrap_err();
        assert_eq!(err.in_flight(), 2);
        assert_eq!(err.timeout(), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn drained_does_not_resolve_without_draining() {
        let (_token, tracker) = tracker();
        assert!(tracker
            .drained_timeout(Duration::from_millis(5))
            .await
            .is_err());
    }
}

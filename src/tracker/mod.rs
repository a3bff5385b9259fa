//! [`ConnectionTracker`]: the handle to the in-flight count, the drain's states and the
//! wake-up of waiters.
//!
//! The handle is a facade over one shared state (`state.rs`: the atomic admission and the
//! handoff grace's clock). Its parts: the guard that counts one unit of work (`guard.rs`),
//! the futures that wait for a state (`drained.rs`) and the mirror of the cancellation token
//! (`token_watch.rs`).

pub(crate) mod drained;
pub(crate) mod guard;
pub(crate) mod state;
mod token_watch;

use std::fmt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

#[cfg(feature = "serve")]
use crate::connections::{ConnectionCounts, Connections};
use crate::loom::sync::Ordering;
use crate::tracker::drained::{Drained, Draining};
use crate::tracker::guard::InFlightGuard;
use crate::tracker::state::{Admit, DrainStage, Shared, CLOSED, DRAINING, ONE, UNREADY};

/// Counts in-flight requests and tells when a drain has finished.
///
/// A tracker is shared state behind an [`Arc`]: cloning it is cheap and every clone sees the
/// same count. Get one from [`DrainLayer::tracker`](crate::DrainLayer::tracker); every service
/// built by that layer (and every clone of the layer) counts into it.
///
/// The tracker mirrors the layer's [`CancellationToken`] into its own atomic state, so the
/// per-request check is one atomic load rather than `CancellationToken::is_cancelled`, which
/// takes a mutex. The mirror is updated synchronously inside `cancel()`: once `cancel()`
/// returns, [`is_draining`](Self::is_draining) is `true`.
///
/// # States
///
/// 1. **Serving**: requests are admitted, readiness answers 200.
/// 2. **Announced** (optional, [`announce_shutdown`](Self::announce_shutdown)): readiness
///    answers 503 and HTTP/1.x responses carry `Connection: close`, but requests are still
///    admitted. This is the notice period that lets load balancers move traffic away.
/// 3. **Draining** (the token is cancelled): the server says goodbye to its connections
///    (HTTP/2 `GOAWAY`, HTTP/1.x close after the response in progress) and stops accepting.
///    Requests those connections still deliver are the protocol's handoff (HTTP/2 streams the
///    client sent before it read the final `GOAWAY`, an HTTP/1.x request already on the wire):
///    the server would process them, so they are **admitted** and served. No new
///    [`guard`](Self::guard) is given out.
/// 4. **Closed**: admission has closed, every request is refused (`503`, gRPC
///    `UNAVAILABLE`). It closes when [`close`](Self::close) is called, which
///    [`Shutdown`](crate::Shutdown) does once the servers given to it have closed their
///    connections, or by itself once the
///    [handoff grace](crate::DrainLayer::handoff_grace) (1 s by default) has passed since the
///    drain began, for a server that never says goodbye.
/// 5. **Drained**: closed and nothing in flight. [`drained`](Self::drained) resolves, and no
///    request is admitted after that.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_drain::{CancellationToken, DrainLayer};
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
/// assert!(tracker.guard().is_none(), "no new work once draining");
///
/// // The server has closed its connections: nothing more can arrive.
/// tracker.close();
///
/// // The drain cannot finish while the guard is alive.
/// let waited = tokio::time::timeout(Duration::from_millis(10), tracker.drained()).await;
/// assert!(waited.is_err());
/// assert_eq!(tracker.in_flight(), 1);
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

impl ConnectionTracker {
    /// Creates a tracker that starts draining when `token` is cancelled, for work that is not
    /// HTTP (a queue consumer, a TCP protocol): count it with [`guard`](Self::guard) and wait
    /// with [`drained`](Self::drained). For HTTP, get the tracker of a
    /// [`DrainLayer`](crate::DrainLayer) instead, with [`DrainLayer::tracker`](crate::DrainLayer::tracker).
    pub fn new(token: CancellationToken) -> Self {
        Self {
            shared: Shared::new(token),
        }
    }

    /// The number of requests (and [`InFlightGuard`]s) admitted and not yet finished.
    ///
    /// A request finishes when its response body has been read to the end, has failed, or
    /// has been dropped; or, if no response was produced, when its response future is dropped.
    /// The server may still be writing the last bytes of a finished response: only the
    /// server's own graceful shutdown (or [`Shutdown::spawn_server`](crate::Shutdown::spawn_server))
    /// knows when they are on the wire.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Returns `true` once the token has been cancelled: the drain has begun.
    ///
    /// Requests the server's connections still deliver are admitted until admission closes
    /// (see the [states](Self#states)); no new [`guard`](Self::guard) is given out.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Returns `true` once admission has closed: every request is refused.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Returns `true` while the service should receive traffic: neither announced nor draining.
    ///
    /// This is what [`ReadinessService`](crate::ReadinessService) reports.
    pub fn is_ready(&self) -> bool {
        self.shared.state.load(Ordering::Acquire) & UNREADY == 0
    }

    /// Returns `true` once admission has closed and nothing is in flight.
    ///
    /// Once this returns `true` it stays `true`: no request is admitted after it.
    pub fn is_drained(&self) -> bool {
        self.shared.stage() == DrainStage::Drained
    }

    /// Starts the notice period: readiness fails from now on and HTTP/1.x responses carry
    /// `Connection: close`, but requests are still admitted and served normally.
    ///
    /// Call this when shutdown begins, wait a few seconds for load balancers to notice, then
    /// cancel the token. Idempotent.
    pub fn announce_shutdown(&self) {
        self.shared.set_flags(UNREADY);
    }

    /// Closes admission now: from here on every request is refused, and
    /// [`drained`](Self::drained) resolves as soon as nothing is in flight, without waiting
    /// for the rest of the [handoff grace](crate::DrainLayer::handoff_grace). Starts the drain
    /// too, if it had not started. Idempotent.
    ///
    /// Call it once the server has closed its connections (its graceful shutdown has
    /// completed), when nothing more can arrive. [`Shutdown`](crate::Shutdown) does this for
    /// the servers given to [`spawn_server`](crate::Shutdown::spawn_server).
    pub fn close(&self) {
        self.shared.close();
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

    /// Counts a piece of work that is not a request, such as an upgraded connection or a
    /// job started by a handler. Returns `None` once draining has started: such work has no
    /// protocol handoff to honour.
    ///
    /// The work counts until the returned guard is dropped.
    #[must_use = "the work is counted only while the guard is alive"]
    pub fn guard(&self) -> Option<InFlightGuard> {
        self.admit(Admit::Work)
    }

    /// Admits a request (the layer) or other work ([`guard`](Self::guard)).
    #[inline]
    pub(crate) fn admit(&self, what: Admit) -> Option<InFlightGuard> {
        InFlightGuard::admit(&self.shared, what)
    }

    /// Waits until admission has closed **and** nothing is in flight.
    ///
    /// Admission closes when [`close`](Self::close) is called or once the
    /// [handoff grace](crate::DrainLayer::handoff_grace) has passed since the drain began
    /// (see the [states](Self#states)), so with nothing in flight this resolves at most one
    /// grace after the token is cancelled. Resolves immediately if that is already the case.
    /// Any number of tasks may wait at once. The wait is event driven: the last guard to be
    /// released wakes every waiter, with no polling interval and no lost wake-up.
    ///
    /// "Drained" speaks of requests: a response whose body has ended may still be in the
    /// server's buffers. The server's graceful shutdown completes once those are written;
    /// [`Shutdown`](crate::Shutdown) waits for both.
    ///
    /// Needs a Tokio runtime with timers enabled while the grace runs (as every hyper, axum
    /// and tonic server has).
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: dropping the future has no effect on the tracker.
    ///
    /// # Examples
    ///
    /// ```
    /// # use tower_drain::{CancellationToken, DrainLayer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let tracker = DrainLayer::new(token.clone()).tracker();
    /// token.cancel();
    /// tracker.close(); // the server has stopped: no need to wait for the handoff grace
    /// tracker.drained().await; // nothing was in flight
    /// # }
    /// ```
    pub fn drained(&self) -> Drained<'_> {
        Drained::new(&self.shared)
    }

    /// Waits until draining starts (the token is cancelled). Resolves at once if it already
    /// has.
    ///
    /// Long-lived responses (server-sent events, WebSockets, gRPC streams) never finish on
    /// their own, so a drain would wait for them until its deadline. A handler holding a
    /// tracker (a clone, or the request extension that
    /// [`DrainLayer::with_tracker_extension`](crate::DrainLayer::with_tracker_extension) adds)
    /// can end its stream cleanly instead: stop sending, send a final event, close.
    ///
    /// # Examples
    ///
    /// ```
    /// # use tower_drain::{CancellationToken, ConnectionTracker, DrainLayer};
    /// async fn ticker(tracker: ConnectionTracker) -> u32 {
    ///     let mut ticks = 0;
    ///     let mut interval = tokio::time::interval(std::time::Duration::from_millis(1));
    ///     loop {
    ///         tokio::select! {
    ///             _ = interval.tick() => ticks += 1, // send the next event here
    ///             _ = tracker.draining() => return ticks, // end the stream cleanly
    ///         }
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let token = CancellationToken::new();
    /// let tracker = DrainLayer::new(token.clone()).tracker();
    /// let stream = tokio::spawn(ticker(tracker));
    /// token.cancel();
    /// stream.await.unwrap();
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe.
    pub fn draining(&self) -> Draining<'_> {
        Draining::new(&self.shared)
    }

    /// Waits until shutdown is announced (or draining starts): readiness fails from then on.
    #[cfg(feature = "serve")]
    pub(crate) fn announced(&self) -> Draining<'_> {
        Draining::announced(&self.shared)
    }

    /// Counts of the connections [`serve`](crate::serve()) owns on this tracker.
    #[cfg(feature = "serve")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
    pub fn connections(&self) -> ConnectionCounts {
        self.shared.connections.counts()
    }

    /// The token whose cancellation starts the drain: the layer hands it out, and the
    /// shutdown sequence cancels it.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// The registry of the connections `serve` owns on this tracker.
    #[cfg(feature = "serve")]
    pub(crate) fn registry(&self) -> &Arc<Connections> {
        &self.shared.connections
    }
}

impl fmt::Debug for ConnectionTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.load(Ordering::Acquire);
        f.debug_struct("ConnectionTracker")
            .field("in_flight", &(state / ONE))
            .field("ready", &(state & UNREADY == 0))
            .field("draining", &(state & DRAINING != 0))
            .field("closed", &(state & CLOSED != 0))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::tracker::state::DEFAULT_HANDOFF_GRACE;

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

    #[tokio::test(start_paused = true)]
    async fn already_cancelled_token_starts_draining_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let tracker = ConnectionTracker::new(token);
        assert!(tracker.is_draining());
        assert!(!tracker.is_closed(), "the handoff grace has begun");
        tokio::time::sleep(DEFAULT_HANDOFF_GRACE).await;
        assert!(tracker.is_drained());
    }

    #[test]
    fn requests_are_admitted_during_the_handoff_grace_and_refused_once_closed() {
        let (token, tracker) = tracker();
        token.cancel();
        let request = tracker.admit(Admit::Request);
        assert!(request.is_some(), "the protocol's handoff is served");
        assert!(tracker.guard().is_none(), "no new non-request work");
        tracker.close();
        assert!(tracker.admit(Admit::Request).is_none());
        assert_eq!(tracker.in_flight(), 1);
        assert!(!tracker.is_drained(), "the handoff is still in flight");
        drop(request);
        assert!(tracker.is_drained());
        assert_eq!(tracker.rejected_total(), 2);
    }

    #[test]
    fn zero_grace_closes_admission_when_the_drain_begins() {
        let (token, tracker) = tracker();
        tracker.shared.set_grace(Duration::ZERO);
        token.cancel();
        assert!(tracker.is_closed());
        assert!(tracker.admit(Admit::Request).is_none());
        assert!(tracker.is_drained());
    }

    #[tokio::test(start_paused = true)]
    async fn admission_closes_by_itself_one_grace_after_the_drain_began() {
        let (token, tracker) = tracker();
        token.cancel();
        tokio::time::sleep(DEFAULT_HANDOFF_GRACE - Duration::from_millis(1)).await;
        drop(tracker.admit(Admit::Request).expect("within the grace"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(tracker.admit(Admit::Request).is_none());
        assert!(tracker.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn drained_waits_for_the_grace_when_nothing_is_in_flight() {
        let (token, tracker) = tracker();
        token.cancel();
        let started = Instant::now();
        tracker.drained().await;
        assert_eq!(started.elapsed(), DEFAULT_HANDOFF_GRACE);
        assert!(
            tracker.admit(Admit::Request).is_none(),
            "nothing after drained()"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_the_wait_for_the_grace_at_once() {
        let (token, tracker) = tracker();
        token.cancel();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.drained().await }
        });
        tokio::task::yield_now().await;
        let closed = Instant::now();
        tracker.close();
        waiter.await.unwrap();
        assert_eq!(closed.elapsed(), Duration::ZERO);
    }

    #[test]
    fn close_before_the_token_starts_the_drain_and_closes_admission() {
        let (token, tracker) = tracker();
        tracker.close();
        assert!(tracker.is_draining());
        assert!(!tracker.is_ready());
        assert!(tracker.is_drained());
        assert!(!token.is_cancelled(), "the token is the caller's");
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
        tracker.close();
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
    async fn drained_does_not_resolve_without_draining() {
        let (_token, tracker) = tracker();
        let waited = tokio::time::timeout(Duration::from_millis(5), tracker.drained()).await;
        assert!(waited.is_err());
    }
}

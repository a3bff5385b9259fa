//! [`ConnectionTracker`]: the in-flight count, the drain flag and the wake-up of waiters.
//!
//! The tracker's parts: the guard that counts one unit of work (`guard.rs`), the futures that
//! wait for a state (`drained.rs`), the handle handlers watch (`watch.rs`), the mirror of the
//! cancellation token (`token_watch.rs`), the deadline error (`drain_timeout.rs`) and the
//! registry of the server's connections (`connections.rs`).

pub(crate) mod connections;
pub(crate) mod drain_timeout;
pub(crate) mod drained;
pub(crate) mod guard;
mod token_watch;
pub(crate) mod watch;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::loom::sync::{AtomicU64, AtomicUsize, Notify, Ordering};
use crate::tracker::connections::{ConnectionCounts, Connections};
use crate::tracker::drain_timeout::DrainTimeout;
use crate::tracker::drained::{Drained, Draining};
use crate::tracker::guard::InFlightGuard;
use crate::tracker::token_watch::TokenWatch;
use crate::tracker::watch::DrainWatch;

/// Bit set once the token is cancelled: the drain has begun, readiness fails, no new
/// [`guard`](ConnectionTracker::guard) is given out. Never cleared.
const DRAINING: usize = 0b001;
/// Bit set once shutdown is announced (or draining began): readiness fails. Never cleared.
const UNREADY: usize = 0b010;
/// Bit set once admission has closed: every request is refused from then on (see
/// [`ConnectionTracker::close`]). Never cleared.
const CLOSED: usize = 0b100;
const FLAGS: usize = DRAINING | UNREADY | CLOSED;
/// The in-flight count lives above the flag bits, so that one atomic holds both and a
/// single read-modify-write decides admission (as tokio-util's `TaskTracker` does).
const ONE: usize = 0b1000;

/// Default of [`DrainLayer::handoff_grace`](crate::DrainLayer::handoff_grace).
pub(crate) const DEFAULT_HANDOFF_GRACE: Duration = Duration::from_secs(1);

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

/// The state every clone of a tracker, every guard and every watch points to.
pub(crate) struct Shared {
    /// Flag bits (`DRAINING`, `UNREADY`) plus the in-flight count in units of `ONE`.
    state: AtomicUsize,
    /// Woken when draining starts and when the count reaches zero while draining.
    notify: Notify,
    admitted: AtomicU64,
    rejected: AtomicU64,
    /// How long after the drain begins admission stays open, in nanoseconds.
    grace_nanos: AtomicU64,
    /// When the drain began; admission closes by itself one grace later. Set once, just
    /// before `DRAINING`.
    drain_started: OnceLock<Instant>,
    /// The connections `serve` owns, for the report.
    pub(crate) connections: Arc<Connections>,
    token: CancellationToken,
    /// Keeps the registration on the token alive; cancelled (and the cycle broken) on drop.
    watch: Arc<TokenWatch>,
}

impl ConnectionTracker {
    /// Creates a tracker that starts draining when `token` is cancelled, for work that is not
    /// HTTP (a queue consumer, a TCP protocol): count it with [`guard`](Self::guard) and wait
    /// with [`drained`](Self::drained). For HTTP, get the tracker of a
    /// [`DrainLayer`](crate::DrainLayer) instead, with [`DrainLayer::tracker`](crate::DrainLayer::tracker).
    pub fn new(token: CancellationToken) -> Self {
        let shared = Arc::new_cyclic(|weak| Shared {
            state: AtomicUsize::new(0),
            notify: Notify::new(),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            grace_nanos: AtomicU64::new(DEFAULT_HANDOFF_GRACE.as_nanos() as u64),
            drain_started: OnceLock::new(),
            connections: Arc::default(),
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
        self.shared.progress() == Progress::Drained
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

    /// The token whose cancellation starts the drain.
    pub fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// Counts a piece of work that is not a request, such as an upgraded connection or a
    /// job started by a handler. Returns `None` once draining has started: such work has no
    /// protocol handoff to honour.
    ///
    /// The work counts until the returned guard is dropped.
    #[must_use = "the work is counted only while the guard is alive"]
    pub fn guard(&self) -> Option<InFlightGuard> {
        self.shared.admit(Admit::Work)
    }

    /// A cheap handle that tells handlers when draining starts. See [`DrainWatch`].
    #[must_use]
    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            tracker: self.clone(),
        }
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

    /// Waits until shutdown is announced (or draining starts): readiness fails from then on.
    #[cfg(feature = "serve")]
    pub(crate) fn announced(&self) -> Draining<'_> {
        Draining::announced(&self.shared)
    }

    /// Counts of the connections [`serve`](crate::serve()) owns on this tracker.
    pub fn connections(&self) -> ConnectionCounts {
        self.shared.connections.counts()
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

/// What is being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A request a server's connection delivered: admitted until admission closes.
    Request,
    /// Other work ([`ConnectionTracker::guard`]): admitted until the drain begins.
    Work,
}

/// Where a drain stands, as [`Drained`] needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Admission closed and nothing in flight.
    Drained,
    /// Nothing in flight, but admission is open until this instant (the handoff grace).
    Grace(Instant),
    /// Not draining yet, or requests in flight: the next wake-up tells more.
    Waiting,
}

impl Shared {
    pub(crate) fn in_flight(&self) -> usize {
        self.state.load(Ordering::Acquire) / ONE
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.state.load(Ordering::Acquire) & DRAINING != 0
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        // Relaxed: the flag carries no data with it; this is only asked to decide a header.
        self.state.load(Ordering::Relaxed) & UNREADY == 0
    }

    /// Where the drain stands. Closes admission if the grace is over and nothing is in
    /// flight, so that the answer `Drained` is final.
    pub(crate) fn progress(&self) -> Progress {
        // Acquire: pairs with the Release in `release`, so that everything the finished
        // requests did happens-before the code that runs after `drained()` (closing a pool).
        let state = self.state.load(Ordering::Acquire);
        if state & DRAINING == 0 || state >= ONE {
            return Progress::Waiting;
        }
        if state & CLOSED != 0 {
            return Progress::Drained;
        }
        if !self.grace_over() {
            // `None`: the grace never ends; only `close()` (which wakes us) ends the wait.
            return self.grace_end().map_or(Progress::Waiting, Progress::Grace);
        }
        // The grace is over: close, and decide on the state the closing saw. An admission
        // that came after it sees `CLOSED` and backs out, so none is admitted after the
        // `Drained` returned here.
        if self.set_flags(CLOSED) < ONE {
            Progress::Drained
        } else {
            Progress::Waiting
        }
    }

    pub(crate) fn notified(&self) -> crate::loom::sync::Notified<'_> {
        self.notify.notified()
    }

    /// Admits one unit of work, or returns `None` if it must be refused.
    ///
    /// The pass-through cost (not draining): one load, one `fetch_add` on the state, one on
    /// the admitted counter, one `Arc` clone. No lock, no allocation.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>, what: Admit) -> Option<InFlightGuard> {
        // Relaxed: only picks the path; the read-modify-write below decides.
        if self.state.load(Ordering::Relaxed) & DRAINING != 0 {
            return self.admit_while_draining(what);
        }
        self.add_one(what)
    }

    /// Admission once the drain has begun: requests until admission closes, nothing else.
    #[cold]
    #[inline(never)]
    fn admit_while_draining(self: &Arc<Self>, what: Admit) -> Option<InFlightGuard> {
        if what == Admit::Work || self.is_closed() {
            return self.refuse();
        }
        if self.grace_over() {
            self.set_flags(CLOSED);
            return self.refuse();
        }
        self.add_one(what)
    }

    #[inline]
    fn add_one(self: &Arc<Self>, what: Admit) -> Option<InFlightGuard> {
        // Relaxed is enough: all updates of `state` are read-modify-writes on one atomic, so
        // they are totally ordered. Either this increment comes before the refusing bit in
        // that order (then `drained()` cannot see a zero count until the guard is released),
        // or it sees the bit and backs out below. What the request then does is published by
        // the Release in `release`.
        let prev = self.state.fetch_add(ONE, Ordering::Relaxed);
        let refused_by = match what {
            Admit::Request => CLOSED,
            Admit::Work => DRAINING,
        };
        if prev & refused_by != 0 {
            // The state changed between the load and the increment: undo, and wake any
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
        // zero with its Acquire load (`progress`).
        let prev = self.state.fetch_sub(ONE, Ordering::Release);
        if prev & DRAINING != 0 && prev < 2 * ONE {
            // The last one out while draining: waiters either resolve or start the rest of
            // the grace.
            self.notify_now();
        }
    }

    /// Sets flag bits and returns the previous state; wakes waiters if this call started the
    /// drain, or closed admission with nothing in flight.
    fn set_flags(&self, flags: usize) -> usize {
        debug_assert_eq!(flags & !FLAGS, 0);
        // AcqRel: Release so that a waiter that sees the flag also sees what the caller did
        // before; Acquire so that, if the count read here is zero, the finished requests'
        // effects are visible to the waiters woken below.
        let prev = self.state.fetch_or(flags, Ordering::AcqRel);
        let announced = flags & UNREADY != 0 && prev & UNREADY == 0;
        let started = flags & DRAINING != 0 && prev & DRAINING == 0;
        let closed_idle = flags & CLOSED != 0 && prev & CLOSED == 0 && prev < ONE;
        if announced || started || closed_idle {
            // Wakes `announced()`, `draining()` and `drained()` waiters. If something is in
            // flight, the last `release` wakes them again.
            self.notify_now();
        }
        prev
    }

    /// The drain begins (the token was cancelled). With a zero grace admission closes at once.
    pub(crate) fn start_draining(&self) {
        // Recorded before `DRAINING` is set, whose Release publishes it.
        self.drain_started.get_or_init(Instant::now);
        let mut flags = DRAINING | UNREADY;
        if self.grace().is_zero() {
            flags |= CLOSED;
        }
        self.set_flags(flags);
    }

    fn close(&self) {
        self.drain_started.get_or_init(Instant::now);
        self.set_flags(DRAINING | UNREADY | CLOSED);
    }

    /// The handoff grace has run out (a waiter's timer fired): admission closes.
    pub(crate) fn grace_ended(&self) {
        self.set_flags(CLOSED);
    }

    fn grace(&self) -> Duration {
        Duration::from_nanos(self.grace_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_grace(&self, grace: Duration) {
        let nanos = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
        self.grace_nanos.store(nanos, Ordering::Relaxed);
        if self.is_draining() && self.grace_over() {
            self.set_flags(CLOSED);
        }
    }

    /// When the handoff grace ends. `None` before the drain begins (or in the instant it
    /// begins, before its start is visible) and for a grace too long to end.
    fn grace_end(&self) -> Option<Instant> {
        self.drain_started.get()?.checked_add(self.grace())
    }

    /// Whether the handoff grace has passed since the drain began.
    fn grace_over(&self) -> bool {
        self.grace_end().is_some_and(|end| Instant::now() >= end)
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
        let request = tracker.shared.admit(Admit::Request);
        assert!(request.is_some(), "the protocol's handoff is served");
        assert!(tracker.guard().is_none(), "no new non-request work");
        tracker.close();
        assert!(tracker.shared.admit(Admit::Request).is_none());
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
        assert!(tracker.shared.admit(Admit::Request).is_none());
        assert!(tracker.is_drained());
    }

    #[tokio::test(start_paused = true)]
    async fn admission_closes_by_itself_one_grace_after_the_drain_began() {
        let (token, tracker) = tracker();
        token.cancel();
        tokio::time::sleep(DEFAULT_HANDOFF_GRACE - Duration::from_millis(1)).await;
        drop(
            tracker
                .shared
                .admit(Admit::Request)
                .expect("within the grace"),
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(tracker.shared.admit(Admit::Request).is_none());
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
            tracker.shared.admit(Admit::Request).is_none(),
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

//! The tracker's shared state: one atomic holding the flag bits and the in-flight count, the
//! admission decided by one read-modify-write on it, the handoff grace's clock, and the
//! wake-up of waiters. Every [`ConnectionTracker`](crate::ConnectionTracker) clone, guard and
//! waiting future points to one [`Shared`].
//!
//! The flag bits, each set once and never cleared:
//!
//! | bit | set by | means |
//! |---|---|---|
//! | `UNREADY` | the announce, or the drain | readiness fails; HTTP/1.x responses carry `Connection: close` |
//! | `DRAINING` | the token's cancellation (or `close`) | no new non-request work; the handoff grace runs |
//! | `CLOSED` | `close`, or the end of the handoff grace | every request is refused |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "serve")]
use crate::connections::Connections;
use crate::loom::sync::{AtomicU64, AtomicUsize, Notify, Ordering};
use crate::tracker::token_watch::{OnCancel, TokenWatch};

/// Bit set once the token is cancelled: the drain has begun, readiness fails, no new
/// [`guard`](crate::ConnectionTracker::guard) is given out. Never cleared.
pub(super) const DRAINING: usize = 0b001;
/// Bit set once shutdown is announced (or draining began): readiness fails. Never cleared.
pub(super) const UNREADY: usize = 0b010;
/// Bit set once admission has closed: every request is refused from then on (see
/// [`ConnectionTracker::close`](crate::ConnectionTracker::close)). Never cleared.
pub(super) const CLOSED: usize = 0b100;
const FLAGS: usize = DRAINING | UNREADY | CLOSED;
/// The in-flight count lives above the flag bits, so that one atomic holds both and a
/// single read-modify-write decides admission (as tokio-util's `TaskTracker` does).
pub(super) const ONE: usize = 0b1000;

/// Default of [`DrainLayer::handoff_grace`](crate::DrainLayer::handoff_grace).
pub(crate) const DEFAULT_HANDOFF_GRACE: Duration = Duration::from_secs(1);

/// The state every clone of a tracker, every guard and every watch points to.
pub(crate) struct Shared {
    /// Flag bits (`DRAINING`, `UNREADY`, `CLOSED`) plus the in-flight count in units of `ONE`.
    pub(super) state: AtomicUsize,
    /// Woken when draining starts and when the count reaches zero while draining.
    notify: Notify,
    pub(super) admitted: AtomicU64,
    pub(super) rejected: AtomicU64,
    /// How long after the drain begins admission stays open, in nanoseconds.
    grace_nanos: AtomicU64,
    /// When the drain began; admission closes by itself one grace later. Set once, just
    /// before `DRAINING`.
    drain_started: OnceLock<Instant>,
    /// The connections `serve` owns, for the report.
    #[cfg(feature = "serve")]
    pub(super) connections: Arc<Connections>,
    pub(super) token: CancellationToken,
    /// Keeps the registration on the token alive; cancelled (and the cycle broken) on drop.
    pub(super) watch: Arc<TokenWatch<Shared>>,
}

impl Shared {
    /// The state of a new tracker draining on `token`; registers on the token, so that an
    /// already cancelled token starts the drain at once.
    pub(super) fn new(token: CancellationToken) -> Arc<Self> {
        let shared = Arc::new_cyclic(|weak| Self {
            state: AtomicUsize::new(0),
            notify: Notify::new(),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            grace_nanos: AtomicU64::new(DEFAULT_HANDOFF_GRACE.as_nanos() as u64),
            drain_started: OnceLock::new(),
            #[cfg(feature = "serve")]
            connections: Arc::default(),
            watch: TokenWatch::new(token.clone(), weak.clone()),
            token,
        });
        shared.watch.poll_token();
        shared
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

/// Where a drain stands, as [`Drained`](super::drained::Drained) needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainStage {
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

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        // Relaxed: the flag carries no data with it; this is only asked to decide a header.
        self.state.load(Ordering::Relaxed) & UNREADY == 0
    }

    /// Where the drain stands. Closes admission if the grace is over and nothing is in
    /// flight, so that the answer `Drained` is final.
    pub(crate) fn stage(&self) -> DrainStage {
        // Acquire: pairs with the Release in `release`, so that everything the finished
        // requests did happens-before the code that runs after `drained()` (closing a pool).
        let state = self.state.load(Ordering::Acquire);
        if state & DRAINING == 0 || state >= ONE {
            return DrainStage::Waiting;
        }
        if state & CLOSED != 0 {
            return DrainStage::Drained;
        }
        if !self.grace_over() {
            // `None`: the grace never ends; only `close()` (which wakes us) ends the wait.
            return self
                .grace_end()
                .map_or(DrainStage::Waiting, DrainStage::Grace);
        }
        // The grace is over: close, and decide on the state the closing saw. An admission
        // that came after it sees `CLOSED` and backs out, so none is admitted after the
        // `Drained` returned here.
        if self.set_flags(CLOSED) < ONE {
            DrainStage::Drained
        } else {
            DrainStage::Waiting
        }
    }

    pub(crate) fn notified(&self) -> crate::loom::sync::Notified<'_> {
        self.notify.notified()
    }

    /// Admits one unit of work (counts it), or returns `false` if it must be refused. The
    /// caller holds what it admitted as an [`InFlightGuard`](crate::InFlightGuard), whose drop
    /// calls [`release`](Self::release).
    ///
    /// The pass-through cost (not draining): one load, one `fetch_add` on the state, one on
    /// the admitted counter (and the guard's `Arc` clone). No lock, no allocation.
    #[inline]
    pub(crate) fn admit(&self, what: Admit) -> bool {
        // Relaxed: only picks the path; the read-modify-write below decides.
        if self.state.load(Ordering::Relaxed) & DRAINING != 0 {
            return self.admit_while_draining(what);
        }
        self.add_one(what)
    }

    /// Admission once the drain has begun: requests until admission closes, nothing else.
    #[cold]
    #[inline(never)]
    fn admit_while_draining(&self, what: Admit) -> bool {
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
    fn add_one(&self, what: Admit) -> bool {
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
        true
    }

    #[cold]
    fn refuse(&self) -> bool {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Releases one unit of work. Called exactly once per admission, by the guard's `Drop`.
    #[inline]
    pub(crate) fn release(&self) {
        // Release: publishes the request's effects to the waiter that sees the count reach
        // zero with its Acquire load (`stage`).
        let prev = self.state.fetch_sub(ONE, Ordering::Release);
        if prev & DRAINING != 0 && prev < 2 * ONE {
            // The last one out while draining: waiters either resolve or start the rest of
            // the grace.
            self.notify_now();
        }
    }

    /// Sets flag bits and returns the previous state; wakes waiters if this call started the
    /// drain, or closed admission with nothing in flight.
    pub(crate) fn set_flags(&self, flags: usize) -> usize {
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
    fn start_draining(&self) {
        // Recorded before `DRAINING` is set, whose Release publishes it.
        self.drain_started.get_or_init(Instant::now);
        let mut flags = DRAINING | UNREADY;
        if self.grace().is_zero() {
            flags |= CLOSED;
        }
        self.set_flags(flags);
    }

    pub(crate) fn close(&self) {
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

impl OnCancel for Shared {
    fn cancelled(&self) {
        self.start_draining();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The token's waiter list holds a waker that points to `watch`: deregister it so that
        // a token that outlives every tracker does not keep the watch alive.
        self.watch.cancel();
    }
}

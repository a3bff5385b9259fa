//! Counts of what the layer did, readable from the layer while it runs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::RetryReason;

/// Counts of retries by reason, and of errors handed back although they were retriable.
/// Shared by the layer and every service it built; cheap to clone.
///
/// # Examples
///
/// ```
/// use tower_drain::client::{RetryReason, TransparentRetryLayer};
///
/// let layer = TransparentRetryLayer::default();
/// let stats = layer.stats();
/// // ... build clients with `layer`, make calls ...
/// assert_eq!(stats.retries(RetryReason::Refused), 0);
/// assert_eq!(stats.total_retries(), 0);
/// ```
#[derive(Clone, Default)]
pub struct RetryStats {
    inner: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    retries: [AtomicU64; RetryReason::ALL.len()],
    exhausted: AtomicU64,
    over_budget: AtomicU64,
    committed: AtomicU64,
    past_deadline: AtomicU64,
}

impl RetryStats {
    /// Retries made for `reason`.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        // Relaxed: independent counters, read for reporting.
        self.inner.retries[reason.index()].load(Ordering::Relaxed)
    }

    /// Retries made, all reasons together.
    pub fn total_retries(&self) -> u64 {
        RetryReason::ALL.iter().map(|r| self.retries(*r)).sum()
    }

    /// Retriable errors handed back because the call had used its attempts.
    pub fn exhausted(&self) -> u64 {
        self.inner.exhausted.load(Ordering::Relaxed)
    }

    /// Retriable errors handed back because the [`RetryBudget`](super::RetryBudget) was empty.
    pub fn over_budget(&self) -> u64 {
        self.inner.over_budget.load(Ordering::Relaxed)
    }

    /// Retriable errors handed back because the body could not be replayed (over the cap, or
    /// the caller's body failed).
    pub fn committed(&self) -> u64 {
        self.inner.committed.load(Ordering::Relaxed)
    }

    /// Retriable errors handed back because the backoff would end past the call's deadline.
    pub fn past_deadline(&self) -> u64 {
        self.inner.past_deadline.load(Ordering::Relaxed)
    }

    pub(crate) fn retried(&self, reason: RetryReason) {
        self.inner.retries[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn gave_up(&self, why: GaveUp) {
        let counter = match why {
            GaveUp::Exhausted => &self.inner.exhausted,
            GaveUp::OverBudget => &self.inner.over_budget,
            GaveUp::Committed => &self.inner.committed,
            GaveUp::PastDeadline => &self.inner.past_deadline,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a retriable error went back to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GaveUp {
    Exhausted,
    OverBudget,
    Committed,
    PastDeadline,
}

impl GaveUp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GaveUp::Exhausted => "attempts exhausted",
            GaveUp::OverBudget => "retry budget empty",
            GaveUp::Committed => "body not replayable",
            GaveUp::PastDeadline => "past the deadline",
        }
    }
}

impl fmt::Debug for RetryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RetryStats");
        for reason in RetryReason::ALL {
            debug.field(reason.as_str(), &self.retries(reason));
        }
        debug
            .field("exhausted", &self.exhausted())
            .field("over_budget", &self.over_budget())
            .field("committed", &self.committed())
            .field("past_deadline", &self.past_deadline())
            .finish()
    }
}

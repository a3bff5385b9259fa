//! The retry budget: retries are a fraction of calls, plus a small reserve that refills over
//! time, so that a backend that refuses everything is not hammered (tower's `TpsBudget` and
//! Finagle's `RetryBudget` have the same shape).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::time::Instant;

/// Milli-retries per retry: the balance is kept in thousandths so that a call earns a
/// fraction of a retry without floating point.
const MILLI: i64 = 1000;

/// How many retries the layer may make, shared by every service it builds.
///
/// Each call deposits `ratio` of a retry, a reserve of `per_second` retries refills every
/// second, each retry withdraws one, and the balance never exceeds `max`. It starts full.
///
/// # Examples
///
/// ```
/// use tower_drain::client::{RetryBudget, TransparentRetryLayer};
///
/// // At most one retry per ten calls, plus 5 a second, holding at most 50.
/// let layer = TransparentRetryLayer::default().budget(RetryBudget::new(0.1, 5, 50));
/// # drop(layer);
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// The balance, in thousandths of a retry.
    balance: AtomicI64,
    deposit: i64,
    per_second: i64,
    max: i64,
    start: Instant,
    /// Milliseconds since `start` up to which the reserve has been refilled.
    refilled_ms: AtomicU64,
}

impl RetryBudget {
    /// A budget earning `ratio` retries per call and `per_second` retries a second, holding at
    /// most `max` retries.
    ///
    /// # Panics
    ///
    /// If `ratio` is negative, not finite or above 1000.
    pub fn new(ratio: f64, per_second: u32, max: u32) -> Self {
        assert!(
            ratio.is_finite() && (0.0..=1000.0).contains(&ratio),
            "RetryBudget::new: ratio must be within 0..=1000, got {ratio}"
        );
        let max = i64::from(max) * MILLI;
        Self {
            balance: AtomicI64::new(max),
            deposit: (ratio * MILLI as f64).round() as i64,
            per_second: i64::from(per_second),
            max,
            start: Instant::now(),
            refilled_ms: AtomicU64::new(0),
        }
    }

    /// A call was made: deposit its share.
    pub(crate) fn deposit(&self) {
        // A full budget (the steady state) costs a load, not a read-modify-write.
        if self.deposit > 0 && self.balance.load(Ordering::Relaxed) < self.max {
            self.add(self.deposit);
        }
    }

    /// Takes one retry from the balance; `false` if there is none.
    pub(crate) fn withdraw(&self) -> bool {
        self.refill();
        // Relaxed: the balance is a counter; no other memory is published through it.
        let mut balance = self.balance.load(Ordering::Relaxed);
        loop {
            if balance < MILLI {
                return false;
            }
            match self.balance.compare_exchange_weak(
                balance,
                balance - MILLI,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => balance = now,
            }
        }
    }

    /// Retries left now (whole ones).
    pub fn balance(&self) -> u64 {
        self.refill();
        u64::try_from(self.balance.load(Ordering::Relaxed) / MILLI).unwrap_or(0)
    }

    fn add(&self, amount: i64) {
        // Relaxed: as above. The cap is applied by whoever sees the balance above it.
        let before = self.balance.fetch_add(amount, Ordering::Relaxed);
        if before + amount > self.max {
            let _ = self.balance.fetch_min(self.max, Ordering::Relaxed);
        }
    }

    /// Adds the reserve earned since the last refill (only on the retry path: calls that
    /// succeed never read the clock).
    fn refill(&self) {
        if self.per_second == 0 {
            return;
        }
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.refilled_ms.load(Ordering::Relaxed);
        if now_ms <= last {
            return;
        }
        // Only the thread that moves the mark adds the reserve for the interval it covers.
        if self
            .refilled_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let earned = (now_ms - last) as i64 * self.per_second * MILLI / 1000;
            self.add(earned);
        }
    }
}

impl Default for RetryBudget {
    /// 20% of calls plus 10 retries a second (tower's `TpsBudget`
    /// defaults: 20%, 10 a second), holding at most 500.
    fn default() -> Self {
        Self::new(0.2, 10, 500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_empty_budget_refuses_until_calls_earn_a_retry() {
        let budget = RetryBudget::new(0.5, 0, 2);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(budget.withdraw());
    }

    #[test]
    fn deposits_never_raise_the_balance_above_the_maximum() {
        let budget = RetryBudget::new(1.0, 0, 3);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!(budget.balance(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_refills_with_time() {
        let budget = RetryBudget::new(0.0, 10, 5);
        while budget.withdraw() {}
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(budget.balance(), 3);
    }
}

//! How long to wait before an attempt: exponential, fully jittered, capped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with full jitter: before retry `n` (from 1) the layer waits a random
/// time in `[0, min(max, base × 2^(n-1))]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait before retry `retry` (1 for the first), drawn with `jitter`.
    pub(crate) fn delay(&self, retry: u32, jitter: &Jitter) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << retry.saturating_sub(1).min(20))
            .min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(jitter.next() % (nanos + 1))
    }
}

/// A small, shared pseudo-random source (SplitMix64 over an atomic counter): jitter needs
/// spread, not unpredictability.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: AtomicU64,
}

impl Jitter {
    pub(crate) fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Self {
            state: AtomicU64::new(seed ^ (std::process::id() as u64).rotate_left(32)),
        }
    }

    pub(crate) fn next(&self) -> u64 {
        // Relaxed: each draw only needs a distinct counter value.
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_ceiling_that_doubles_up_to_the_maximum() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(35),
        };
        let jitter = Jitter::new();
        for _ in 0..1000 {
            assert!(backoff.delay(1, &jitter) <= Duration::from_millis(10));
            assert!(backoff.delay(2, &jitter) <= Duration::from_millis(20));
            assert!(backoff.delay(9, &jitter) <= Duration::from_millis(35));
        }
    }

    #[test]
    fn delays_are_spread() {
        let backoff = Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(10),
        };
        let jitter = Jitter::new();
        let below_half = (0..1000)
            .filter(|_| backoff.delay(1, &jitter) < Duration::from_millis(5))
            .count();
        assert!((300..700).contains(&below_half), "{below_half} of 1000");
    }
}

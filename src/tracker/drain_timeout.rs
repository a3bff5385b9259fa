//! [`DrainTimeout`]: the drain deadline passed with work still in flight.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Returned by [`ConnectionTracker::drained_timeout`](crate::ConnectionTracker::drained_timeout)
/// when the deadline passed before the drain finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimeout {
    in_flight: usize,
    timeout: Duration,
}

impl DrainTimeout {
    pub(crate) fn new(in_flight: usize, timeout: Duration) -> Self {
        Self { in_flight, timeout }
    }

    /// How many requests (and guards) were still in flight when the deadline passed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The deadline that passed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for DrainTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "drain did not finish within {:?}: {} still in flight",
            self.timeout, self.in_flight
        )
    }
}

impl Error for DrainTimeout {}

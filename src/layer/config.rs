//! What the layer was configured with, and how it sorts a request by its path.

use std::time::Duration;

use crate::layer::refusal::Rejection;
use crate::tracker::ConnectionTracker;

/// Everything a [`Drain`](crate::Drain) service needs, shared by all clones behind one `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) tracker: ConnectionTracker,
    pub(crate) readiness_path: Option<Box<str>>,
    pub(crate) liveness_path: Option<Box<str>>,
    /// Paths served while draining and never counted (metrics, admin).
    pub(crate) exempt_paths: Vec<Box<str>>,
    pub(crate) rejection: Rejection,
    /// Insert the tracker into admitted requests' extensions.
    pub(crate) tracker_extension: bool,
    /// Whether any path is answered or let through by the layer itself (readiness,
    /// liveness, exempt): if not, requests are not sorted by path at all.
    pub(crate) routes_by_path: bool,
    /// How many bytes of a refused HTTP/1.x request body to read and discard.
    pub(crate) refused_body_limit: u64,
    /// For how long at most.
    pub(crate) refused_body_timeout: Duration,
}

/// Default of [`DrainLayer::refused_body_limit`](crate::DrainLayer::refused_body_limit).
pub(crate) const DEFAULT_REFUSED_BODY_LIMIT: u64 = 16 * 1024 * 1024;
/// Default of [`DrainLayer::refused_body_timeout`](crate::DrainLayer::refused_body_timeout).
pub(crate) const DEFAULT_REFUSED_BODY_TIMEOUT: Duration = Duration::from_secs(1);

/// What the layer does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Answered by the layer with the readiness state.
    Readiness,
    /// Answered by the layer: alive.
    Liveness,
    /// Passed through, never counted nor refused.
    Exempt,
    /// Counted, or refused once draining.
    Counted,
}

impl Config {
    pub(crate) fn new(tracker: ConnectionTracker) -> Self {
        Self {
            tracker,
            readiness_path: None,
            liveness_path: None,
            exempt_paths: Vec::new(),
            rejection: Rejection::default(),
            tracker_extension: false,
            routes_by_path: false,
            refused_body_limit: DEFAULT_REFUSED_BODY_LIMIT,
            refused_body_timeout: DEFAULT_REFUSED_BODY_TIMEOUT,
        }
    }

    #[inline]
    pub(crate) fn route(&self, path: &str) -> Route {
        if self.readiness_path.as_deref() == Some(path) {
            Route::Readiness
        } else if self.liveness_path.as_deref() == Some(path) {
            Route::Liveness
        } else if self.exempt_paths.iter().any(|p| **p == *path) {
            Route::Exempt
        } else {
            Route::Counted
        }
    }
}

/// Checks a path given to the builder. A path that can never match is a mistake worth
/// reporting at start-up rather than discovering at the first deploy.
pub(crate) fn checked_path(kind: &str, path: &str) -> Box<str> {
    assert!(
        path.starts_with('/') && !path.contains(['?', '#']),
        "tower-drain: {kind} path must start with '/' and hold no query or fragment, got {path:?}"
    );
    path.into()
}

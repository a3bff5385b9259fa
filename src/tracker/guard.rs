//! [`InFlightGuard`]: one admitted unit of work, released on drop.

use std::fmt;
use std::sync::Arc;

use crate::tracker::state::{Admit, Shared};

/// Keeps one request (or other unit of work) counted as in flight until it is dropped.
///
/// The [`DrainLayer`](crate::DrainLayer) creates one per admitted request and moves it from
/// the response future into the response body, so a streaming response counts until its last
/// frame. Get one yourself with [`ConnectionTracker::guard`](crate::ConnectionTracker::guard)
/// for work that outlives a response, such as a WebSocket after its `101` response:
///
/// ```
/// # use tower_drain::{CancellationToken, DrainLayer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = CancellationToken::new();
/// let tracker = DrainLayer::new(token.clone()).tracker();
/// if let Some(guard) = tracker.guard() {
///     tokio::spawn(async move {
///         // ... serve the upgraded connection ...
///         drop(guard); // counted until here
///     });
/// }
/// # token.cancel();
/// # tracker.drained().await;
/// # }
/// ```
#[must_use = "the work stops being counted as soon as the guard is dropped"]
pub struct InFlightGuard {
    shared: Arc<Shared>,
}

impl InFlightGuard {
    /// Admits one unit of work: its guard, or `None` if it must be refused.
    #[inline]
    pub(crate) fn admit(shared: &Arc<Shared>, what: Admit) -> Option<Self> {
        if shared.admit(what) {
            Some(Self {
                shared: Arc::clone(shared),
            })
        } else {
            None
        }
    }

    #[inline]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for InFlightGuard {
    #[inline]
    fn drop(&mut self) {
        self.shared.release();
    }
}

impl fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightGuard").finish_non_exhaustive()
    }
}

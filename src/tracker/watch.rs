//! [`DrainWatch`]: lets a handler see that draining started, so a long stream can end itself.

use std::fmt;

use crate::tracker::drained::Draining;
use crate::tracker::ConnectionTracker;

/// A cheap handle that tells a handler when draining starts.
///
/// Long-lived responses (server-sent events, WebSockets, gRPC streams) never finish on their
/// own, so a drain would wait for them until its deadline. A handler holding a `DrainWatch`
/// can end its stream cleanly instead: stop sending, send a final event, close the socket.
///
/// Get one from [`ConnectionTracker::watch`], or from the request extensions when the layer
/// is built with [`DrainLayer::with_drain_watch`](crate::DrainLayer::with_drain_watch).
///
/// # Examples
///
/// ```
/// # use tower_drain::{CancellationToken, DrainLayer, DrainWatch};
/// async fn ticker(watch: DrainWatch) -> u32 {
///     let mut ticks = 0;
///     let mut interval = tokio::time::interval(std::time::Duration::from_millis(1));
///     loop {
///         tokio::select! {
///             _ = interval.tick() => ticks += 1, // send the next event here
///             _ = watch.draining() => return ticks, // end the stream cleanly
///         }
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = CancellationToken::new();
/// let watch = DrainLayer::new(token.clone()).tracker().watch();
/// let stream = tokio::spawn(ticker(watch));
/// token.cancel();
/// stream.await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct DrainWatch {
    pub(crate) tracker: ConnectionTracker,
}

impl DrainWatch {
    /// Returns `true` once draining has started.
    pub fn is_draining(&self) -> bool {
        self.tracker.shared.is_draining()
    }

    /// Waits until draining starts. Resolves at once if it already has.
    ///
    /// # Cancel safety
    ///
    /// This method is cancel safe: use it in `tokio::select!` next to the stream's own work.
    pub fn draining(&self) -> Draining<'_> {
        self.tracker.draining()
    }
}

impl fmt::Debug for DrainWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainWatch")
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

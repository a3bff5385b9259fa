//! [`ConnState`]: what a connection's task (`connection.rs`) and its service (`Leave`, in
//! `leave.rs`) share.

use std::sync::atomic::{AtomicBool, Ordering};

use super::protocol::Protocol;
use crate::connections::ConnectionGuard;
use crate::tracker::ConnectionTracker;

/// What a connection's task and its service share.
///
/// The flags are read and written with `Relaxed`: each is read alone, to decide what to do
/// next, and publishes no other memory.
pub(super) struct ConnState {
    pub(super) guard: ConnectionGuard,
    pub(super) protocol: Protocol,
    /// Read by `Leave` as each HTTP/1.x response is ready: from the announce on, every
    /// response carries `Connection: close`.
    pub(super) tracker: ConnectionTracker,
    /// Set once an HTTP/1.x connection must leave before the announce (its maximum age):
    /// its responses carry `Connection: close` from then on.
    pub(super) leave: AtomicBool,
    pub(super) had_request: AtomicBool,
    /// HTTP/2: set just before the task asks hyper to say goodbye (`held_pong.rs`).
    pub(super) going_away: AtomicBool,
    /// Set by every write to the socket (`ConnIo`), cleared when the connection is told to
    /// leave: whether it closes right after a response, or idle (`linger.rs`).
    pub(super) wrote: AtomicBool,
}

impl ConnState {
    pub(super) fn new(
        guard: ConnectionGuard,
        protocol: Protocol,
        tracker: ConnectionTracker,
    ) -> Self {
        Self {
            guard,
            protocol,
            tracker,
            leave: AtomicBool::new(false),
            had_request: AtomicBool::new(false),
            going_away: AtomicBool::new(false),
            wrote: AtomicBool::new(false),
        }
    }

    /// Whether the service has been called yet.
    pub(super) fn had_request(&self) -> bool {
        self.had_request.load(Ordering::Relaxed)
    }

    /// Whether an HTTP/1.x response must carry `Connection: close`: the shutdown was
    /// announced, or the connection reached its maximum age.
    pub(super) fn must_leave(&self) -> bool {
        self.leave.load(Ordering::Relaxed) || !self.tracker.is_ready()
    }
}

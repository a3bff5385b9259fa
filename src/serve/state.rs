//! [`ConnState`]: what a connection's task (`connection.rs`) and its service (`Leave`, in
//! `leave.rs`) share.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::protocol::Protocol;
use crate::connections::ConnectionGuard;
use crate::tracker::ConnectionTracker;

/// What a connection's task and its service share.
///
/// The flags are read and written with `Relaxed`: each is read alone, to decide what to do
/// next, and publishes no other memory; the first request's wake-up goes through the
/// `Notify`.
pub(super) struct ConnState {
    pub(super) guard: ConnectionGuard,
    pub(super) protocol: Protocol,
    pub(super) tracker: ConnectionTracker,
    /// Set once the connection must leave for its own reason (its maximum age): HTTP/1.x
    /// responses carry `Connection: close` from then on. (The announce is read from the
    /// tracker.)
    pub(super) leave: AtomicBool,
    /// Signalled on the connection's first request.
    pub(super) first_request: Notify,
    pub(super) had_request: AtomicBool,
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
            first_request: Notify::new(),
            had_request: AtomicBool::new(false),
        }
    }

    /// Whether the service has been called yet.
    pub(super) fn had_request(&self) -> bool {
        self.had_request.load(Ordering::Relaxed)
    }
}

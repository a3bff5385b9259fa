//! [`ConnState`]: what a connection's task (`connection.rs`) and its service (`Leave`, in
//! `leave.rs`) share.

use std::sync::atomic::{AtomicBool, Ordering};

use super::protocol::Protocol;
use crate::connections::ConnectionGuard;

/// What a connection's task and its service share.
///
/// The flags are read and written with `Relaxed`: each is read alone, to decide what to do
/// next, and publishes no other memory.
pub(super) struct ConnState {
    pub(super) guard: ConnectionGuard,
    pub(super) protocol: Protocol,
    /// Set once an HTTP/1.x connection must leave (the announce, if it was open then; its
    /// maximum age): its responses carry `Connection: close` from then on.
    pub(super) leave: AtomicBool,
    pub(super) had_request: AtomicBool,
}

impl ConnState {
    pub(super) fn new(guard: ConnectionGuard, protocol: Protocol) -> Self {
        Self {
            guard,
            protocol,
            leave: AtomicBool::new(false),
            had_request: AtomicBool::new(false),
        }
    }

    /// Whether the service has been called yet.
    pub(super) fn had_request(&self) -> bool {
        self.had_request.load(Ordering::Relaxed)
    }
}

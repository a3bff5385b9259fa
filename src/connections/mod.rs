//! The registry of [`serve`](crate::serve())'s connections: `serve` registers each connection
//! it owns, so that the shutdown report can say how many were open, told to leave, closed, or
//! cut at the deadline, and name what each cut connection was answering. It hangs off the
//! tracker (the one thing `serve` and `Shutdown` share), and exists only with the `serve`
//! feature.
//!
//! Registration happens once per connection (a lock on open and close); per request, only
//! the connection's own record of its last request head is written, without a lock
//! (`head.rs`).

// `serve` fills the registry and `Shutdown` reads it: without `shutdown`, part of it is unused.
#![cfg_attr(not(feature = "shutdown"), allow(dead_code))]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Uri, Version};

use self::head::HeadSlot;

mod head;

/// Every open connection of every `serve` on one tracker, and counts of the closed ones.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<u64, Arc<Record>>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    told_to_leave: AtomicU64,
    closed: AtomicU64,
    cut: AtomicU64,
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct Record {
    peer: Option<SocketAddr>,
    told_to_leave: AtomicBool,
    /// The protocol and the head of the last request the connection delivered.
    last: HeadSlot,
}

impl Connections {
    /// Registers a connection just accepted; it counts as open until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>, peer: Option<SocketAddr>) -> ConnectionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(Record {
            peer,
            told_to_leave: AtomicBool::new(false),
            last: HeadSlot::default(),
        });
        lock(&self.open).insert(id, Arc::clone(&record));
        self.accepted.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            connections: Arc::clone(self),
            id,
            record,
            finished: AtomicBool::new(false),
        }
    }

    pub(crate) fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: lock(&self.open).len(),
            accepted: self.accepted.load(Ordering::Relaxed),
            told_to_leave: self.told_to_leave.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
        }
    }

    /// Counts every open connection as cut, now, and returns them, oldest first. Called by
    /// the shutdown when it aborts the servers; their tasks drop the guards later, which then
    /// count nothing more.
    pub(crate) fn cut_all(&self) -> Vec<OpenConnection> {
        let mut open: Vec<_> = lock(&self.open).drain().collect();
        self.cut.fetch_add(open.len() as u64, Ordering::Relaxed);
        open.sort_unstable_by_key(|(id, _)| *id);
        open.into_iter()
            .map(|(_, record)| {
                let last = record.last.read();
                OpenConnection {
                    peer: record.peer,
                    told_to_leave: record.told_to_leave.load(Ordering::Relaxed),
                    last_request: last.map(|(version, method, uri)| LastRequest {
                        version,
                        method,
                        uri,
                    }),
                }
            })
            .collect()
    }
}

/// Keeps a connection registered; dropped when its task ends, cleanly or not.
#[must_use = "the connection stops being counted as soon as the guard is dropped"]
pub(crate) struct ConnectionGuard {
    connections: Arc<Connections>,
    id: u64,
    record: Arc<Record>,
    finished: AtomicBool,
}

impl ConnectionGuard {
    pub(crate) fn record(&self) -> &Record {
        &self.record
    }

    /// Counts the connection as told to leave (`GOAWAY`, `Connection: close`), once.
    pub(crate) fn told_to_leave(&self) {
        if !self.record.told_to_leave.swap(true, Ordering::Relaxed) {
            self.connections
                .told_to_leave
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The connection ended by itself (closed, or failed): not cut.
    pub(crate) fn finished(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if lock(&self.connections.open).remove(&self.id).is_none() {
            return; // already counted as cut by `cut_all`
        }
        let counter = if self.finished.load(Ordering::Relaxed) {
            &self.connections.closed
        } else {
            // Dropped before it ended: its task was aborted, at the drain deadline or by a
            // forced exit.
            &self.connections.cut
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Record {
    /// Remembers the head of the request the connection is now serving. Called from the
    /// connection's task only (see `head.rs`).
    pub(crate) fn request(&self, version: Version, method: &Method, uri: &Uri) {
        self.last.write(version, method, uri);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves consistent data: a map insert or removal.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts of the connections [`serve`](crate::serve()) owned, in the
/// [`ShutdownReport`](crate::ShutdownReport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionCounts {
    /// Open when the counts were taken.
    pub open: usize,
    /// Accepted since the tracker was created.
    pub accepted: u64,
    /// Told to leave (HTTP/2 `GOAWAY`, HTTP/1.x `Connection: close`) while still served.
    pub told_to_leave: u64,
    /// Ended by themselves: closed by either side once their responses were written.
    pub closed: u64,
    /// Cut while still open: at the drain deadline, or by a forced exit.
    pub cut: u64,
}

/// A connection still open, as the report names it when it is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenConnection {
    /// The client's address, if the listener knows it.
    pub peer: Option<SocketAddr>,
    /// Whether it had been told to leave.
    pub told_to_leave: bool,
    /// The last request it delivered: the response it was most likely still writing.
    pub last_request: Option<LastRequest>,
}

/// The head of a request, as [`OpenConnection`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastRequest {
    /// `HTTP/1.1`, `HTTP/2`...
    pub version: Version,
    /// The method.
    pub method: Method,
    /// The target, as the client sent it.
    pub uri: Uri,
}

impl fmt::Display for OpenConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer {
            Some(peer) => write!(f, "{peer}")?,
            None => f.write_str("a connection")?,
        }
        match &self.last_request {
            Some(last) => write!(
                f,
                " ({:?}, last request {} {})",
                last.version, last.method, last.uri
            ),
            None => f.write_str(" (no request)"),
        }
    }
}

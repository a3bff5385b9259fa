//! The accept loop: accepts until the drain begins (through the notice period), then waits
//! for every connection to close. The connections' tasks live in a `JoinSet` owned by this
//! future, so dropping it (the drain deadline) cuts them all.
//!
//! With [`max_connections`](super::Serve::max_connections), each connection's task holds a
//! permit of a semaphore: at the limit the loop does not accept (the kernel's backlog holds
//! the next connections) until a task ends and gives its permit back.

use std::any::Any;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::connection::serve_connection;
use super::listener::{Listener, ACCEPT_ERROR_BACKOFF};
use super::make::ConnectionService;
use super::options::{Builders, Options};
use super::service::HttpService;
use crate::tracker::ConnectionTracker;

/// Accepts on `listener` until the drain begins, takes the connections queued in its backlog,
/// then waits for every connection to close.
pub(super) async fn run<L, M, K>(
    mut listener: L,
    tracker: ConnectionTracker,
    mut make: M,
    options: Options,
) -> io::Result<()>
where
    L: Listener,
    M: ConnectionService<L::Addr, K>,
    M::Service: HttpService,
{
    let limit = options
        .max_connections
        .map(|max| Arc::new(Semaphore::new(max)));
    let shared = Shared {
        builders: Arc::new(Builders::new(&options)),
        options: Arc::new(options),
        tracker: tracker.clone(),
    };
    let mut connections = JoinSet::new();
    {
        let draining = tracker.draining();
        tokio::pin!(draining);
        loop {
            tokio::select! {
                biased;
                () = &mut draining => break,
                // At the connection limit, waits for a permit before accepting.
                (accepted, permit) = accept_within(&mut listener, &limit) => match accepted {
                    Ok(accepted) => {
                        shared.spawn(&mut connections, &mut make, accepted, permit).await?;
                    }
                    // Out of file descriptors and the like: the listener itself is fine.
                    // Wait instead of spinning, and go on.
                    Err(_) => tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await,
                },
                // Reap finished connections as they go, so the set stays as large as the
                // number of open connections.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
    // The drain has begun: stop accepting. Connections already in the listen backlog were sent
    // before the load balancer knew; closing the listener would make the kernel reset them,
    // so they are taken and served (each told to leave at once), unless the socket is shared
    // with a next generation (`Inherited`), which takes them. Whatever the connection limit:
    // waiting for permits would keep the listener open through the drain.
    for accepted in listener.take_queued() {
        shared
            .spawn(&mut connections, &mut make, accepted, None)
            .await?;
    }
    // Each connection says goodbye by itself.
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// What every connection of one server shares.
struct Shared {
    builders: Arc<Builders>,
    options: Arc<Options>,
    tracker: ConnectionTracker,
}

impl Shared {
    /// Spawns the task that serves one accepted connection into `connections`, once `make` is
    /// ready to make its service. An error of `make` ends the server: it can make no more.
    async fn spawn<Io, A, M, K>(
        &self,
        connections: &mut JoinSet<()>,
        make: &mut M,
        (io, addr): (Io, A),
        permit: Option<OwnedSemaphorePermit>,
    ) -> io::Result<()>
    where
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        A: Any,
        M: ConnectionService<A, K>,
        M::Service: HttpService,
    {
        poll_fn(|cx| make.poll_ready(cx))
            .await
            .map_err(io::Error::other)?;
        // Spawned as it is: an `async move` block around it would hold the future twice (the
        // captured one and the one it awaits; rustc does not overlap them), doubling every
        // connection task's memory.
        connections.spawn(serve_connection(
            io,
            socket_addr(&addr),
            make.make(&addr),
            permit,
            self.tracker.clone(),
            Arc::clone(&self.builders),
            Arc::clone(&self.options),
        ));
        Ok(())
    }
}

/// The next connection, once there is room for it under the limit: with the permit it holds.
///
/// # Cancel safety
///
/// Cancel safe if the listener's `accept` is (tokio's listeners are): a permit taken is given
/// back, and the semaphore keeps no place in its queue for a dropped acquire.
async fn accept_within<L: Listener>(
    listener: &mut L,
    limit: &Option<Arc<Semaphore>>,
) -> (io::Result<(L::Io, L::Addr)>, Option<OwnedSemaphorePermit>) {
    let permit = match limit {
        // The semaphore is never closed.
        Some(limit) => Arc::clone(limit).acquire_owned().await.ok(),
        None => None,
    };
    (listener.accept().await, permit)
}

/// The peer's address for the report, if the listener's address is an IP one.
fn socket_addr<A: Any>(addr: &A) -> Option<SocketAddr> {
    (addr as &dyn Any).downcast_ref::<SocketAddr>().copied()
}

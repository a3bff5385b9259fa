//! The accept loop: accepts until the drain begins (through the notice period), then waits
//! for every connection to close. The connections' tasks live in a `JoinSet` owned by this
//! future, so dropping it (the drain deadline) cuts them all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::connection::serve_connection;
use super::options::{Builders, Options};
use super::service::HttpService;
use crate::tracker::ConnectionTracker;

/// Accepts on `listener` until the drain begins, takes the connections queued in its backlog,
/// then waits for every connection to close.
pub(super) async fn run<S: HttpService>(
    listener: TcpListener,
    tracker: ConnectionTracker,
    service: S,
    options: Options,
) -> io::Result<()> {
    // Serves one accepted connection: its future, spawned into `connections`.
    let serve = {
        let tracker = tracker.clone();
        let builders = Arc::new(Builders::new(&options));
        let options = Arc::new(options);
        move |(stream, peer): (TcpStream, SocketAddr)| {
            serve_connection(
                stream,
                peer,
                tracker.clone(),
                service.clone(),
                Arc::clone(&builders),
                Arc::clone(&options),
            )
        }
    };
    let mut connections = JoinSet::new();
    {
        let draining = tracker.draining();
        tokio::pin!(draining);
        loop {
            tokio::select! {
                biased;
                () = &mut draining => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        connections.spawn(serve(accepted));
                    }
                    // Out of file descriptors and the like: the listener itself is fine.
                    // Wait instead of spinning, and go on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                // Reap finished connections as they go, so the set stays as large as the
                // number of open connections.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
    // The drain has begun: stop accepting. Connections already in the listen backlog were sent
    // before the load balancer knew; closing the listener would make the kernel reset them,
    // so they are taken and served (each told to leave at once).
    for accepted in take_backlog(listener) {
        connections.spawn(serve(accepted));
    }
    // Each connection says goodbye by itself.
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// At most this many connections are taken from the backlog at the drain: the kernel's
/// default cap on any backlog (`net.core.somaxconn`), so a client that keeps connecting
/// cannot hold the listener open.
const MAX_BACKLOG: usize = 4096;

/// Takes the connections already queued in the listen backlog, then closes the listener.
///
/// A non-blocking `accept` until the queue is empty: it asks the kernel, not the reactor.
/// (tokio's `accept` waits for the reactor's next turn to learn that the queue is empty, and a
/// load balancer that keeps connecting, as nginx does until it is refused, kept the listener
/// open for as long as it did: up to a second with nginx under load, while the drain was
/// meant to have stopped accepting.) What connects after the last `accept` is refused, or
/// reset if it made the queue in the microseconds before the close.
fn take_backlog(listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let mut taken = Vec::new();
    // Still non-blocking: `into_std` keeps the mode tokio set.
    let Ok(listener) = listener.into_std() else {
        return taken;
    };
    while taken.len() < MAX_BACKLOG {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    taken.push((stream, peer));
                }
            }
            // Reset by its client while queued: the next one may be fine.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Empty, or out of file descriptors: what is left is reset with the close.
            Err(_) => break,
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn drain_takes_every_queued_connection_without_waiting_then_refuses_new_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Queued by the kernel while nothing accepts; the reactor has not seen them.
        let clients: Vec<_> = (0..20)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let taken = take_backlog(listener);
        assert_eq!(taken.len(), clients.len());
        let mut local: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut peers: Vec<_> = taken.iter().map(|(_, peer)| *peer).collect();
        local.sort();
        peers.sort();
        assert_eq!(peers, local, "each queued client is taken, once");
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}

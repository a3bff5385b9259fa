//! The accept loop: accepts until the drain begins (through the notice period), then waits
//! for every connection to close. The connections' tasks live in a `JoinSet` owned by this
//! future, so dropping it (the drain deadline) cuts them all.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_service::Service;

use super::connection::Connection;
use super::{BoxError, Options};
use crate::tracker::ConnectionTracker;

/// The hyper-util builders for each protocol: the protocol is known before hyper sees the
/// connection (see `protocol.rs`).
pub(super) struct Builders {
    pub(super) http1: auto::Builder<TokioExecutor>,
    pub(super) http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(options: &Options) -> Self {
        let mut http1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        http1
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout);
        let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        http2
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(options.keep_alive_interval)
            .keep_alive_timeout(options.keep_alive_timeout)
            .max_concurrent_streams(options.max_concurrent_streams);
        Self { http1, http2 }
    }
}

pub(super) async fn run<S, B>(
    listener: TcpListener,
    tracker: ConnectionTracker,
    service: S,
    options: Options,
) -> io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builders = Arc::new(Builders::new(&options));
    let options = Arc::new(options);
    let mut connections = JoinSet::new();
    {
        let draining = tracker.draining();
        tokio::pin!(draining);
        loop {
            tokio::select! {
                biased;
                () = &mut draining => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        spawn(&mut connections, stream, peer, &tracker, &service, &builders, &options)
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
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        spawn(
            &mut connections,
            stream,
            peer,
            &tracker,
            &service,
            &builders,
            &options,
        );
    }
    drop(listener);
    // Each connection says goodbye by itself.
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one accepted connection in its own task.
fn spawn<S, B>(
    connections: &mut JoinSet<()>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tracker: &ConnectionTracker,
    service: &S,
    builders: &Arc<Builders>,
    options: &Arc<Options>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let connection = Connection::new(
        stream,
        peer,
        tracker.clone(),
        service.clone(),
        Arc::clone(builders),
        Arc::clone(options),
    );
    connections.spawn(connection.run());
}

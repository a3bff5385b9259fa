//! One connection's life: detect its protocol, serve it, and tell it to leave at the right
//! moment (the announce, its first request after the announce, its maximum age, the drain).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_service::Service;

use super::accept::Builders;
use super::leave::Leave;
use super::linger::{linger, Lingering};
use super::protocol::{detect, Protocol};
use super::Options;
use crate::connections::ConnectionGuard;
use crate::tracker::ConnectionTracker;
use crate::BoxError;

/// What a connection's task and its service share.
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

pub(super) struct Connection<S> {
    stream: TcpStream,
    peer: SocketAddr,
    tracker: ConnectionTracker,
    service: S,
    builders: Arc<Builders>,
    options: Arc<Options>,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        tracker: ConnectionTracker,
        service: S,
        builders: Arc<Builders>,
        options: Arc<Options>,
    ) -> Self {
        Self {
            stream,
            peer,
            tracker,
            service,
            builders,
            options,
        }
    }

    pub(super) async fn run(self) {
        let Self {
            stream,
            peer,
            tracker,
            service,
            builders,
            options,
        } = self;
        let guard = tracker.registry().open(Some(peer));
        let accepted_announced = !tracker.is_ready();
        let _ = stream.set_nodelay(true);
        // A client that says nothing within the header timeout is closed: it was never served.
        // Once the drain has begun it gets `LATE_FIRST_REQUEST` more at most: its first bytes
        // may be on the wire, and closing now would answer them with a reset.
        let detected = tokio::select! {
            detected = tokio::time::timeout(options.header_read_timeout, detect(&stream)) => detected,
            () = async {
                tracker.draining().await;
                tokio::time::sleep(LATE_FIRST_REQUEST).await;
            } => Ok(Ok(None)),
        };
        let protocol = match detected {
            Ok(Ok(Some(protocol))) => protocol,
            Ok(Ok(None) | Err(_)) | Err(_) => {
                guard.finished();
                return;
            }
        };
        let state = Arc::new(ConnState {
            guard,
            protocol,
            tracker: tracker.clone(),
            leave: AtomicBool::new(false),
            first_request: Notify::new(),
            had_request: AtomicBool::new(false),
        });
        let builder = match protocol {
            Protocol::Http1 => &builders.http1,
            Protocol::Http2 => &builders.http2,
        };
        let service = TowerToHyperService::new(Leave::new(service, Arc::clone(&state)));
        let (io, returned) = Lingering::new(stream);
        // Boxed, so that it can be dropped (giving the socket back) before the task lingers.
        let mut connection =
            Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));

        let age = options.max_connection_age.map(jittered);
        let mut age_timer = std::pin::pin!(sleep_or_never(age));
        let mut grace_timer = std::pin::pin!(sleep_or_never(None));
        let mut late_timer = std::pin::pin!(sleep_or_never(None));
        let mut announced = std::pin::pin!(tracker.announced());
        let mut draining = std::pin::pin!(tracker.draining());
        let (mut saw_announce, mut saw_drain, mut aged, mut told) = (false, false, false, false);
        let mut late = false;
        // An HTTP/2 connection accepted during the notice is told to leave after its first
        // request; one accepted before, at the announce.
        let mut wait_first_request = accepted_announced;

        loop {
            tokio::select! {
                biased;
                // Closed by either side, or failed: it ended by itself.
                _ = connection.as_mut() => break,
                () = &mut draining, if !saw_drain => {
                    saw_drain = true;
                    if protocol == Protocol::Http1 && !state.had_request.load(Ordering::Relaxed) {
                        // No request yet, but the first may be on the wire: hyper would close
                        // the connection unread. Serve it (its response carries `Connection:
                        // close`), and close only if none comes soon.
                        late_timer.set(sleep_or_never(Some(LATE_FIRST_REQUEST)));
                    } else if !told || protocol == Protocol::Http1 {
                        // HTTP/1.x: idle connections close, busy ones after their response.
                        // HTTP/2: GOAWAY, unless already sent.
                        connection.as_mut().graceful_shutdown();
                        told = true;
                        state.guard.told_to_leave();
                    }
                }
                () = &mut late_timer, if !late => {
                    late = true;
                    if !state.had_request.load(Ordering::Relaxed) {
                        connection.as_mut().graceful_shutdown();
                    }
                }
                () = &mut announced, if !saw_announce => {
                    saw_announce = true;
                    if protocol == Protocol::Http2 && !told && !wait_first_request {
                        connection.as_mut().graceful_shutdown();
                        told = true;
                        state.guard.told_to_leave();
                    }
                    // HTTP/1.x: `Leave` puts `Connection: close` on the next response.
                }
                () = state.first_request.notified(), if wait_first_request && !told => {
                    wait_first_request = false;
                    if protocol == Protocol::Http2 {
                        connection.as_mut().graceful_shutdown();
                        told = true;
                        state.guard.told_to_leave();
                    }
                }
                () = &mut age_timer, if !aged => {
                    aged = true;
                    state.leave.store(true, Ordering::Relaxed);
                    if protocol == Protocol::Http2 && !told {
                        connection.as_mut().graceful_shutdown();
                        told = true;
                        state.guard.told_to_leave();
                    }
                    if let Some(grace) = options.max_connection_age_grace {
                        grace_timer.set(sleep_or_never(Some(grace)));
                    }
                }
                // Past its age and its grace: closed with whatever is still in flight.
                () = &mut grace_timer => break,
            }
        }
        // The connection counts as closed from here; hyper gives the socket back when dropped.
        state.guard.finished();
        drop(connection);
        drop(state);
        if let Ok(stream) = returned.await {
            linger(stream).await;
        }
    }
}

/// How long, once the drain has begun, a connection that has not sent a request yet is given
/// for its first one (a request already on the wire), before it is closed.
const LATE_FIRST_REQUEST: Duration = Duration::from_secs(1);

/// `age`, give or take 10 % at random (gRFC A9), so that connections opened together do not
/// all leave at once.
fn jittered(age: Duration) -> Duration {
    // A cheap random number from the hasher's random keys: no dependency needed for this.
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(age.as_nanos() as u64);
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    age.mul_f64(0.9 + 0.2 * unit)
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let age = Duration::from_secs(100);
        for _ in 0..1000 {
            let jittered = jittered(age);
            assert!(jittered >= Duration::from_secs(90), "{jittered:?}");
            assert!(jittered < Duration::from_secs(110), "{jittered:?}");
        }
    }
}

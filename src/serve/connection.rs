//! One connection's life: detect its protocol, serve it, tell it to leave when its
//! [`Lifecycle`] says so (the announce, its first request after the announce, its maximum
//! age, the drain), then close it with a linger.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;

use super::leave::Leave;
use super::lifecycle::{Action, Event, Lifecycle};
use super::linger::{linger, Lingering};
use super::options::{Builders, Options};
use super::protocol::{detect, Protocol};
use super::service::HttpService;
use super::state::ConnState;
use crate::tracker::ConnectionTracker;

/// How long, once the drain has begun, a connection that has not sent a request yet is given
/// for its first one (a request already on the wire), before it is closed.
const LATE_FIRST_REQUEST: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it closes, counted in `tracker`'s registry.
pub(super) async fn serve_connection<S: HttpService>(
    stream: TcpStream,
    peer: SocketAddr,
    tracker: ConnectionTracker,
    service: S,
    builders: Arc<Builders>,
    options: Arc<Options>,
) {
    let guard = tracker.registry().open(Some(peer));
    let during_notice = !tracker.is_ready();
    let _ = stream.set_nodelay(true);
    let Some(protocol) = detect_protocol(&stream, &tracker, options.header_read_timeout).await
    else {
        guard.finished();
        return;
    };
    let state = Arc::new(ConnState::new(guard, protocol, tracker.clone()));
    let builder = match protocol {
        Protocol::Http1 => &builders.http1,
        Protocol::Http2 => &builders.http2,
    };
    let service = TowerToHyperService::new(Leave::new(service, Arc::clone(&state)));
    let (io, returned) = Lingering::new(stream);
    // Boxed, so that it can be dropped (giving the socket back) before the task lingers.
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));

    let mut life = Lifecycle::new(protocol, during_notice);
    let mut draining = pin!(tracker.draining());
    let mut announced = pin!(tracker.announced());
    // The timers fire once: each is disarmed (set to never) when it fires.
    let mut age_timer = pin!(sleep_or_never(options.max_connection_age.map(jittered)));
    let mut grace_timer = pin!(sleep_or_never(None));
    let mut late_timer = pin!(sleep_or_never(None));
    loop {
        let event = tokio::select! {
            biased;
            // Closed by either side, or failed: it ended by itself.
            _ = connection.as_mut() => break,
            () = &mut draining, if life.awaits(Event::Drain) => Event::Drain,
            () = &mut late_timer => {
                late_timer.set(sleep_or_never(None));
                Event::LateFirstRequestDue
            }
            () = &mut announced, if life.awaits(Event::Announce) => Event::Announce,
            () = state.first_request.notified(), if life.awaits(Event::FirstRequest) => {
                Event::FirstRequest
            }
            () = &mut age_timer => {
                age_timer.set(sleep_or_never(None));
                // HTTP/1.x: `Leave` puts `Connection: close` on its responses from now on.
                state.leave.store(true, Ordering::Relaxed);
                if let Some(grace) = options.max_connection_age_grace {
                    grace_timer.set(sleep_or_never(Some(grace)));
                }
                Event::Aged
            }
            // Past its age and its grace: closed with whatever is still in flight.
            () = &mut grace_timer => break,
        };
        match life.on(event, state.had_request()) {
            Action::Wait => {}
            Action::TellToLeave => {
                connection.as_mut().graceful_shutdown();
                state.guard.told_to_leave();
            }
            Action::AwaitLateFirstRequest => {
                late_timer.set(sleep_or_never(Some(LATE_FIRST_REQUEST)));
            }
            Action::CloseUnserved => connection.as_mut().graceful_shutdown(),
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

/// Which protocol the connection speaks, from its first bytes. `None`: it closed or failed
/// first, or said nothing in time.
///
/// A client that says nothing within the header timeout is closed: it was never served. Once
/// the drain has begun it gets `LATE_FIRST_REQUEST` more at most: its first bytes may be on
/// the wire, and closing now would answer them with a reset.
async fn detect_protocol(
    stream: &TcpStream,
    tracker: &ConnectionTracker,
    header_read_timeout: Duration,
) -> Option<Protocol> {
    tokio::select! {
        detected = tokio::time::timeout(header_read_timeout, detect(stream)) => {
            detected.ok().and_then(Result::ok).flatten()
        }
        () = async {
            tracker.draining().await;
            tokio::time::sleep(LATE_FIRST_REQUEST).await;
        } => None,
    }
}

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

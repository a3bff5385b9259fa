//! One connection's life: detect its protocol, serve it, tell it to leave when its
//! [`Lifecycle`] says so (the announce, its maximum age, the drain), then close it
//! (`linger.rs`) once hyper, or the upgraded stream of a WebSocket, is done with it.

use std::any::Any;
use std::future::poll_fn;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep, Instant};

use super::conn_io::ConnIo;
use super::gate::Gate;
use super::idle::idle;
use super::leave::Leave;
use super::lifecycle::{Action, Event, Lifecycle};
use super::linger::{close, Linger};
use super::options::{Builders, Options};
use super::protocol::{detect, Prefix, Protocol};
use super::service::HttpService;
use super::state::ConnState;
use crate::connections::ConnectionGuard;
use crate::tracker::ConnectionTracker;
use crate::BoxError;

/// How long, once the drain has begun, an HTTP/1.x connection whose first request has started
/// to arrive is given to finish sending it, before it is closed.
pub(super) const LATE_FIRST_REQUEST: Duration = Duration::from_secs(1);

/// How long after its accept a connection that has sent nothing may still have its first bytes
/// on the wire: a load balancer writes its request as soon as its connect completes. Once the
/// drain has begun, a silent connection is closed when it is this old (at once if it already
/// is): an older one is a pre-connection or a health check's TCP connect, and waiting for it
/// would only delay the exit.
pub(super) const FIRST_BYTES: Duration = Duration::from_millis(10);

/// Serves one accepted connection until it closes, counted in `tracker`'s registry. `permit`,
/// the connection's place under the connection limit, is held until then (or until the task is
/// cut).
pub(super) async fn serve_connection<Io, S>(
    io: Io,
    peer: Option<SocketAddr>,
    service: impl Future<Output = Result<S, BoxError>>,
    permit: Option<OwnedSemaphorePermit>,
    tracker: ConnectionTracker,
    builders: Arc<Builders>,
    options: Arc<Options>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let _permit = permit;
    let accepted = Instant::now();
    let opened = Opened {
        guard: tracker.registry().open(peer),
        during_notice: !tracker.is_ready(),
        first_request_deadline: accepted + options.header_read_timeout,
        speaks_from: accepted,
        first_bytes_grace: FIRST_BYTES,
        alpn: None,
    };
    configure_tcp(&io, &options);
    #[cfg(feature = "rustls")]
    if let Some(config) = options.tls.clone() {
        // Boxed: a TLS connection's state (rustls' buffers, the handshake) is several KB, and
        // would otherwise size every cleartext connection's task as well.
        Box::pin(serve_tls(
            io, &config, opened, service, tracker, builders, options,
        ))
        .await;
        return;
    }
    serve_stream(io, opened, service, tracker, builders, options).await;
}

/// Serves one accepted connection over TLS: the handshake (bounded by the header read
/// timeout, and by the drain), then the stream as a cleartext one.
#[cfg(feature = "rustls")]
async fn serve_tls<Io, S>(
    io: Io,
    config: &super::tls::TlsConfig,
    opened: Opened,
    service: impl Future<Output = Result<S, BoxError>>,
    tracker: ConnectionTracker,
    builders: Arc<Builders>,
    options: Arc<Options>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    use super::tls::{handshake, negotiated, PeerCertificates, Served, WithPeerCertificates};
    let deadline = opened.first_request_deadline;
    // Boxed, both: this future lives as long as the connection. The handshake's state (rustls'
    // acceptor and the connection it builds, about 3 KB) is freed once the handshake is done,
    // and the stream (rustls' connection, about 1.2 KB) moves as a pointer, where inline it
    // took a slot in each future that holds it in turn (`serve_stream`'s argument, the stream
    // hyper gives back, the close): 9.3 KB of future for a TLS connection's whole life, 2.1 KB
    // now (`tests` below).
    let handshake = Box::pin(handshake(
        io,
        config,
        &tracker,
        deadline,
        opened.speaks_from,
    ));
    let Some(stream): Option<Served<Io>> = handshake.await.map(Box::new) else {
        // Failed, stalled, or cut by the drain: never served.
        opened.guard.finished();
        return;
    };
    let certs = PeerCertificates::of(stream.get_ref().1.peer_certificates());
    let opened = Opened {
        // The client writes its first request once its handshake is done.
        speaks_from: Instant::now(),
        // In its handshake when the drain began: a client connecting, not a pre-connection;
        // its first request is given the time of one on the wire.
        first_bytes_grace: if tracker.is_draining() {
            LATE_FIRST_REQUEST
        } else {
            FIRST_BYTES
        },
        alpn: negotiated(&stream),
        ..opened
    };
    let service = async move {
        let service = service.await?;
        Ok(WithPeerCertificates::new(service, certs))
    };
    serve_stream(stream, opened, service, tracker, builders, options).await;
}

/// A connection as its task first sees it, before its protocol is known.
struct Opened {
    guard: ConnectionGuard,
    /// Accepted during the notice period.
    during_notice: bool,
    /// The header read timeout's end for the first request (counted from the accept).
    first_request_deadline: Instant,
    /// When the client can start sending requests: the accept, or the end of the TLS handshake.
    speaks_from: Instant,
    /// Once the drain has begun, how long after `speaks_from` a silent connection is kept.
    first_bytes_grace: Duration,
    /// The protocol the TLS handshake chose (ALPN), if any.
    alpn: Option<Protocol>,
}

/// What woke a connection's task.
enum Woke {
    /// hyper is done with the connection.
    Closed,
    /// A moment of its [`Lifecycle`].
    Event(Event),
    /// The header read timeout passed: an event only if no request came.
    FirstRequestTimer,
    /// Past its maximum age and its grace.
    GraceOver,
    /// HTTP/2 without a stream for the idle timeout.
    Idle,
}

/// Serves a connection (its TLS handshake done, if any) until it closes.
async fn serve_stream<Io, S>(
    mut io: Io,
    opened: Opened,
    service: impl Future<Output = Result<S, BoxError>>,
    tracker: ConnectionTracker,
    builders: Arc<Builders>,
    options: Arc<Options>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let Opened {
        guard,
        during_notice,
        first_request_deadline,
        speaks_from,
        first_bytes_grace,
        alpn,
    } = opened;
    let mut prefix = Prefix::default();
    let protocol = detect_protocol(
        &mut io,
        &mut prefix,
        &tracker,
        first_request_deadline,
        speaks_from + first_bytes_grace,
    )
    .await
    // Bytes that contradict the protocol ALPN chose: a connection error (RFC 7301 §3.2).
    .filter(|detected| alpn.map_or(true, |alpn| alpn == *detected));
    // The app's service for this connection (a clone, or what its make service made).
    let service = match protocol {
        Some(_) => service.await.ok(),
        None => None,
    };
    let (Some(protocol), Some(service)) = (protocol, service) else {
        guard.finished();
        drop(guard);
        close(io, Linger::Never, false).await;
        return;
    };
    let state = Arc::new(ConnState::new(guard, protocol, tracker.clone()));
    let service = Leave::new(service, Arc::clone(&state));
    let (io, returned) = ConnIo::new(io, prefix, Some(Arc::clone(&state)));
    // Boxed, so that it can be dropped (giving the stream back) before the task closes it.
    let (connection, streams) = builders.serve(protocol, TokioIo::new(io), service, &options);
    let mut connection = Box::pin(connection);

    let mut life = Lifecycle::new(protocol, during_notice);
    // Behind one gate: polled only once one of them woke, not on each of the connection's
    // wake-ups (the tracker's futures would lock the `Notify` every connection shares; the
    // timers would touch the timer wheel). The timers fire once: each is disarmed (set to
    // never) when it fires.
    let mut gate = Gate::new();
    let mut draining = pin!(tracker.draining());
    let mut announced = pin!(tracker.announced());
    // HTTP/1.x: the header read timeout bounds the first request's head (hyper's own would
    // allocate a timer for every request). An HTTP/2 client said its preface in time; it may
    // open its first stream much later (a gRPC channel connects ahead of its first call).
    let first_request_deadline = (protocol == Protocol::Http1).then_some(first_request_deadline);
    let mut first_request_timer = pin!(sleep_until_or_never(first_request_deadline));
    // Armed only by the settings or moments that need them: boxed then, so that a connection
    // that never uses them does not carry them (half a KB of every idle connection's task).
    let mut age_timer = Armed::new(options.max_connection_age.map(jittered).map(sleep));
    let mut grace_timer = Armed::new(None);
    let mut late_timer = Armed::new(None);
    let mut idle_timer = Armed::new(
        (streams.as_deref())
            .zip(options.idle_timeout)
            .map(|(streams, timeout)| idle(streams, timeout)),
    );
    loop {
        let woke = poll_fn(|cx| {
            // Closed by either side, failed, or upgraded: hyper is done with it.
            if connection.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Closed);
            }
            if !gate.open(cx) {
                return Poll::Pending;
            }
            let cx = &mut gate.context();
            let woke = if life.awaits(Event::Drain) && draining.as_mut().poll(cx).is_ready() {
                Woke::Event(Event::Drain)
            } else if late_timer.poll(cx).is_ready() {
                Woke::Event(Event::LateFirstRequestDue)
            } else if life.awaits(Event::Announce) && announced.as_mut().poll(cx).is_ready() {
                Woke::Event(Event::Announce)
            } else if first_request_timer.as_mut().poll(cx).is_ready() {
                Woke::FirstRequestTimer
            } else if age_timer.poll(cx).is_ready() {
                Woke::Event(Event::Aged)
            } else if grace_timer.poll(cx).is_ready() {
                Woke::GraceOver
            } else if idle_timer.poll(cx).is_ready() {
                Woke::Idle
            } else {
                return Poll::Pending;
            };
            // The events after it were not polled: they are, on the next poll.
            gate.reopen();
            Poll::Ready(woke)
        })
        .await;
        let event = match woke {
            Woke::Closed => break,
            Woke::Event(event) => event,
            Woke::FirstRequestTimer => {
                first_request_timer.set(sleep_until_or_never(None));
                if state.had_request() {
                    continue;
                }
                // No request within the header read timeout: never served, closed.
                Event::FirstRequestDue
            }
            // Past its age and its grace: closed with whatever is still in flight.
            Woke::GraceOver => break,
            // HTTP/2 without a stream for the idle timeout: a graceful `GOAWAY`, not counted
            // as told to leave (the shutdown did not ask). Fires once.
            Woke::Idle => {
                idle_timer.disarm();
                state.going_away.store(true, Ordering::Relaxed);
                connection.as_mut().graceful_shutdown();
                continue;
            }
        };
        match event {
            Event::LateFirstRequestDue => late_timer.disarm(),
            Event::Aged => {
                age_timer.disarm();
                grace_timer.arm(options.max_connection_age_grace.map(sleep));
            }
            _ => {}
        }
        match life.on(event, state.had_request()) {
            Action::Wait => {}
            Action::TellToLeave => {
                // From here, a write is a response finishing: the close then lingers.
                state.wrote.store(false, Ordering::Relaxed);
                state.going_away.store(true, Ordering::Relaxed);
                connection.as_mut().graceful_shutdown();
                state.guard.told_to_leave();
            }
            // Counted as told to leave when a response carries it (`Leave`).
            Action::LeaveOnNextResponse => state.leave.store(true, Ordering::Relaxed),
            Action::AwaitLateFirstRequest => {
                late_timer.arm(Some(sleep(LATE_FIRST_REQUEST)));
            }
            // Nothing was served, nothing is in flight: dropped, not asked (hyper's graceful
            // shutdown would wait for a head that has started to arrive).
            Action::CloseUnserved => break,
        }
    }
    drop(connection);
    // The stream comes back once nothing uses it: at once, or once the upgraded stream of a
    // WebSocket ends. The connection counts as open until then, and is named if cut.
    let io = returned.await;
    state.guard.finished();
    let state_wrote = state.wrote.load(Ordering::Relaxed);
    drop(state);
    if let Ok((io, ended)) = io {
        let linger = match protocol {
            // Its end read: nothing more can come, nothing unread can turn the close into a
            // reset.
            _ if ended.peer_closed => Linger::Never,
            Protocol::Http1 if state_wrote => Linger::IfSending,
            Protocol::Http1 => Linger::IfReadable,
            Protocol::Http2 => Linger::Always,
        };
        close(io, linger, ended.shut_down).await;
    }
}

/// The socket options of `serve`'s settings, on a TCP connection.
fn configure_tcp<Io: 'static>(io: &Io, options: &Options) {
    let Some(stream) = (io as &dyn Any).downcast_ref::<TcpStream>() else {
        return;
    };
    if options.tcp_nodelay {
        let _ = stream.set_nodelay(true);
    }
    if let Some(idle) = options.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
    }
}

/// Which protocol the connection speaks, from its first bytes (kept in `prefix`). `None`: it
/// closed or failed first, or said nothing in time.
///
/// A client that says nothing within the header read timeout is closed: it was never served
/// (the timeout then goes on bounding its first request's headers, in the task). Once
/// the drain has begun, a silent connection is closed at `silent_until`: [`FIRST_BYTES`] after
/// it could speak (its accept, or the end of its TLS handshake), or [`LATE_FIRST_REQUEST`]
/// after a TLS handshake that ended during the drain.
async fn detect_protocol<Io: AsyncRead + Unpin>(
    io: &mut Io,
    prefix: &mut Prefix,
    tracker: &ConnectionTracker,
    deadline: Instant,
    silent_until: Instant,
) -> Option<Protocol> {
    // Biased: bytes that have come win over the drain's close.
    tokio::select! {
        biased;
        detected = tokio::time::timeout_at(deadline, detect(io, prefix)) => {
            detected.ok().and_then(Result::ok).flatten()
        }
        () = silent_at_drain(tracker, silent_until) => None,
    }
}

/// Completes at `at` once the drain has begun: a connection that has said nothing by then is
/// closed. It yields to the runtime once before completing, so that bytes already in the
/// kernel but not yet reported by the reactor (it runs after the drain's wake-up) are seen
/// first: the callers' `select!` polls their read before it.
pub(super) async fn silent_at_drain(tracker: &ConnectionTracker, at: Instant) {
    tracker.draining().await;
    tokio::time::sleep_until(at).await;
    // Deferred until the worker has polled the I/O driver.
    tokio::task::yield_now().await;
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

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A future the connection may never need, on the heap once armed (see `serve_stream`).
/// Unarmed, it is never ready. It is disarmed when it fires.
struct Armed<F>(Option<Pin<Box<F>>>);

impl<F: Future> Armed<F> {
    fn new(future: Option<F>) -> Self {
        Self(future.map(Box::pin))
    }

    fn arm(&mut self, future: Option<F>) {
        self.0 = future.map(Box::pin);
    }

    fn disarm(&mut self) {
        self.0 = None;
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        match &mut self.0 {
            Some(future) => future.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection's task holds this future for its whole life (its idle memory). A TLS
    /// connection's state is several KB: it is boxed, not part of every cleartext task.
    #[test]
    fn a_cleartext_connection_task_does_not_carry_the_tls_state() {
        let service = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let (io, _client) = tokio::io::duplex(64);
        let options = Options::default();
        let task = serve_connection(
            io,
            None,
            async move { Ok(service) },
            None,
            ConnectionTracker::new(tokio_util::sync::CancellationToken::new()),
            Arc::new(Builders::new(&options)),
            Arc::new(options),
        );
        // About 1.3 KB (the gate, the first request's timer, the lifecycle), hyper's connection
        // and the timers a connection may never need boxed apart. It was 4 KB while the accept
        // loop spawned it inside an `async move` block, which held it twice, and 9.4 KB with the
        // TLS state.
        let size = std::mem::size_of_val(&task);
        assert!(size < 1536, "a connection's task is {size} bytes");
    }

    /// A TLS connection's future, boxed once its task knows it is one, lives as long as the
    /// connection: neither the handshake's state nor copies of the rustls connection stay in it.
    #[cfg(feature = "rustls")]
    #[test]
    fn a_tls_connection_keeps_neither_its_handshake_state_nor_copies_of_its_stream() {
        let service = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        });
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key.unwrap())
            .unwrap();
        let config = super::super::tls::TlsConfig::new(config);
        let tracker = ConnectionTracker::new(tokio_util::sync::CancellationToken::new());
        let options = Options::default();
        let now = Instant::now();
        let opened = Opened {
            guard: tracker.registry().open(None),
            during_notice: false,
            first_request_deadline: now,
            speaks_from: now,
            first_bytes_grace: FIRST_BYTES,
            alpn: None,
        };
        let (io, _client) = tokio::io::duplex(64);
        let connection = serve_tls(
            io,
            &config,
            opened,
            async move { Ok(service) },
            tracker.clone(),
            Arc::new(Builders::new(&options)),
            Arc::new(options),
        );
        let size = std::mem::size_of_val(&connection);
        assert!(size < 4096, "a TLS connection's future is {size} bytes");
    }

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

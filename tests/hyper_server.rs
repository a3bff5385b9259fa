//! A real hyper-util server (auto builder + `GracefulShutdown`) behind `DrainLayer`, and real
//! hyper clients over TCP, HTTP/1.1 and HTTP/2 prior knowledge.
//!
//! Each behaviour is a function taking the protocol; the `http1` and `http2` modules at the
//! bottom run it once per protocol.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use support::*;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_drain::{ConnectionTracker, DrainLayer};

/// What a handler hands to the test so the test controls its timing.
enum Event {
    /// `/slow`: the handler answers when this is sent (or dropped).
    Slow(oneshot::Sender<()>),
    /// `/stream`: the response body; the test sends its chunks and ends it by dropping it.
    Stream(ChunkSender),
    /// `/pending`: never answers; the receiver errs when the handler future is dropped.
    Pending(oneshot::Receiver<Infallible>),
}

/// The inner service: counts its calls and hands control of slow work to the test.
#[derive(Clone)]
struct App {
    calls: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<Event>,
    tracker: ConnectionTracker,
}

impl App {
    async fn handle(self, mut request: Request<Incoming>) -> Result<Response<Body>, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match request.uri().path() {
            "/slow" => {
                let (tx, rx) = oneshot::channel();
                self.events.send(Event::Slow(tx)).unwrap();
                let _ = rx.await;
                Ok(Response::new(Body::from("slow done")))
            }
            "/stream" => {
                let (tx, body) = channel_body();
                self.events.send(Event::Stream(tx)).unwrap();
                Ok(Response::new(Body::new(body)))
            }
            "/pending" => {
                let (alive, dropped) = oneshot::channel::<Infallible>();
                self.events.send(Event::Pending(dropped)).unwrap();
                std::future::pending::<()>().await;
                drop(alive);
                unreachable!()
            }
            "/upgrade" => {
                // The upgraded connection outlives the 101 response: it holds its own guard.
                let guard = self.tracker.guard();
                let on_upgrade = hyper::upgrade::on(&mut request);
                tokio::spawn(async move {
                    let _guard = guard; // held only for its Drop: counts the upgraded connection
                    if let Ok(upgraded) = on_upgrade.await {
                        echo(hyper_util::rt::TokioIo::new(upgraded)).await;
                    }
                });
                Ok(Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header(http::header::CONNECTION, "upgrade")
                    .header(http::header::UPGRADE, "echo")
                    .body(Body::empty())
                    .unwrap())
            }
            "/panic" => panic!("handler panicked on purpose"),
            "/error" => Err("inner service failed on purpose".into()),
            _ => Ok(Response::new(Body::from("hello"))),
        }
    }
}

/// Echoes bytes back until the peer closes.
async fn echo<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: T) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = io.read(&mut buf).await {
        if io.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

struct Harness {
    token: CancellationToken,
    tracker: ConnectionTracker,
    calls: Arc<AtomicUsize>,
    events: mpsc::UnboundedReceiver<Event>,
    server: Server,
}

impl Harness {
    /// A server whose own shutdown is separate from the drain token, so connections stay
    /// open after the token is cancelled and the layer's answers can be observed.
    ///
    /// Such a server never says goodbye, so nothing is handed off: the layer has a zero
    /// handoff grace, and admission closes the moment the token is cancelled. Refusals and
    /// `drained()` are then observed at once, with no grace timer in between. The tests of
    /// the handoff itself build their layer and use [`start_with`](Self::start_with).
    async fn start() -> Self {
        let layer = DrainLayer::new(CancellationToken::new()).handoff_grace(Duration::ZERO);
        Self::start_with(layer, None).await
    }

    /// `server_shutdown`: `None` keeps the server up until the test stops it.
    async fn start_with(layer: DrainLayer, server_shutdown: Option<CancellationToken>) -> Self {
        let token = layer.token().clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let (events_tx, events) = mpsc::unbounded_channel();
        let app = App {
            calls: calls.clone(),
            events: events_tx,
            tracker: layer.tracker(),
        };
        let inner = tower::service_fn(move |request| app.clone().handle(request));
        let service = layer.layer(inner);
        let tracker = layer.tracker();
        let server = serve_hyper(service, server_shutdown.unwrap_or_default()).await;
        Self {
            token,
            tracker,
            calls,
            events,
            server,
        }
    }

    async fn client(&self, proto: Proto) -> Client {
        Client::connect(self.server.addr, proto).await
    }

    async fn next_event(&mut self) -> Event {
        within("the handler to start", self.events.recv())
            .await
            .expect("app dropped")
    }

    async fn slow_started(&mut self) -> oneshot::Sender<()> {
        match self.next_event().await {
            Event::Slow(tx) => tx,
            _ => panic!("expected /slow"),
        }
    }

    async fn stream_started(&mut self) -> ChunkSender {
        match self.next_event().await {
            Event::Stream(tx) => tx,
            _ => panic!("expected /stream"),
        }
    }

    async fn pending_started(&mut self) -> oneshot::Receiver<Infallible> {
        match self.next_event().await {
            Event::Pending(rx) => rx,
            _ => panic!("expected /pending"),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Sends a GET on a clone of an HTTP/2 connection or a fresh HTTP/1.1 connection, in a task.
fn spawn_get(
    client: Client,
    path: &'static str,
) -> tokio::task::JoinHandle<(Client, hyper::Result<Response<Incoming>>)> {
    tokio::spawn(async move {
        let mut client = client;
        let request = client.request(Method::GET, path);
        let response = client.try_send(request).await;
        (client, response)
    })
}

async fn another_client(h: &Harness, client: &Client) -> Client {
    match client.proto {
        Proto::Http1 => h.client(Proto::Http1).await,
        Proto::Http2 => client.h2_clone(),
    }
}

// ---------------------------------------------------------------------------------------
// In-flight requests finish; requests during the handoff are served; new ones are refused
// once admission has closed.

async fn in_flight_request_completes_with_200_after_drain_starts(proto: Proto) {
    // The real set-up: one token drives both the layer and the server's graceful shutdown.
    let token = CancellationToken::new();
    let mut h = Harness::start_with(DrainLayer::new(token.clone()), Some(token.clone())).await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/slow");
    let release = h.slow_started().await;

    token.cancel();
    assert!(h.tracker.is_draining());
    assert_eq!(h.tracker.in_flight(), 1);
    release.send(()).unwrap();

    let (_client, response) = within("the slow response", pending).await.unwrap();
    let response = response.expect("an in-flight request must not fail during a drain");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "slow done");
    h.server.finished().await;
    // The server has closed its connections: admission closes (as `Shutdown::spawn_server`
    // does), and with nothing in flight the drain is over without waiting for the grace.
    h.tracker.close();
    within("drained", h.tracker.drained()).await;
}

async fn request_after_cancel_within_the_handoff_grace_is_served(proto: Proto) {
    // A grace far longer than the test, so that the request surely arrives within it.
    let layer = DrainLayer::new(CancellationToken::new()).handoff_grace(WAIT);
    let h = Harness::start_with(layer, None).await;
    let mut client = h.client(proto).await;
    h.token.cancel();
    assert!(h.tracker.is_draining());

    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    // HTTP/1.1 is told to reconnect elsewhere; HTTP/2 has no such header.
    let expected_connection = (proto == Proto::Http1).then(|| "close".to_owned());
    assert_eq!(header(&response, "connection"), expected_connection);
    assert_eq!(read_body(response.into_body()).await, "hello");
    assert_eq!(h.calls(), 1);
    assert_eq!(h.tracker.admitted_total(), 1);
    assert_eq!(h.tracker.rejected_total(), 0);
    h.server.stop().await;
}

async fn request_after_the_handoff_grace_gets_503(proto: Proto) {
    const GRACE: Duration = Duration::from_millis(50);
    let layer = DrainLayer::new(CancellationToken::new()).handoff_grace(GRACE);
    let h = Harness::start_with(layer, None).await;
    let mut client = h.client(proto).await;
    h.token.cancel();
    tokio::time::sleep(GRACE).await;

    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.calls(), 0);
    assert_eq!(h.tracker.rejected_total(), 1);
    assert!(h.tracker.is_closed());
    h.server.stop().await;
}

async fn request_after_admission_closed_gets_503_with_retry_after(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(client.get("/").await.status(), StatusCode::OK);

    h.token.cancel();
    assert!(
        h.tracker.is_closed(),
        "a zero grace closes admission at once"
    );
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    assert!(!read_body(response.into_body()).await.is_empty());
    h.server.stop().await;
}

async fn new_connection_after_admission_closed_gets_503(proto: Proto) {
    let h = Harness::start().await;
    h.token.cancel();
    let mut client = h.client(proto).await;
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.tracker.rejected_total(), 1);
    h.server.stop().await;
}

async fn refused_request_never_reaches_the_handler(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    client.get("/").await;
    assert_eq!(h.calls(), 1);

    h.token.cancel();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        h.calls(),
        1,
        "the inner service was called for a refused request"
    );
    assert_eq!(h.tracker.admitted_total(), 1);
    assert_eq!(h.tracker.rejected_total(), 1);
    assert_eq!(h.tracker.in_flight(), 0);
    h.server.stop().await;
}

#[tokio::test]
async fn http1_refusal_carries_connection_close_and_the_connection_closes() {
    let h = Harness::start().await;
    let mut client = h.client(Proto::Http1).await;
    h.token.cancel();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    read_body(response.into_body()).await;
    eventually("the client connection to close", || client.is_closed()).await;
    h.server.stop().await;
}

#[tokio::test]
async fn http2_refusal_has_no_connection_header() {
    let h = Harness::start().await;
    let mut client = h.client(Proto::Http2).await;
    h.token.cancel();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.version(), http::Version::HTTP_2);
    // hyper would strip (and log) a connection-specific header here rather than send it, so
    // this end-to-end check is backed by `http2_and_http3_refusals_have_no_connection_header`
    // in tests/service.rs, which looks at the layer's own response.
    assert_eq!(header(&response, "connection"), None);
    assert_eq!(header(&response, "keep-alive"), None);
    read_body(response.into_body()).await;
    // The connection stays usable: a protocol error would have torn it down.
    assert_eq!(
        client.get("/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Announced (notice period): still served, HTTP/1.1 told to reconnect.

async fn announced_requests_are_still_served(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    h.tracker.announce_shutdown();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "hello");
    assert_eq!(h.calls(), 1);
    assert!(!h.tracker.is_draining());
    h.server.stop().await;
}

#[tokio::test]
async fn http1_responses_carry_connection_close_once_announced() {
    let h = Harness::start().await;
    let mut client = h.client(Proto::Http1).await;
    let before = client.get("/").await;
    assert_eq!(header(&before, "connection"), None);
    read_body(before.into_body()).await;

    h.tracker.announce_shutdown();
    let after = client.get("/").await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(header(&after, "connection").as_deref(), Some("close"));
    read_body(after.into_body()).await;
    eventually("the keep-alive connection to close", || client.is_closed()).await;
    h.server.stop().await;
}

#[tokio::test]
async fn http2_responses_have_no_connection_header_once_announced() {
    let h = Harness::start().await;
    let mut client = h.client(Proto::Http2).await;
    h.tracker.announce_shutdown();
    for _ in 0..2 {
        let response = client.get("/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "connection"), None);
        read_body(response.into_body()).await;
    }
    h.server.stop().await;
}

#[tokio::test]
async fn http1_in_flight_response_carries_connection_close_once_draining() {
    let mut h = Harness::start().await;
    let client = h.client(Proto::Http1).await;
    let pending = spawn_get(client, "/slow");
    let release = h.slow_started().await;
    h.token.cancel();
    release.send(()).unwrap();
    let (_client, response) = within("the slow response", pending).await.unwrap();
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Streaming bodies count until their end.

async fn streaming_body_counts_until_fully_read(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/stream");
    let mut sender = h.stream_started().await;
    sender.send_data(Bytes::from("one")).await.unwrap();
    let (_client, response) = within("the stream head", pending).await.unwrap();
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "one");
    assert_eq!(h.tracker.in_flight(), 1, "the response head was sent");

    sender.send_data(Bytes::from("two")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "two");
    assert_eq!(h.tracker.in_flight(), 1);

    drop(sender); // ends the body
    assert_eq!(next_data(&mut body).await, None);
    // The guard is released when the server polls the end, before the end reaches the wire.
    assert_eq!(h.tracker.in_flight(), 0);
    assert_eq!(h.tracker.admitted_total(), 1);
    h.server.stop().await;
}

async fn drained_waits_for_a_streaming_body(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/stream");
    let mut sender = h.stream_started().await;
    let (_client, response) = within("the stream head", pending).await.unwrap();
    let mut body = response.unwrap().into_body();
    sender.send_data(Bytes::from("one")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "one");

    h.token.cancel();
    tokio::time::timeout(Duration::from_millis(50), h.tracker.drained())
        .await
        .expect_err("drained() resolved while a stream was open");
    assert_eq!(h.tracker.in_flight(), 1);

    sender.send_data(Bytes::from("two")).await.unwrap();
    drop(sender);
    let mut rest = Vec::new();
    while let Some(data) = next_data(&mut body).await {
        rest.push(data);
    }
    assert_eq!(rest, ["two"]);
    within("drained after the stream ended", h.tracker.drained()).await;
    h.server.stop().await;
}

async fn client_dropping_a_streaming_response_releases_the_count(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/stream");
    let mut sender = h.stream_started().await;
    let (client, response) = within("the stream head", pending).await.unwrap();
    let mut body = response.unwrap().into_body();
    sender.send_data(Bytes::from("one")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "one");
    assert_eq!(h.tracker.in_flight(), 1);

    drop(body);
    if proto == Proto::Http1 {
        // An HTTP/1.1 client abandons a response by closing the connection; HTTP/2 resets
        // the stream (RST_STREAM) and keeps the connection.
        client.disconnect();
    }
    eventually("the abandoned stream to be released", || {
        h.tracker.in_flight() == 0
    })
    .await;
    h.token.cancel();
    within("drained", h.tracker.drained()).await;
    drop(sender);
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Every other way a request can end releases its guard.

async fn client_disconnect_before_response_head_releases_the_guard(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client.h1_or_h2_clone(), "/pending");
    let dropped = h.pending_started().await;
    assert_eq!(h.tracker.in_flight(), 1);

    pending.abort();
    client.disconnect();
    // Resolves (with an error) once the server dropped the handler's future.
    assert!(within("the handler future to be dropped", dropped)
        .await
        .is_err());
    eventually("the guard to be released", || h.tracker.in_flight() == 0).await;
    h.token.cancel();
    within("drained", h.tracker.drained()).await;
    h.server.stop().await;
}

#[tokio::test]
async fn http2_stream_reset_before_response_head_releases_the_guard() {
    let mut h = Harness::start().await;
    let client = h.client(Proto::Http2).await;
    let pending = spawn_get(client.h2_clone(), "/pending");
    let dropped = h.pending_started().await;
    assert_eq!(h.tracker.in_flight(), 1);

    pending.abort(); // drops the request: hyper resets the stream, the connection stays
    assert!(within("the handler future to be dropped", dropped)
        .await
        .is_err());
    eventually("the guard to be released", || h.tracker.in_flight() == 0).await;
    let mut client = client;
    assert_eq!(client.get("/").await.status(), StatusCode::OK);
    h.server.stop().await;
}

async fn panicking_handler_releases_its_guard_and_the_server_keeps_serving(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let request = client.request(Method::GET, "/panic");
    assert!(
        within("the panicking request", client.try_send(request))
            .await
            .is_err(),
        "a panicking handler produced a response"
    );
    eventually("the panicked request to be released", || {
        h.tracker.in_flight() == 0
    })
    .await;
    assert_eq!(h.tracker.admitted_total(), 1);

    let mut fresh = h.client(proto).await;
    assert_eq!(fresh.get("/").await.status(), StatusCode::OK);
    h.token.cancel();
    within("drained", h.tracker.drained()).await;
    h.server.stop().await;
}

async fn inner_service_error_releases_the_guard(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let request = client.request(Method::GET, "/error");
    assert!(within("the failing request", client.try_send(request))
        .await
        .is_err());
    eventually("the failed request to be released", || {
        h.tracker.in_flight() == 0
    })
    .await;
    assert_eq!(h.tracker.admitted_total(), 1);
    h.token.cancel();
    within("drained", h.tracker.drained()).await;
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// drained()

async fn drained_does_not_resolve_while_a_request_is_in_flight(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/slow");
    let release = h.slow_started().await;
    h.token.cancel();

    let waiter = tokio::spawn({
        let tracker = h.tracker.clone();
        async move { tracker.drained().await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), h.tracker.drained())
            .await
            .is_err()
    );
    assert!(
        !waiter.is_finished(),
        "drained() resolved with a request in flight"
    );
    assert!(!h.tracker.is_drained());

    release.send(()).unwrap();
    let (_client, response) = within("the slow response", pending).await.unwrap();
    read_body(response.unwrap().into_body()).await;
    within("the waiter", waiter).await.unwrap();
    h.server.stop().await;
}

async fn drained_resolves_promptly_after_the_last_release(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/slow");
    let release = h.slow_started().await;
    h.token.cancel();

    let waiter = tokio::spawn({
        let tracker = h.tracker.clone();
        async move {
            tracker.drained().await;
            Instant::now()
        }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());

    let released_at = Instant::now();
    release.send(()).unwrap();
    let (_client, response) = within("the slow response", pending).await.unwrap();
    read_body(response.unwrap().into_body()).await;
    let drained_at = within("the waiter", waiter).await.unwrap();
    let lag = drained_at.duration_since(released_at);
    // Event driven: no polling interval (actix polls every 1 s, Go every 500 ms).
    assert!(
        lag < Duration::from_millis(250),
        "drained() woke {lag:?} after the release"
    );
    h.server.stop().await;
}

async fn in_flight_counts_each_straggler_until_it_ends(proto: Proto) {
    let mut h = Harness::start().await;
    let first = h.client(proto).await;
    let second = another_client(&h, &first).await;
    let a = spawn_get(first, "/slow");
    let release_a = h.slow_started().await;
    let b = spawn_get(second, "/slow");
    let release_b = h.slow_started().await;
    h.token.cancel();

    tokio::time::timeout(Duration::from_millis(30), h.tracker.drained())
        .await
        .expect_err("two requests are in flight");
    assert_eq!(h.tracker.in_flight(), 2);

    release_a.send(()).unwrap();
    within("a", a).await.unwrap().1.unwrap();
    tokio::time::timeout(Duration::from_millis(30), h.tracker.drained())
        .await
        .expect_err("one request is in flight");
    assert_eq!(h.tracker.in_flight(), 1);

    release_b.send(()).unwrap();
    within("b", b).await.unwrap().1.unwrap();
    tokio::time::timeout(WAIT, h.tracker.drained())
        .await
        .expect("nothing is in flight");
    h.server.stop().await;
}

async fn many_drained_waiters_all_wake(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    let pending = spawn_get(client, "/slow");
    let release = h.slow_started().await;
    h.token.cancel();

    let waiters: Vec<_> = (0..64)
        .map(|_| {
            let tracker = h.tracker.clone();
            tokio::spawn(async move { tracker.drained().await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(waiters.iter().all(|w| !w.is_finished()));

    release.send(()).unwrap();
    within("the slow response", pending)
        .await
        .unwrap()
        .1
        .unwrap();
    for waiter in waiters {
        within("every waiter", waiter).await.unwrap();
    }
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------

impl Client {
    /// HTTP/2: a handle on the same connection; HTTP/1.1 cannot share, so the caller must
    /// not use `self` for anything else.
    fn h1_or_h2_clone(&self) -> Client {
        match self.proto {
            Proto::Http2 => self.h2_clone(),
            Proto::Http1 => panic!("use a dedicated connection for HTTP/1.1"),
        }
    }
}

both_protocols!(
    in_flight_request_completes_with_200_after_drain_starts,
    request_after_cancel_within_the_handoff_grace_is_served,
    request_after_the_handoff_grace_gets_503,
    request_after_admission_closed_gets_503_with_retry_after,
    new_connection_after_admission_closed_gets_503,
    refused_request_never_reaches_the_handler,
    announced_requests_are_still_served,
    streaming_body_counts_until_fully_read,
    drained_waits_for_a_streaming_body,
    client_dropping_a_streaming_response_releases_the_count,
    panicking_handler_releases_its_guard_and_the_server_keeps_serving,
    inner_service_error_releases_the_guard,
    drained_does_not_resolve_while_a_request_is_in_flight,
    drained_resolves_promptly_after_the_last_release,
    in_flight_counts_each_straggler_until_it_ends,
    many_drained_waiters_all_wake,
);

#[tokio::test]
async fn http1_client_disconnect_before_response_head_releases_the_guard() {
    // HTTP/1.1: the request runs on its own connection, which the client closes.
    let mut h = Harness::start().await;
    let client = h.client(Proto::Http1).await;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut client = client;
        let request = client.request(Method::GET, "/pending");
        {
            let send = client.try_send(request);
            tokio::pin!(send);
            tokio::select! {
                _ = &mut send => panic!("/pending answered"),
                _ = rx => {}
            }
        }
        client.disconnect();
    });
    let dropped = h.pending_started().await;
    assert_eq!(h.tracker.in_flight(), 1);
    tx.send(()).unwrap();
    within("the client to go away", task).await.unwrap();
    assert!(within("the handler future to be dropped", dropped)
        .await
        .is_err());
    eventually("the guard to be released", || h.tracker.in_flight() == 0).await;
    h.token.cancel();
    within("drained", h.tracker.drained()).await;
    h.server.stop().await;
}

#[tokio::test]
async fn http2_client_disconnect_before_response_head_releases_the_guard() {
    client_disconnect_before_response_head_releases_the_guard(Proto::Http2).await
}

// ---------------------------------------------------------------------------------------
// Upgrades

/// Sends `GET /upgrade` with `Upgrade: echo` on a fresh HTTP/1.1 connection that supports
/// upgrades; returns the 101 response.
async fn request_upgrade(h: &Harness) -> Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(h.server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn.with_upgrades());
    let request = Request::builder()
        .uri("/upgrade")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, "echo")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    within("the 101 response", sender.send_request(request))
        .await
        .unwrap()
}

#[tokio::test]
async fn http1_switching_protocols_keeps_connection_upgrade_once_announced() {
    let h = Harness::start().await;
    h.tracker.announce_shutdown();
    let response = request_upgrade(&h).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(header(&response, "connection").as_deref(), Some("upgrade"));
    assert_eq!(header(&response, "upgrade").as_deref(), Some("echo"));
    let upgraded = within("the upgrade", hyper::upgrade::on(response))
        .await
        .expect("the upgrade failed");
    drop(upgraded);
    h.server.stop().await;
}

#[tokio::test]
async fn upgraded_connection_holding_a_tracker_guard_delays_drained_until_it_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let response = request_upgrade(&h).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = hyper_util::rt::TokioIo::new(
        within("the upgrade", hyper::upgrade::on(response))
            .await
            .expect("the upgrade failed"),
    );
    io.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within("the echo", io.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping");
    // The 101 response has ended; only the handler's guard counts now.
    assert_eq!(h.tracker.in_flight(), 1);

    h.token.cancel();
    let waiter = tokio::spawn({
        let tracker = h.tracker.clone();
        async move { tracker.drained().await }
    });
    tokio::time::timeout(Duration::from_millis(50), h.tracker.drained())
        .await
        .expect_err("drained() resolved while the upgraded connection was open");
    assert_eq!(h.tracker.in_flight(), 1);
    // The upgraded connection still works during the drain.
    io.write_all(b"pong").await.unwrap();
    within("the echo", io.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"pong");

    drop(io); // the client closes the upgraded connection
    within("drained after the upgraded connection closed", waiter)
        .await
        .unwrap();
    assert_eq!(h.tracker.in_flight(), 0);
    h.server.stop().await;
}

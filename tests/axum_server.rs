//! An axum `Router` behind `DrainLayer`, served by `axum::serve(..).with_graceful_shutdown(..)`,
//! driven by real hyper clients over TCP (HTTP/1.1 and HTTP/2 prior knowledge): refusals,
//! the notice period, streaming, panics, readiness and liveness probes, exempt paths, and
//! the tracker in handlers.

#[macro_use]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Method, StatusCode};
use support::*;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tower_drain::{ConnectionTracker, DrainLayer};

enum Event {
    Slow(oneshot::Sender<()>),
    Stream(ChunkSender),
    Metrics(oneshot::Sender<()>),
}

#[derive(Clone)]
struct App {
    calls: Arc<AtomicUsize>,
    events: mpsc::UnboundedSender<Event>,
}

impl App {
    fn called(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

async fn hello(State(app): State<App>) -> &'static str {
    app.called();
    "hello"
}

async fn slow(State(app): State<App>) -> &'static str {
    app.called();
    let (tx, rx) = oneshot::channel();
    app.events.send(Event::Slow(tx)).unwrap();
    let _ = rx.await;
    "slow done"
}

async fn stream(State(app): State<App>) -> Body {
    app.called();
    let (tx, body) = channel_body();
    app.events.send(Event::Stream(tx)).unwrap();
    Body::new(body)
}

/// An exempt endpoint that waits for the test, so the test can look at the count meanwhile.
async fn metrics(State(app): State<App>) -> &'static str {
    app.called();
    let (tx, rx) = oneshot::channel();
    app.events.send(Event::Metrics(tx)).unwrap();
    let _ = rx.await;
    "metrics"
}

async fn panics(State(app): State<App>) -> &'static str {
    app.called();
    panic!("handler panicked on purpose")
}

/// Reports what the handler sees of the drain.
async fn watch_state(Extension(tracker): Extension<ConnectionTracker>) -> String {
    format!("draining={}", tracker.is_draining())
}

/// An SSE-like endpoint: one event every 5 ms until the drain starts, then a last event and
/// the end of the stream.
async fn ticker(Extension(tracker): Extension<ConnectionTracker>) -> Body {
    let (mut tx, body) = channel_body();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                biased;
                () = tracker.draining() => {
                    let _ = tx.send_data(Bytes::from("event: bye\n\n")).await;
                    break;
                }
                _ = interval.tick() => {
                    if tx.send_data(Bytes::from("event: tick\n\n")).await.is_err() {
                        break; // the client went away
                    }
                }
            }
        }
    });
    Body::new(body)
}

struct Harness {
    token: CancellationToken,
    tracker: ConnectionTracker,
    calls: Arc<AtomicUsize>,
    events: mpsc::UnboundedReceiver<Event>,
    server: Server,
}

/// The layer every harness uses unless a test passes its own.
///
/// Its harness server is not wired to the drain token and never says goodbye, so nothing is
/// handed off: the layer has a zero handoff grace, and admission closes the moment the token
/// is cancelled. Refusals and `drained()` are then observed at once, with no grace timer in
/// between. The tests of the handoff itself use [`handoff_layer`].
fn full_layer() -> DrainLayer {
    handoff_layer(Duration::ZERO)
}

/// [`full_layer`] with the given handoff grace.
fn handoff_layer(grace: Duration) -> DrainLayer {
    DrainLayer::new(CancellationToken::new())
        .handoff_grace(grace)
        .readiness_path("/readyz")
        .liveness_path("/livez")
        .exempt_path("/metrics")
        .with_tracker_extension()
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(full_layer(), None).await
    }

    /// `server_shutdown`: `None` keeps the server accepting until the test stops it, so the
    /// layer's answers after the token is cancelled can be observed.
    async fn start_with(drain: DrainLayer, server_shutdown: Option<CancellationToken>) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let (events_tx, events) = mpsc::unbounded_channel();
        let app = App {
            calls: calls.clone(),
            events: events_tx,
        };
        let router = Router::new()
            .route("/", get(hello))
            .route("/slow", get(slow))
            .route("/stream", get(stream))
            .route("/metrics", get(metrics))
            .route("/panic", get(panics))
            .route("/watch", get(watch_state))
            .route("/ticker", get(ticker))
            .with_state(app)
            .layer(drain.clone())
            // Mounted after `layer`, so the probe is neither counted nor refused.
            .route_service("/ready-svc", drain.readiness());
        let server = serve_axum(router, server_shutdown.unwrap_or_default()).await;
        Self {
            token: drain.token().clone(),
            tracker: drain.tracker(),
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

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn spawn_get(
    client: Client,
    path: &'static str,
) -> tokio::task::JoinHandle<(
    Client,
    Result<http::Response<hyper::body::Incoming>, hyper::Error>,
)> {
    tokio::spawn(async move {
        let mut client = client;
        let request = client.request(Method::GET, path);
        let response = client.try_send(request).await;
        (client, response)
    })
}

async fn status(client: &mut Client, method: Method, path: &str) -> StatusCode {
    let request = client.request(method, path);
    let response = client.send(request).await;
    let status = response.status();
    read_body(response.into_body()).await;
    status
}

// ---------------------------------------------------------------------------------------
// Drain of ordinary requests

async fn in_flight_request_completes_with_200_after_drain_starts(proto: Proto) {
    let token = CancellationToken::new();
    let mut h = Harness::start_with(DrainLayer::new(token.clone()), Some(token.clone())).await;
    let pending = spawn_get(h.client(proto).await, "/slow");
    let Event::Slow(release) = h.next_event().await else {
        panic!("expected /slow")
    };
    token.cancel();
    assert_eq!(h.tracker.in_flight(), 1);
    release.send(()).unwrap();
    let (_client, response) = within("the slow response", pending).await.unwrap();
    let response = response.expect("an in-flight request failed during the drain");
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
    let h = Harness::start_with(handoff_layer(WAIT), None).await;
    let mut client = h.client(proto).await;
    h.token.cancel();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "hello");
    assert_eq!(h.calls(), 1);
    assert_eq!(h.tracker.admitted_total(), 1);
    assert_eq!(h.tracker.rejected_total(), 0);
    h.server.stop().await;
}

async fn request_after_the_handoff_grace_gets_503(proto: Proto) {
    const GRACE: Duration = Duration::from_millis(50);
    let h = Harness::start_with(handoff_layer(GRACE), None).await;
    let mut client = h.client(proto).await;
    h.token.cancel();
    tokio::time::sleep(GRACE).await;
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.calls(), 0);
    assert_eq!(h.tracker.rejected_total(), 1);
    h.server.stop().await;
}

async fn request_after_admission_closed_gets_503_with_retry_after_and_skips_the_handler(
    proto: Proto,
) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(status(&mut client, Method::GET, "/").await, StatusCode::OK);
    h.token.cancel();
    assert!(
        h.tracker.is_closed(),
        "a zero grace closes admission at once"
    );
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    let expected_connection = (proto == Proto::Http1).then(|| "close".to_owned());
    assert_eq!(header(&response, "connection"), expected_connection);
    assert_eq!(h.calls(), 1, "the handler ran for a refused request");
    assert_eq!(h.tracker.rejected_total(), 1);
    h.server.stop().await;
}

async fn announced_requests_are_served_and_only_http1_gets_connection_close(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    h.tracker.announce_shutdown();
    let response = client.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let expected_connection = (proto == Proto::Http1).then(|| "close".to_owned());
    assert_eq!(header(&response, "connection"), expected_connection);
    assert_eq!(read_body(response.into_body()).await, "hello");
    h.server.stop().await;
}

async fn streaming_body_counts_until_fully_read(proto: Proto) {
    let mut h = Harness::start().await;
    let pending = spawn_get(h.client(proto).await, "/stream");
    let Event::Stream(mut tx) = h.next_event().await else {
        panic!("expected /stream")
    };
    tx.send_data(Bytes::from("one")).await.unwrap();
    let (_client, response) = within("the stream head", pending).await.unwrap();
    let mut body = response.unwrap().into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "one");
    assert_eq!(h.tracker.in_flight(), 1);
    h.token.cancel();
    assert!(
        tokio::time::timeout(Duration::from_millis(30), h.tracker.drained())
            .await
            .is_err()
    );
    let waiter = tokio::spawn({
        let tracker = h.tracker.clone();
        async move { tracker.drained().await }
    });
    tx.send_data(Bytes::from("two")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "two");
    assert_eq!(h.tracker.in_flight(), 1);
    assert!(!waiter.is_finished());
    drop(tx);
    assert_eq!(next_data(&mut body).await, None);
    assert_eq!(h.tracker.in_flight(), 0);
    within("the drained waiter", waiter).await.unwrap();
    h.server.stop().await;
}

async fn panicking_handler_releases_its_guard_and_the_server_keeps_serving(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let request = client.request(Method::GET, "/panic");
    let outcome = within("the panicking request", client.try_send(request)).await;
    // axum turns no panic into a response by default: the connection or stream dies.
    assert!(outcome.is_err(), "a panicking handler produced a response");
    eventually("the guard to be released", || h.tracker.in_flight() == 0).await;
    assert_eq!(h.tracker.admitted_total(), 1);
    let mut fresh = h.client(proto).await;
    assert_eq!(status(&mut fresh, Method::GET, "/").await, StatusCode::OK);
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Readiness, liveness, exemptions

async fn readiness_path_flips_to_503_when_shutdown_is_announced(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(
        status(&mut client, Method::GET, "/readyz").await,
        StatusCode::OK
    );
    h.tracker.announce_shutdown();
    assert_eq!(
        status(&mut client, Method::GET, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Traffic is still served during the notice period.
    assert_eq!(status(&mut client, Method::GET, "/").await, StatusCode::OK);
    assert_eq!(h.calls(), 1);
    h.server.stop().await;
}

async fn readiness_path_flips_to_503_when_the_token_is_cancelled(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(
        status(&mut client, Method::GET, "/readyz").await,
        StatusCode::OK
    );
    h.token.cancel();
    let response = client.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(read_body(response.into_body()).await, "shutting down\n");
    h.server.stop().await;
}

async fn readiness_path_answers_head_without_a_body(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let response = client.send(client.request(Method::HEAD, "/readyz")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(read_body(response.into_body()).await.is_empty());
    h.token.cancel();
    let response = client.send(client.request(Method::HEAD, "/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.server.stop().await;
}

async fn readiness_path_refuses_post_with_405_and_allow(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let response = client.send(client.request(Method::POST, "/readyz")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow").as_deref(), Some("GET, HEAD"));
    assert_eq!(h.calls(), 0);
    h.server.stop().await;
}

async fn readiness_service_route_flips_at_announce_and_stays_503_when_draining(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(
        status(&mut client, Method::GET, "/ready-svc").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut client, Method::HEAD, "/ready-svc").await,
        StatusCode::OK
    );
    h.tracker.announce_shutdown();
    assert_eq!(
        status(&mut client, Method::GET, "/ready-svc").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.token.cancel();
    let response = client.get("/ready-svc").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(read_body(response.into_body()).await, "shutting down\n");
    assert_eq!(
        status(&mut client, Method::HEAD, "/ready-svc").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.server.stop().await;
}

async fn readiness_service_route_flips_at_cancel(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(
        status(&mut client, Method::GET, "/ready-svc").await,
        StatusCode::OK
    );
    h.token.cancel();
    assert_eq!(
        status(&mut client, Method::GET, "/ready-svc").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    h.server.stop().await;
}

async fn readiness_service_route_refuses_post_with_405_and_allow(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let response = client
        .send(client.request(Method::POST, "/ready-svc"))
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "allow").as_deref(), Some("GET, HEAD"));
    h.server.stop().await;
}

async fn probe_requests_are_never_counted(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    for path in ["/readyz", "/livez", "/ready-svc"] {
        status(&mut client, Method::GET, path).await;
        status(&mut client, Method::HEAD, path).await;
    }
    h.token.cancel();
    for path in ["/readyz", "/livez", "/ready-svc"] {
        status(&mut client, Method::GET, path).await;
    }
    assert_eq!(h.tracker.admitted_total(), 0);
    assert_eq!(h.tracker.rejected_total(), 0);
    assert_eq!(h.tracker.in_flight(), 0);
    assert_eq!(h.calls(), 0);
    h.server.stop().await;
}

async fn liveness_path_stays_200_while_draining(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    assert_eq!(
        status(&mut client, Method::GET, "/livez").await,
        StatusCode::OK
    );
    h.tracker.announce_shutdown();
    assert_eq!(
        status(&mut client, Method::GET, "/livez").await,
        StatusCode::OK
    );
    h.token.cancel();
    let response = client.get("/livez").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "alive\n");
    assert_eq!(
        status(&mut client, Method::HEAD, "/livez").await,
        StatusCode::OK
    );
    h.server.stop().await;
}

async fn exempt_path_is_served_while_draining_and_not_counted(proto: Proto) {
    let mut h = Harness::start().await;
    let client = h.client(proto).await;
    h.token.cancel();
    let pending = spawn_get(client, "/metrics");
    let Event::Metrics(release) = h.next_event().await else {
        panic!("expected /metrics")
    };
    assert_eq!(h.tracker.in_flight(), 0, "an exempt request was counted");
    // An exempt request in progress does not hold the drain up.
    within("drained", h.tracker.drained()).await;
    release.send(()).unwrap();
    let (_client, response) = within("the metrics response", pending).await.unwrap();
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "metrics");
    assert_eq!(h.tracker.admitted_total(), 0);
    assert_eq!(h.tracker.rejected_total(), 0);
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The tracker in handlers

async fn handler_extracts_the_tracker_from_extensions(proto: Proto) {
    let h = Harness::start().await;
    let mut client = h.client(proto).await;
    let response = client.get("/watch").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "draining=false");
    h.server.stop().await;
}

async fn handler_admitted_during_the_handoff_sees_draining_in_its_tracker(proto: Proto) {
    let h = Harness::start_with(handoff_layer(WAIT), None).await;
    let mut client = h.client(proto).await;
    h.token.cancel();
    let response = client.get("/watch").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_body(response.into_body()).await, "draining=true");
    h.server.stop().await;
}

async fn streaming_handler_ends_its_stream_when_the_drain_starts(proto: Proto) {
    let h = Harness::start().await;
    let (_client, response) = within(
        "the ticker head",
        spawn_get(h.client(proto).await, "/ticker"),
    )
    .await
    .unwrap();
    let mut body = response.unwrap().into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "event: tick\n\n");
    assert_eq!(h.tracker.in_flight(), 1);

    h.token.cancel();
    // Registered while the stream is still open: it must be woken by the stream's end.
    let waiter = tokio::spawn({
        let tracker = h.tracker.clone();
        async move { tracker.drained().await }
    });
    let mut last = None;
    while let Some(data) = next_data(&mut body).await {
        last = Some(data);
    }
    assert_eq!(last.unwrap(), "event: bye\n\n");
    within("drained once the stream ended itself", waiter)
        .await
        .unwrap();
    h.server.stop().await;
}

#[tokio::test]
async fn tracker_extension_requires_with_tracker_extension() {
    // Off by default (it allocates per request): the extractor then fails with a 500.
    let h = Harness::start_with(DrainLayer::new(CancellationToken::new()), None).await;
    let mut client = h.client(Proto::Http1).await;
    assert_eq!(
        status(&mut client, Method::GET, "/watch").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    h.server.stop().await;
}

// ---------------------------------------------------------------------------------------

both_protocols!(
    in_flight_request_completes_with_200_after_drain_starts,
    request_after_cancel_within_the_handoff_grace_is_served,
    request_after_the_handoff_grace_gets_503,
    request_after_admission_closed_gets_503_with_retry_after_and_skips_the_handler,
    announced_requests_are_served_and_only_http1_gets_connection_close,
    streaming_body_counts_until_fully_read,
    panicking_handler_releases_its_guard_and_the_server_keeps_serving,
    readiness_path_flips_to_503_when_shutdown_is_announced,
    readiness_path_flips_to_503_when_the_token_is_cancelled,
    readiness_path_answers_head_without_a_body,
    readiness_path_refuses_post_with_405_and_allow,
    readiness_service_route_flips_at_announce_and_stays_503_when_draining,
    readiness_service_route_flips_at_cancel,
    readiness_service_route_refuses_post_with_405_and_allow,
    probe_requests_are_never_counted,
    liveness_path_stays_200_while_draining,
    exempt_path_is_served_while_draining_and_not_counted,
    handler_extracts_the_tracker_from_extensions,
    handler_admitted_during_the_handoff_sees_draining_in_its_tracker,
    streaming_handler_ends_its_stream_when_the_drain_starts,
);

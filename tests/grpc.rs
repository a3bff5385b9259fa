//! A tonic server (`Server::builder().layer(drain)`) serving tonic-health, driven by the
//! generated `HealthClient` over TCP (no protoc needed), and by a raw hyper HTTP/2 client to
//! look at the refusal on the wire.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_drain::{ConnectionTracker, DrainLayer};

const MESSAGE: &str = "draining: retry on another instance";

struct GrpcServer {
    token: CancellationToken,
    tracker: ConnectionTracker,
    server: Server,
}

/// Starts tonic with the drain layer (default handoff grace) and the health service. The
/// server's own shutdown is separate from the drain token, so connections stay open after the
/// token is cancelled: the server never says goodbye, and only the handoff grace closes
/// admission.
async fn start() -> GrpcServer {
    start_with(DrainLayer::new(CancellationToken::new())).await
}

/// Like [`start`], with a zero handoff grace: admission closes the moment the token is
/// cancelled, as if the server had already closed its connections. For the tests of what a
/// refusal looks like, and of `drained()` waiting for a stream alone.
async fn start_refusing() -> GrpcServer {
    start_with(DrainLayer::new(CancellationToken::new()).handoff_grace(Duration::ZERO)).await
}

async fn start_with(drain: DrainLayer) -> GrpcServer {
    let token = drain.token().clone();
    let drain = drain.rejection_message(MESSAGE);
    let tracker = drain.tracker();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(drain)
            .add_service(health)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
            .await
            .expect("tonic server failed");
    });
    GrpcServer {
        token,
        tracker,
        server: Server::from_parts(addr, shutdown, task),
    }
}

async fn client(server: &GrpcServer) -> HealthClient<Channel> {
    let channel = within(
        "the gRPC channel",
        Endpoint::from_shared(server.server.url(""))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect failed");
    HealthClient::new(channel)
}

fn check_request() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[tokio::test]
async fn grpc_check_is_served_before_the_drain() {
    let s = start().await;
    let mut client = client(&s).await;
    let response = within("check", client.check(check_request()))
        .await
        .expect("check failed");
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    assert_eq!(s.tracker.admitted_total(), 1);
    assert_eq!(s.tracker.in_flight(), 0);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_check_is_still_served_while_announced() {
    let s = start().await;
    let mut client = client(&s).await;
    s.tracker.announce_shutdown();
    let response = within("check", client.check(check_request()))
        .await
        .expect("check failed during the notice period");
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_check_after_cancel_within_the_handoff_grace_is_served() {
    let s = start().await;
    let mut client = client(&s).await;
    within("check", client.check(check_request()))
        .await
        .expect("check failed");

    s.token.cancel();
    assert!(s.tracker.is_draining());
    let response = within("check", client.check(check_request()))
        .await
        .expect("a call the connection delivered during the handoff was refused");
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    assert_eq!(s.tracker.admitted_total(), 2);
    assert_eq!(s.tracker.rejected_total(), 0);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_check_after_the_handoff_grace_gets_unavailable() {
    const GRACE: Duration = Duration::from_millis(50);
    let s = start_with(DrainLayer::new(CancellationToken::new()).handoff_grace(GRACE)).await;
    let mut client = client(&s).await;
    s.token.cancel();
    tokio::time::sleep(GRACE).await;
    let status = within("check", client.check(check_request()))
        .await
        .expect_err("a call was admitted after the handoff grace");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), MESSAGE);
    assert_eq!(s.tracker.rejected_total(), 1);
    assert_eq!(s.tracker.admitted_total(), 0);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_check_after_admission_closed_gets_unavailable() {
    let s = start_refusing().await;
    let mut client = client(&s).await;
    within("check", client.check(check_request()))
        .await
        .expect("check failed");

    s.token.cancel();
    assert!(s.tracker.is_closed());
    let status = within("check", client.check(check_request()))
        .await
        .expect_err("a request was admitted once admission had closed");
    assert_eq!(status.code(), Code::Unavailable);
    // The layer's refusal, not a transport failure (which tonic also reports as Unavailable).
    assert_eq!(status.message(), MESSAGE);
    assert_eq!(s.tracker.rejected_total(), 1);
    assert_eq!(s.tracker.admitted_total(), 1);

    // The connection survived: the refusal is an ordinary response, so the client can retry
    // on the same channel (and gets the same answer).
    let again = within("check", client.check(check_request()))
        .await
        .unwrap_err();
    assert_eq!(again.message(), MESSAGE);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_refusal_on_the_wire_is_trailers_only_http_200_with_grpc_status_14() {
    let s = start_refusing().await;
    s.token.cancel();
    let mut raw = Client::connect(s.server.addr, Proto::Http2).await;
    let mut request = raw.request(Method::POST, "/grpc.health.v1.Health/Check");
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/grpc".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert(http::header::TE, "trailers".parse().unwrap());
    let response = raw.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "grpc-status").as_deref(), Some("14"));
    assert_eq!(header(&response, "grpc-message").as_deref(), Some(MESSAGE));
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(header(&response, "connection"), None);
    // Trailers-only: END_STREAM on the HEADERS frame, so no data and no trailers follow.
    let collected = within("the body", response.into_body().collect())
        .await
        .unwrap();
    assert!(collected.trailers().is_none());
    assert!(collected.to_bytes().is_empty());
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_watch_stream_is_counted_until_the_client_drops_it() {
    // Admission closes at the cancel: only the open stream can hold drained() up.
    let s = start_refusing().await;
    let mut client = client(&s).await;
    let mut stream = within("watch", client.watch(check_request()))
        .await
        .expect("watch failed")
        .into_inner();
    let first = within("the first status", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    assert_eq!(s.tracker.in_flight(), 1, "an open stream is in flight");

    s.token.cancel();
    tokio::time::timeout(Duration::from_millis(50), s.tracker.drained())
        .await
        .expect_err("drained() resolved with a gRPC stream open");
    assert_eq!(s.tracker.in_flight(), 1);

    drop(stream); // the client cancels the stream (RST_STREAM)
    within("drained once the stream was cancelled", s.tracker.drained()).await;
    assert_eq!(s.tracker.in_flight(), 0);
    s.server.stop().await;
}

#[tokio::test]
async fn grpc_new_stream_after_admission_closed_gets_unavailable() {
    let s = start_refusing().await;
    let mut client = client(&s).await;
    s.token.cancel();
    let status = within("watch", client.watch(check_request()))
        .await
        .expect_err("a stream was admitted once admission had closed");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), MESSAGE);
    assert_eq!(s.tracker.in_flight(), 0);
    s.server.stop().await;
}

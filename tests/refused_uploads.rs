//! A request refused while draining must get its `503`, even when it carries a body the
//! inner service never read: on HTTP/1.x the layer reads and discards the body first (within
//! a byte budget and a time limit), so the connection closes cleanly instead of with a reset
//! that hides the answer.
//!
//! Every layer here refuses from the moment its token is cancelled ([`refusing_layer`]): the
//! servers are not wired to the token and never say goodbye, so there is no handoff to wait
//! for, and what is tested is the refusal itself.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::rt::TokioExecutor;
use support::{serve_hyper, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_drain::DrainLayer;

/// A layer whose admission closes when `token` is cancelled (a zero handoff grace), as if the
/// server had already closed its connections.
fn refusing_layer(token: CancellationToken) -> DrainLayer {
    DrainLayer::new(token).handoff_grace(Duration::ZERO)
}

async fn echo_len(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let len = request
        .into_body()
        .collect()
        .await
        .map_or(0, |b| b.to_bytes().len());
    Ok(Response::new(Full::new(Bytes::from(len.to_string()))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_refused_upload_gets_its_503_not_a_reset() {
    let token = CancellationToken::new();
    let drain = refusing_layer(token.clone());
    let service = ServiceBuilder::new()
        .layer(drain.clone())
        .service_fn(echo_len);
    // The accept loop keeps running on its own token: only the layer refuses.
    let server = serve_hyper(service, CancellationToken::new()).await;
    let client = LegacyClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    token.cancel();

    for attempt in 0..5 {
        let request = Request::post(server.url("/upload"))
            .body(Full::new(Bytes::from(vec![7u8; 8 << 20])))
            .unwrap();
        let response = within("the refusal", client.request(request))
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: the client saw {e:?}, not the 503"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["connection"], "close");
    }
    assert_eq!(drain.tracker().rejected_total(), 5);
    assert_eq!(drain.tracker().in_flight(), 0);
    server.stop().await;
}

#[tokio::test]
async fn http1_refusal_with_expect_continue_is_answered_without_asking_for_the_body() {
    let token = CancellationToken::new();
    let service = ServiceBuilder::new()
        .layer(refusing_layer(token.clone()))
        .service_fn(echo_len);
    let server = serve_hyper(service, CancellationToken::new()).await;
    token.cancel();

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 10000000\r\n\
              expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = within("the answer", stream.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "connection closed before the answer: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        !head.contains("100 Continue"),
        "the client was asked to upload: {head}"
    );
    server.stop().await;
}

/// A request body that never ends, as a client that stalls mid-upload.
struct Stalled;

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

fn refusing(
    layer: DrainLayer,
) -> impl Service<
    Request<Stalled>,
    Response = Response<tower_drain::body::ResponseBody<Full<Bytes>>>,
    Error = Infallible,
> {
    layer.layer(tower::service_fn(|_: Request<Stalled>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner"))))
    }))
}

fn upload(version: Version) -> Request<Stalled> {
    Request::post("/upload")
        .version(version)
        .body(Stalled)
        .unwrap()
}

#[tokio::test]
async fn refused_http1_body_is_read_before_the_answer_and_not_counted() {
    let token = CancellationToken::new();
    let drain = refusing_layer(token.clone());
    token.cancel();
    let mut answer = std::pin::pin!(refusing(drain.clone()).oneshot(upload(Version::HTTP_11)));
    // The body never ends, so the answer waits for it; meanwhile nothing counts as in flight.
    let pending = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx).is_pending()));
    assert!(pending.await, "answered before the refused body was read");
    assert_eq!(drain.tracker().in_flight(), 0);
    within("drained", drain.drained()).await;
}

#[tokio::test]
async fn refused_http2_body_is_not_read() {
    let token = CancellationToken::new();
    token.cancel();
    let response = within(
        "the answer",
        refusing(refusing_layer(token)).oneshot(upload(Version::HTTP_2)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn refused_body_declared_larger_than_the_limit_is_not_read() {
    let token = CancellationToken::new();
    token.cancel();
    let layer = refusing_layer(token).refused_body_limit(1024);
    let mut request = upload(Version::HTTP_11);
    request
        .headers_mut()
        .insert("content-length", "1025".parse().unwrap());
    let response = within("the answer", refusing(layer).oneshot(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn refused_body_limit_zero_answers_at_once() {
    let token = CancellationToken::new();
    token.cancel();
    let layer = refusing_layer(token).refused_body_limit(0);
    let response = within(
        "the answer",
        refusing(layer).oneshot(upload(Version::HTTP_11)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn stalled_refused_http1_body_is_read_for_one_second_by_default_then_answered() {
    let token = CancellationToken::new();
    let layer = refusing_layer(token.clone());
    token.cancel();
    let started = tokio::time::Instant::now();
    let response = within(
        "the answer",
        refusing(layer).oneshot(upload(Version::HTTP_11)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn refused_body_timeout_option_bounds_the_read_of_a_stalled_body() {
    let token = CancellationToken::new();
    let layer = refusing_layer(token.clone()).refused_body_timeout(Duration::from_millis(50));
    token.cancel();
    let started = tokio::time::Instant::now();
    let response = within(
        "the answer",
        refusing(layer).oneshot(upload(Version::HTTP_11)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
}

#[tokio::test]
async fn readiness_probe_with_a_body_is_answered_after_reading_it() {
    let layer = DrainLayer::new(CancellationToken::new()).readiness_path("/readyz");
    let request = Request::post("/readyz")
        .body(Full::new(Bytes::from_static(b"probe")))
        .unwrap();
    let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let response = within("the answer", service.oneshot(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

//! Unit tests of `Drain<S>` against mock inner services (tower-test and hand-rolled): readiness
//! (always ready, requests waiting for the inner service), when requests are admitted and
//! refused (the handoff grace, `close`), refusals, the guard's journey from the future into
//! the body, every way a request can end, the builder options and their panics.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{header, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::Empty;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service, ServiceExt};
use tower_drain::{ConnectionTracker, DrainLayer};
use tower_test::mock;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------
// Test doubles

/// A body that yields scripted frames. With `end_early`, `is_end_stream` turns true as soon
/// as the last frame has been yielded; otherwise only after `None` was returned.
#[derive(Debug, Default)]
struct TestBody {
    frames: VecDeque<Result<Bytes, &'static str>>,
    hint: Option<u64>,
    end_early: bool,
    ended: bool,
}

impl TestBody {
    fn chunks(chunks: &[&'static str]) -> Self {
        Self {
            frames: chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes())))
                .collect(),
            ..Self::default()
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.frames.pop_front() {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => {
                self.ended = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.end_early && self.frames.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

type Respond = dyn Fn(&Request<Empty<Bytes>>) -> Result<Response<TestBody>, BoxError> + Send + Sync;

/// An always-ready inner service that counts its calls, remembers the last request's
/// `ConnectionTracker` extension, and answers with `respond`.
#[derive(Clone)]
struct Inner {
    calls: Arc<AtomicUsize>,
    tracker: Arc<Mutex<Option<ConnectionTracker>>>,
    respond: Arc<Respond>,
}

impl Inner {
    fn new(
        respond: impl Fn(&Request<Empty<Bytes>>) -> Result<Response<TestBody>, BoxError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            calls: Arc::default(),
            tracker: Arc::default(),
            respond: Arc::new(respond),
        }
    }

    fn ok() -> Self {
        Self::new(|_| Ok(Response::new(TestBody::chunks(&["hello"]))))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<Empty<Bytes>>> for Inner {
    type Response = Response<TestBody>;
    type Error = BoxError;
    type Future = Ready<Result<Response<TestBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Empty<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.tracker.lock().unwrap() = request.extensions().get::<ConnectionTracker>().cloned();
        ready((self.respond)(&request))
    }
}

/// A waker that remembers whether it was woken.
#[derive(Default)]
struct WakeFlag(AtomicBool);

impl WakeFlag {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder().uri(path).body(Empty::new()).unwrap()
}

fn get_with_version(version: Version) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("/")
        .version(version)
        .body(Empty::new())
        .unwrap()
}

fn grpc_request() -> Request<Empty<Bytes>> {
    Request::builder()
        .method("POST")
        .uri("/grpc.health.v1.Health/Check")
        .version(Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(Empty::new())
        .unwrap()
}

fn layer() -> (CancellationToken, DrainLayer) {
    let token = CancellationToken::new();
    (token.clone(), DrainLayer::new(token))
}

/// A layer whose admission closes the moment its token is cancelled (a zero handoff grace),
/// as if the server had already closed its connections: the tests of what a refusal looks
/// like need requests that are refused, not handed off.
fn refusing_layer() -> (CancellationToken, DrainLayer) {
    let (token, layer) = layer();
    (token, layer.handoff_grace(Duration::ZERO))
}

async fn collect<B: Body<Data = Bytes>>(body: B) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    body.collect().await.unwrap().to_bytes()
}

// ---------------------------------------------------------------------------------------
// poll_ready: always ready, so probes and refusals never wait on the inner service

#[tokio::test]
async fn poll_ready_is_ready_while_the_inner_service_is_pending() {
    let (_token, layer) = layer();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0); // the mock's poll_ready is Pending from now on
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    assert!(
        matches!(service.poll_ready(), Poll::Ready(Ok(()))),
        "ready again while the inner service still is not"
    );
}

#[tokio::test]
async fn poll_ready_error_passes_through() {
    let (_token, layer) = layer();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.send_error("inner not ready");
    match service.poll_ready() {
        Poll::Ready(Err(e)) => assert_eq!(e.to_string(), "inner not ready"),
        other => panic!("expected the inner error, got {other:?}"),
    }
}

#[tokio::test]
async fn probes_are_answered_while_the_inner_service_is_not_ready() {
    let (_token, layer) = layer();
    let layer = layer.readiness_path("/readyz").liveness_path("/livez");
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0);
    for path in ["/readyz", "/livez"] {
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let response = service
            .call(get(path))
            .now_or_never()
            .unwrap_or_else(|| panic!("{path} waited for the inner service"))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert!(
        handle.next_request().now_or_never().is_none(),
        "a probe reached the inner service"
    );
}

#[tokio::test]
async fn refusal_is_answered_while_the_inner_service_is_not_ready() {
    let (token, layer) = refusing_layer();
    let tracker = layer.tracker();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0);
    token.cancel();
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let response = service
        .call(get("/"))
        .now_or_never()
        .expect("the refusal waited for the inner service")
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(tracker.rejected_total(), 1);
    assert!(handle.next_request().now_or_never().is_none());
}

#[tokio::test]
async fn request_made_while_the_inner_service_is_not_ready_waits_counted_then_is_served() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let mut future = std::pin::pin!(service.call(get("/hello")));
    assert_eq!(tracker.in_flight(), 1, "counted while it waits");

    let woken = Arc::new(WakeFlag::default());
    let waker = std::task::Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert!(
        handle.next_request().now_or_never().is_none(),
        "called before the inner service was ready"
    );
    assert_eq!(tracker.in_flight(), 1);

    handle.allow(1);
    assert!(
        woken.take(),
        "the inner service's wake-up must reach the waiting request"
    );
    assert!(future.as_mut().poll(&mut cx).is_pending(), "now called");
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/hello");
    assert_eq!(tracker.in_flight(), 1);
    respond.send_response(Response::new(TestBody::chunks(&["hi"])));
    let response = future.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(tracker.in_flight(), 1, "the body carries the guard");
    assert_eq!(collect(response.into_body()).await, "hi");
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(tracker.admitted_total(), 1);
}

#[tokio::test]
async fn inner_poll_ready_error_while_a_request_waits_is_returned_and_releases_the_guard() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let mut future = Box::pin(service.call(get("/")));
    assert!(futures_util::poll!(future.as_mut()).is_pending());
    assert_eq!(tracker.in_flight(), 1);
    handle.send_error("inner broke while we waited");
    let err = future.await.unwrap_err();
    assert_eq!(err.to_string(), "inner broke while we waited");
    assert_eq!(tracker.in_flight(), 0);
    assert!(handle.next_request().now_or_never().is_none());
}

#[tokio::test]
async fn dropping_a_response_future_that_waits_for_the_inner_service_releases_the_guard() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(0);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let mut future = Box::pin(service.call(get("/")));
    assert!(futures_util::poll!(future.as_mut()).is_pending());
    assert_eq!(tracker.in_flight(), 1);
    drop(future);
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn admitted_request_reaches_the_inner_service_unchanged() {
    let (_token, layer) = layer();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer);
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let future = service.call(get("/hello"));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/hello");
    respond.send_response(Response::new(TestBody::chunks(&["hi"])));
    let response = future.await.unwrap();
    assert_eq!(collect(response.into_body()).await, "hi");
}

// ---------------------------------------------------------------------------------------
// Admission: requests are served during the handoff grace, refused once admission closes

#[tokio::test]
async fn request_after_cancel_within_the_handoff_grace_is_served_and_counted() {
    let (token, layer) = layer();
    let inner = Inner::ok();
    let tracker = layer.tracker();
    let mut service = layer.layer(inner.clone());
    token.cancel();
    assert!(tracker.is_draining());
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(tracker.in_flight(), 1, "counted until its body ends");
    assert_eq!(collect(response.into_body()).await, "hello");
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(inner.calls(), 1);
    assert_eq!(tracker.admitted_total(), 1);
    assert_eq!(tracker.rejected_total(), 0);
}

#[tokio::test]
async fn http11_response_within_the_handoff_grace_carries_connection_close() {
    let (token, layer) = layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    let response = service
        .call(get_with_version(Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn request_after_close_gets_503_within_the_handoff_grace() {
    let (token, layer) = layer();
    let inner = Inner::ok();
    let tracker = layer.tracker();
    let mut service = layer.layer(inner.clone());
    token.cancel();
    tracker.close(); // the server has closed its connections: nothing is handed off any more
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(inner.calls(), 0);
    assert_eq!(tracker.rejected_total(), 1);
    assert_eq!(tracker.admitted_total(), 0);
}

#[tokio::test(start_paused = true)]
async fn handoff_grace_is_one_second_by_default() {
    let (token, layer) = layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    tokio::time::sleep(Duration::from_millis(999)).await;
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "999 ms after the cancel");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "1 s after the cancel"
    );
}

#[tokio::test(start_paused = true)]
async fn handoff_grace_option_sets_when_admission_closes_by_itself() {
    let (token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer
        .handoff_grace(Duration::from_millis(50))
        .layer(Inner::ok());
    token.cancel();
    tokio::time::sleep(Duration::from_millis(49)).await;
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "49 ms after the cancel");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "50 ms after the cancel"
    );
    assert!(tracker.is_closed());
}

#[tokio::test]
async fn zero_handoff_grace_refuses_from_the_moment_of_cancel() {
    let (token, layer) = refusing_layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    assert!(tracker.is_closed());
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------
// Refusal

#[tokio::test]
async fn refused_request_does_not_call_the_inner_service() {
    let (token, layer) = refusing_layer();
    let inner = Inner::ok();
    let mut service = layer.layer(inner.clone());
    token.cancel();
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(inner.calls(), 0);
    assert_eq!(layer.tracker().rejected_total(), 1);
    assert_eq!(layer.tracker().admitted_total(), 0);
}

#[tokio::test]
async fn refusal_has_retry_after_one_second_by_default_and_a_text_body() {
    let (token, layer) = refusing_layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(!collect(response.into_body()).await.is_empty());
}

#[tokio::test]
async fn retry_after_option_is_rounded_up_to_whole_seconds() {
    let (token, layer) = refusing_layer();
    let mut service = layer
        .retry_after(Duration::from_millis(2500))
        .layer(Inner::ok());
    token.cancel();
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(response.headers()[header::RETRY_AFTER], "3");
}

#[tokio::test]
async fn rejection_message_option_sets_the_503_body() {
    let (token, layer) = refusing_layer();
    let mut service = layer.rejection_message("gone fishing").layer(Inner::ok());
    token.cancel();
    let response = service.call(get("/")).await.unwrap();
    assert_eq!(collect(response.into_body()).await, "gone fishing\n");
}

#[tokio::test]
async fn refusal_body_has_an_exact_size_hint() {
    let (token, layer) = refusing_layer();
    let mut service = layer.rejection_message("abc").layer(Inner::ok());
    token.cancel();
    let body = service.call(get("/")).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(4));
    assert!(!body.is_end_stream());
    let mut body = body;
    let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(data, "abc\n");
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn http11_refusal_carries_connection_close() {
    let (token, layer) = refusing_layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    let response = service
        .call(get_with_version(Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn http10_refusal_carries_connection_close() {
    let (token, layer) = refusing_layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    let response = service
        .call(get_with_version(Version::HTTP_10))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn http2_and_http3_refusals_have_no_connection_header() {
    let (token, layer) = refusing_layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    for version in [Version::HTTP_2, Version::HTTP_3] {
        let response = service.call(get_with_version(version)).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            response.headers().get(header::CONNECTION).is_none(),
            "{version:?}"
        );
        assert!(
            response.headers().get("keep-alive").is_none(),
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn grpc_refusal_is_trailers_only_http_200_with_grpc_status_14() {
    let (token, layer) = refusing_layer();
    let inner = Inner::ok();
    let mut service = layer.layer(inner.clone());
    token.cancel();
    let response = service.call(grpc_request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
    assert!(response.headers().contains_key("grpc-message"));
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
    assert!(response.headers().get(header::CONNECTION).is_none());
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
    let mut body = response.into_body();
    assert!(body.is_end_stream(), "trailers-only: no body at all");
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.frame().await.is_none());
    assert_eq!(inner.calls(), 0);
}

#[tokio::test]
async fn grpc_refusal_message_is_percent_encoded() {
    let (token, layer) = refusing_layer();
    let mut service = layer
        .rejection_message("draining: 100% done, bientôt")
        .layer(Inner::ok());
    token.cancel();
    let response = service.call(grpc_request()).await.unwrap();
    assert_eq!(
        response.headers()["grpc-message"],
        "draining: 100%25 done, bient%C3%B4t"
    );
}

#[tokio::test]
async fn grpc_web_content_type_is_refused_the_grpc_way() {
    let (token, layer) = refusing_layer();
    let mut service = layer.layer(Inner::ok());
    token.cancel();
    let mut request = grpc_request();
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/grpc-web+proto".parse().unwrap(),
    );
    let response = service.call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "14");
}

// ---------------------------------------------------------------------------------------
// Keep-alive while announced

#[tokio::test]
async fn http11_response_carries_connection_close_once_announced() {
    let (_token, layer) = layer();
    let mut service = layer.layer(Inner::ok());
    let before = service
        .call(get_with_version(Version::HTTP_11))
        .await
        .unwrap();
    assert!(before.headers().get(header::CONNECTION).is_none());
    layer.tracker().announce_shutdown();
    let after = service
        .call(get_with_version(Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn http10_response_carries_connection_close_once_announced() {
    let (_token, layer) = layer();
    let mut service = layer.layer(Inner::ok());
    layer.tracker().announce_shutdown();
    let response = service
        .call(get_with_version(Version::HTTP_10))
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CONNECTION], "close");
}

#[tokio::test]
async fn http2_response_has_no_connection_header_once_announced() {
    let (_token, layer) = layer();
    let mut service = layer.layer(Inner::ok());
    layer.tracker().announce_shutdown();
    let response = service
        .call(get_with_version(Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::CONNECTION).is_none());
}

#[tokio::test]
async fn switching_protocols_response_keeps_its_upgrade_header_once_announced() {
    let (_token, layer) = layer();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(TestBody::default())
            .unwrap())
    }));
    layer.tracker().announce_shutdown();
    let response = service
        .call(get_with_version(Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()[header::CONNECTION], "upgrade");
}

// ---------------------------------------------------------------------------------------
// The guard: future, body, and every way a request ends

#[tokio::test]
async fn guard_moves_into_the_body() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::new(TestBody::chunks(&["a", "b"])))
    }));
    let future = service.call(get("/"));
    assert_eq!(tracker.in_flight(), 1, "counted from the call");
    let mut body = future.await.unwrap().into_body();
    assert_eq!(
        tracker.in_flight(),
        1,
        "the response exists, the body is not read"
    );
    body.frame().await.unwrap().unwrap();
    assert_eq!(tracker.in_flight(), 1, "one frame of two read");
    body.frame().await.unwrap().unwrap();
    assert_eq!(tracker.in_flight(), 1, "the body has not said it ended");
    assert!(body.frame().await.is_none());
    assert_eq!(
        tracker.in_flight(),
        0,
        "released at the end, before the body is dropped"
    );
    drop(body);
    assert_eq!(tracker.in_flight(), 0, "released exactly once");
}

#[tokio::test]
async fn guard_is_released_on_the_last_frame_when_the_body_reports_its_end() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::new(TestBody {
            end_early: true,
            ..TestBody::chunks(&["a", "b"])
        }))
    }));
    let mut body = service.call(get("/")).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(tracker.in_flight(), 1);
    body.frame().await.unwrap().unwrap();
    assert_eq!(
        tracker.in_flight(),
        0,
        "is_end_stream() was true after the last frame"
    );
}

#[tokio::test]
async fn response_body_forwards_size_hint_and_is_end_stream() {
    let (_token, layer) = layer();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::new(TestBody {
            hint: Some(5),
            end_early: true,
            ..TestBody::chunks(&["hello"])
        }))
    }));
    let mut body = service.call(get("/")).await.unwrap().into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    body.frame().await.unwrap().unwrap();
    assert!(body.is_end_stream());

    let hint = TestBody::default().size_hint();
    let mut unknown = layer
        .layer(Inner::new(|_| Ok(Response::new(TestBody::default()))))
        .call(get("/"))
        .await
        .unwrap()
        .into_body();
    assert_eq!(unknown.size_hint().exact(), hint.exact());
    assert_eq!(unknown.size_hint().lower(), hint.lower());
    assert!(!unknown.is_end_stream());
    assert!(unknown.frame().await.is_none());
    assert!(unknown.is_end_stream());
}

#[tokio::test]
async fn body_error_releases_the_guard_and_is_passed_on() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::new(TestBody {
            frames: [Ok(Bytes::from("a")), Err("body broke")].into(),
            ..TestBody::default()
        }))
    }));
    let mut body = service.call(get("/")).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(tracker.in_flight(), 1);
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "body broke");
    assert_eq!(tracker.in_flight(), 0, "released when the body failed");
    drop(body);
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn dropping_the_body_midway_releases_the_guard() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::new(|_| {
        Ok(Response::new(TestBody::chunks(&["a", "b"])))
    }));
    let mut body = service.call(get("/")).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(tracker.in_flight(), 1);
    drop(body);
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn dropping_the_response_future_releases_the_guard() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Empty<Bytes>>, Response<TestBody>, _>(layer.clone());
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
    let future = service.call(get("/"));
    let (_request, _respond) = handle.next_request().await.unwrap();
    assert_eq!(tracker.in_flight(), 1);
    drop(future);
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn inner_error_releases_the_guard_and_is_returned_unchanged() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Inner::new(|_| Err("inner failed".into())));
    let err = service.call(get("/")).await.unwrap_err();
    assert_eq!(err.to_string(), "inner failed");
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(tracker.admitted_total(), 1);
}

#[test]
fn panic_in_inner_call_releases_the_guard() {
    #[derive(Clone)]
    struct Panics;
    impl Service<Request<Empty<Bytes>>> for Panics {
        type Response = Response<TestBody>;
        type Error = Infallible;
        type Future = Ready<Result<Response<TestBody>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<Empty<Bytes>>) -> Self::Future {
            panic!("call panicked on purpose")
        }
    }
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(Panics);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    // Ready first, as a caller must be: the inner service is then called in `call` itself.
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(service.call(get("/")));
    }));
    assert!(result.is_err());
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn panic_in_an_inner_call_made_once_the_inner_service_is_ready_releases_the_guard() {
    /// Not ready until `ready` is set; then its `call` panics.
    #[derive(Clone)]
    struct PanicsWhenReady {
        ready: Arc<AtomicBool>,
    }
    impl Service<Request<Empty<Bytes>>> for PanicsWhenReady {
        type Response = Response<TestBody>;
        type Error = Infallible;
        type Future = Ready<Result<Response<TestBody>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn call(&mut self, _: Request<Empty<Bytes>>) -> Self::Future {
            panic!("call panicked on purpose")
        }
    }
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let ready = Arc::new(AtomicBool::new(false));
    let mut service = layer.layer(PanicsWhenReady {
        ready: ready.clone(),
    });
    // The request waits in its future, which makes the call once the inner service is ready.
    let mut future = Box::pin(service.ready().await.unwrap().call(get("/")));
    assert!(futures_util::poll!(future.as_mut()).is_pending());
    assert_eq!(tracker.in_flight(), 1);
    ready.store(true, Ordering::SeqCst);
    let joined = tokio::spawn(future).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(tracker.in_flight(), 0);
}

#[tokio::test]
async fn panic_while_polling_the_inner_future_releases_the_guard() {
    let (_token, layer) = layer();
    let tracker = layer.tracker();
    let mut service = layer.layer(tower::service_fn(|_: Request<Empty<Bytes>>| async {
        panic!("handler panicked on purpose");
        #[allow(unreachable_code)]
        Ok::<_, Infallible>(Response::new(TestBody::default()))
    }));
    let future = service.call(get("/"));
    assert_eq!(tracker.in_flight(), 1);
    let joined = tokio::spawn(future).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(tracker.in_flight(), 0);
}

// ---------------------------------------------------------------------------------------
// Probes and exemptions at the service level

#[tokio::test]
async fn readiness_path_requests_are_answered_by_the_layer_and_not_counted() {
    let (token, layer) = layer();
    let inner = Inner::ok();
    let tracker = layer.tracker();
    let mut service = layer.readiness_path("/readyz").layer(inner.clone());
    let response = service.call(get("/readyz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    token.cancel();
    let response = service.call(get("/readyz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(inner.calls(), 0);
    assert_eq!(tracker.admitted_total(), 0);
    assert_eq!(tracker.rejected_total(), 0);
}

#[tokio::test]
async fn readiness_path_match_ignores_the_query_string() {
    let (_token, layer) = layer();
    let inner = Inner::ok();
    let mut service = layer.readiness_path("/readyz").layer(inner.clone());
    let response = service.call(get("/readyz?verbose=1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(collect(response.into_body()).await, "ready\n");
    assert_eq!(inner.calls(), 0);
}

#[tokio::test]
async fn exempt_path_is_served_while_draining_and_not_counted() {
    // Admission closes at the cancel, so that the sub-path below is refused.
    let (token, layer) = refusing_layer();
    let inner = Inner::ok();
    let tracker = layer.tracker();
    let mut service = layer.exempt_path("/metrics").layer(inner.clone());
    let body = service.call(get("/metrics")).await.unwrap().into_body();
    assert_eq!(tracker.in_flight(), 0, "exempt responses are not counted");
    drop(body);
    token.cancel();
    let response = service.call(get("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(collect(response.into_body()).await, "hello");
    assert_eq!(inner.calls(), 2);
    assert_eq!(tracker.admitted_total(), 0);
    assert_eq!(tracker.rejected_total(), 0);
    // Exact match only: a sub-path is an ordinary request.
    let response = service.call(get("/metrics/extra")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------
// The tracker extension

#[tokio::test]
async fn with_tracker_extension_puts_the_tracker_in_request_extensions() {
    let (token, layer) = layer();
    let inner = Inner::ok();
    let mut service = layer.with_tracker_extension().layer(inner.clone());
    service.call(get("/")).await.unwrap();
    let tracker = inner
        .tracker
        .lock()
        .unwrap()
        .take()
        .expect("no ConnectionTracker extension");
    assert!(!tracker.is_draining());
    token.cancel();
    assert!(tracker.is_draining());
    tokio::time::timeout(Duration::from_secs(5), tracker.draining())
        .await
        .expect("draining() resolves once the token is cancelled");
}

#[tokio::test]
async fn tracker_extension_is_off_by_default() {
    let (_token, layer) = layer();
    let inner = Inner::ok();
    let mut service = layer.layer(inner.clone());
    service.call(get("/")).await.unwrap();
    assert!(inner.tracker.lock().unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Accessors, clones, builder panics

#[test]
fn get_ref_get_mut_and_into_inner_reach_the_inner_service() {
    let (_token, layer) = layer();
    let inner = Inner::ok();
    let mut service = layer.layer(inner.clone());
    assert!(Arc::ptr_eq(&service.get_ref().calls, &inner.calls));
    service.get_mut().calls = Arc::new(AtomicUsize::new(7));
    assert_eq!(service.get_ref().calls(), 7);
    let back: Inner = service.into_inner();
    assert_eq!(back.calls(), 7);
}

#[tokio::test]
async fn layer_clones_and_their_services_share_one_tracker() {
    let (token, layer) = layer();
    let clone = layer.clone();
    let mut a = layer.layer(Inner::ok());
    let mut b = clone.layer(Inner::ok());
    let _body_a = a.call(get("/")).await.unwrap().into_body();
    let _body_b = b.call(get("/")).await.unwrap().into_body();
    assert_eq!(layer.tracker().in_flight(), 2);
    assert_eq!(clone.tracker().in_flight(), 2);
    token.cancel();
    assert!(clone.tracker().is_draining());
}

#[tokio::test(start_paused = true)]
async fn layer_drained_shortcut_is_event_driven() {
    // With the clock paused, a polling implementation would need the clock to advance
    // (tokio auto-advances it when idle); an event-driven one resolves at the same instant.
    // Admission closes at the cancel, so that only the release can end the wait (with the
    // default grace, drained() would wait for the grace's timer).
    let (token, layer) = refusing_layer();
    let tracker = layer.tracker();
    let guard = tracker.guard().unwrap();
    token.cancel();
    let start = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move { layer.drained().await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    drop(guard);
    waiter.await.unwrap();
    assert_eq!(
        tokio::time::Instant::now(),
        start,
        "drained() waited on a timer"
    );
}

#[test]
#[should_panic(expected = "readiness path must start with '/'")]
fn readiness_path_without_leading_slash_panics() {
    let _ = DrainLayer::new(CancellationToken::new()).readiness_path("readyz");
}

#[test]
#[should_panic(expected = "liveness path must start with '/' and hold no query or fragment")]
fn liveness_path_with_a_query_panics() {
    let _ = DrainLayer::new(CancellationToken::new()).liveness_path("/livez?full=1");
}

#[test]
#[should_panic(expected = "exempt path must start with '/' and hold no query or fragment")]
fn exempt_path_with_a_fragment_panics() {
    let _ = DrainLayer::new(CancellationToken::new()).exempt_path("/metrics#x");
}

#[test]
#[should_panic(expected = "readiness path must start with '/'")]
fn empty_readiness_path_panics() {
    let _ = DrainLayer::new(CancellationToken::new()).readiness_path("");
}

#[tokio::test]
async fn readiness_service_wrapped_by_the_layer_is_neither_counted_nor_refused() {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone());
    let tracker = drain.tracker();
    let mut probe = drain.layer(drain.readiness());
    token.cancel();
    tracker.close();
    let request = Request::get("/readyz").body(Empty::<Bytes>::new()).unwrap();
    let response = ServiceExt::<Request<Empty<Bytes>>>::ready(&mut probe)
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "shutting down\n",
        "the probe's own answer, not the layer's refusal"
    );
    assert_eq!(tracker.rejected_total(), 0);
    assert_eq!(tracker.admitted_total(), 0);
}

#[tokio::test]
async fn readiness_route_inside_an_axum_layer_still_answers_503_once_admission_closed() {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone());
    let tracker = drain.tracker();
    let mut app = axum::Router::new()
        .route_service("/readyz", drain.readiness())
        .layer(drain.clone());
    let status = |app: &mut axum::Router| {
        let request = Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap();
        let future = app.call(request);
        async move { future.await.unwrap().status() }
    };
    assert_eq!(status(&mut app).await, StatusCode::OK);
    tracker.announce_shutdown();
    assert_eq!(status(&mut app).await, StatusCode::SERVICE_UNAVAILABLE);
    token.cancel();
    tracker.close();
    assert_eq!(status(&mut app).await, StatusCode::SERVICE_UNAVAILABLE);
}

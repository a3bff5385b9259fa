//! Heap allocations per request, counted by a global allocator.
//!
//! The claim: a request that passes through [`Drain`](tower_drain::Drain) costs **no** heap
//! allocation beyond what the inner service itself does. Each test drives the whole life of a
//! request by hand (`poll_ready`, `call`, the response future, the response body to its end,
//! the drops) with a no-op waker, so no runtime allocates behind our back, and counts the
//! allocations made on the test's own thread (the counter is thread-local, so tests running
//! in parallel do not disturb each other). Run with `--nocapture` to see the absolute numbers.
//!
//! That the pass-through path takes no lock is true by construction (`src/tracker.rs`:
//! `admit` and `release` are atomic operations only) and is not something a test can show.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service};
use tower_drain::DrainLayer;
use tower_http::metrics::InFlightRequestsLayer;

#[path = "../benches/support/hello.rs"]
mod hello;
use hello::{noop_waker, Hello};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

/// Allocations made by the current thread while `f` runs.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The whole life of one request: ready, call, response future, body to its end, drops.
/// Returns the response status.
fn serve_one<S, ReqBody, ResBody>(
    service: &mut S,
    request: Request<ReqBody>,
    cx: &mut Context<'_>,
) -> StatusCode
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Debug,
    ResBody: Body,
    ResBody::Error: std::fmt::Debug,
{
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {other:?}"),
    }
    let mut future = pin!(service.call(request));
    let response = match future.as_mut().poll(cx) {
        Poll::Ready(result) => result.expect("the service failed"),
        Poll::Pending => panic!("the test services answer at once"),
    };
    let status = response.status();
    let mut body = pin!(response.into_body());
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(_frame))) => {}
            Poll::Ready(None) => break,
            Poll::Ready(Some(Err(e))) => panic!("body failed: {e:?}"),
            Poll::Pending => panic!("the test bodies are complete"),
        }
    }
    status
}

fn hello_router() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }))
}

/// Allocations for `n` requests through `service`, the requests built outside the count.
fn allocations_for_requests<S, ReqBody, ResBody>(
    service: &mut S,
    n: u64,
    make_request: impl Fn() -> Request<ReqBody>,
    expected: StatusCode,
) -> u64
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Debug,
    ResBody: Body,
    ResBody::Error: std::fmt::Debug,
{
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut total = 0;
    for _ in 0..n {
        let request = make_request();
        total += allocations_during(|| {
            assert_eq!(serve_one(service, request, &mut cx), expected);
        });
    }
    total
}

const REQUESTS: u64 = 1_000;

#[test]
fn pass_through_adds_zero_allocations_to_a_trivial_service() {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone());
    let tracker = layer.tracker();
    let mut bare = Hello;
    let mut layered = layer.layer(Hello);
    let request = || hello::request();

    // Warm up both paths once (lazy statics, thread-locals), then count.
    allocations_for_requests(&mut bare, 1, request, StatusCode::OK);
    allocations_for_requests(&mut layered, 1, request, StatusCode::OK);
    let bare_total = allocations_for_requests(&mut bare, REQUESTS, request, StatusCode::OK);
    let layered_total = allocations_for_requests(&mut layered, REQUESTS, request, StatusCode::OK);

    println!(
        "trivial service, {REQUESTS} requests: bare {bare_total} allocations, \
         with Drain {layered_total}"
    );
    assert_eq!(
        layered_total,
        bare_total,
        "Drain added {} allocations over {REQUESTS} requests",
        layered_total as i64 - bare_total as i64
    );
    // The requests really went through the counting path.
    assert_eq!(tracker.admitted_total(), REQUESTS + 1);
    assert_eq!(tracker.in_flight(), 0);
}

#[test]
fn pass_through_adds_zero_allocations_around_an_axum_router() {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone());
    let tracker = layer.tracker();
    let mut bare = hello_router();
    let mut layered = layer.layer(hello_router());
    let request = || Request::new(axum::body::Body::empty());

    allocations_for_requests(&mut bare, 1, request, StatusCode::OK);
    allocations_for_requests(&mut layered, 1, request, StatusCode::OK);
    let bare_total = allocations_for_requests(&mut bare, REQUESTS, request, StatusCode::OK);
    let layered_total = allocations_for_requests(&mut layered, REQUESTS, request, StatusCode::OK);

    println!(
        "axum Router, {REQUESTS} requests: bare {bare_total} allocations ({} per request), \
         Drain<Router> {layered_total} ({} per request)",
        bare_total / REQUESTS,
        layered_total / REQUESTS
    );
    assert_eq!(
        layered_total,
        bare_total,
        "Drain added {} allocations over {REQUESTS} requests",
        layered_total as i64 - bare_total as i64
    );
    assert_eq!(tracker.admitted_total(), REQUESTS + 1);
    assert_eq!(tracker.in_flight(), 0);
}

/// `Router::layer` boxes and clones the layered route per request, for any layer. The
/// allocations that costs are axum's: the same for `DrainLayer` as for tower's
/// `ConcurrencyLimitLayer` and tower-http's `InFlightRequestsLayer`.
#[test]
fn router_layer_allocates_no_more_with_drain_than_with_tower_concurrency_limit() {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone());
    let (in_flight_layer, _counter) = InFlightRequestsLayer::pair();
    let mut bare = hello_router();
    let mut drain = hello_router().layer(layer.clone());
    let mut limit = hello_router().layer(ConcurrencyLimitLayer::new(1_000));
    let mut in_flight = hello_router().layer(in_flight_layer);
    let request = || Request::new(axum::body::Body::empty());
    let count = |service: &mut axum::Router| {
        allocations_for_requests(service, 1, request, StatusCode::OK);
        allocations_for_requests(service, REQUESTS, request, StatusCode::OK) / REQUESTS
    };

    let bare = count(&mut bare);
    let drain = count(&mut drain);
    let limit = count(&mut limit);
    let in_flight = count(&mut in_flight);

    println!(
        "allocations per request through Router::layer: none {bare}, DrainLayer {drain}, \
         ConcurrencyLimitLayer {limit}, InFlightRequestsLayer {in_flight}"
    );
    assert_eq!(drain, limit, "DrainLayer vs ConcurrencyLimitLayer");
    assert_eq!(drain, in_flight, "DrainLayer vs InFlightRequestsLayer");
    assert_eq!(layer.tracker().admitted_total(), REQUESTS + 1);
}

#[test]
fn rejection_allocates_a_fixed_small_number_per_request() {
    let token = CancellationToken::new();
    // A zero handoff grace: admission closes at the cancel, so every request is refused.
    let layer = DrainLayer::new(token.clone()).handoff_grace(Duration::ZERO);
    let tracker = layer.tracker();
    let mut layered = layer.layer(Hello);
    token.cancel();
    let request = || hello::request();
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;

    allocations_for_requests(&mut layered, 1, request, unavailable);
    let first = allocations_for_requests(&mut layered, 1, request, unavailable);
    let total = allocations_for_requests(&mut layered, REQUESTS, request, unavailable);

    println!(
        "rejection: {first} allocations for one request, {total} for {REQUESTS} \
         (the response's header map, the boxed early answer)"
    );
    assert!(
        first <= 4,
        "a refusal should only allocate its header map and its boxed answer, got {first}"
    );
    assert_eq!(
        total,
        first * REQUESTS,
        "the cost of a refusal must not grow with the number of refusals"
    );
    assert_eq!(tracker.rejected_total(), REQUESTS + 2);
    assert_eq!(tracker.admitted_total(), 0);
}

/// A request the drain admits during the handoff grace takes the same allocation-free path as
/// one before the drain.
#[test]
fn request_admitted_during_the_handoff_grace_adds_zero_allocations() {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone()).handoff_grace(Duration::from_secs(3600));
    let tracker = layer.tracker();
    let mut bare = Hello;
    let mut layered = layer.layer(Hello);
    // HTTP/2: an HTTP/1.x response gets `Connection: close` while draining, and inserting
    // that header allocates the header map. That is the keep-alive rule's cost, not admission's.
    let request = || {
        let mut request = hello::request();
        *request.version_mut() = Version::HTTP_2;
        request
    };
    token.cancel();

    allocations_for_requests(&mut bare, 1, request, StatusCode::OK);
    allocations_for_requests(&mut layered, 1, request, StatusCode::OK);
    let bare_total = allocations_for_requests(&mut bare, REQUESTS, request, StatusCode::OK);
    let layered_total = allocations_for_requests(&mut layered, REQUESTS, request, StatusCode::OK);

    println!(
        "during the handoff grace, {REQUESTS} requests: bare {bare_total} allocations, \
         with Drain {layered_total}"
    );
    assert_eq!(layered_total, bare_total);
    assert!(tracker.is_draining());
    assert_eq!(tracker.admitted_total(), REQUESTS + 1);
    assert_eq!(tracker.rejected_total(), 0);
}

/// `with_tracker_extension` is opt-in because it allocates; this also shows the counter sees
/// allocations made inside the layer.
#[test]
fn tracker_extension_allocates_a_fixed_number_per_request() {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone()).with_tracker_extension();
    let mut layered = layer.layer(Hello);
    let request = || hello::request();

    allocations_for_requests(&mut layered, 1, request, StatusCode::OK);
    let first = allocations_for_requests(&mut layered, 1, request, StatusCode::OK);
    let total = allocations_for_requests(&mut layered, REQUESTS, request, StatusCode::OK);

    println!("with_tracker_extension: {first} allocations for one request, {total} for {REQUESTS}");
    // On a request without extensions: the extension map, its table, the boxed tracker.
    assert!(
        (1..=3).contains(&first),
        "inserting the extension should cost 1 to 3 allocations, got {first}"
    );
    assert_eq!(total, first * REQUESTS);
}

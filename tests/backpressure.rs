//! Probes and refusals are answered while the inner service applies back-pressure: a busy
//! instance still tells its orchestrator it is alive (or draining), over a real server.
//!
//! `DrainLayer` sits outside a `ConcurrencyLimit` of 1, and one slow request holds the slot.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use support::{read_body, serve_hyper, within, Client, Proto};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_drain::DrainLayer;

/// How long a probe may take while the slot is held: far below any probe timeout.
const PROMPT: Duration = Duration::from_millis(500);

async fn probes_are_answered_while_the_inner_service_is_saturated(proto: Proto) {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone())
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let tracker = drain.tracker();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let service = ServiceBuilder::new()
        .layer(drain)
        .layer(ConcurrencyLimitLayer::new(1))
        .service_fn(move |request: Request<hyper::body::Incoming>| {
            let release_rx = release_rx.clone();
            async move {
                if request.uri().path() == "/slow" {
                    if let Some(rx) = release_rx.lock().await.take() {
                        let _ = rx.await;
                    }
                }
                Ok::<_, Infallible>(Response::new(Body::from("done")))
            }
        });
    let server = serve_hyper(service, CancellationToken::new()).await;

    let mut slow = Client::connect(server.addr, proto).await;
    let slow_request = slow.request(http::Method::GET, "/slow");
    let slow_response = tokio::spawn(async move { slow.send(slow_request).await });
    support::eventually("the slow request to hold the slot", || {
        tracker.in_flight() == 1
    })
    .await;

    let mut probe = Client::connect(server.addr, proto).await;
    for (path, status) in [("/livez", StatusCode::OK), ("/readyz", StatusCode::OK)] {
        let response = tokio::time::timeout(PROMPT, probe.get(path))
            .await
            .unwrap_or_else(|_| panic!("{path} got no answer while the slot was held"));
        assert_eq!(response.status(), status, "{path}");
        read_body(response.into_body()).await;
    }

    // Draining: readiness flips; once admission closes, a request is refused at once too.
    token.cancel();
    tracker.close();
    let response = tokio::time::timeout(PROMPT, probe.get("/readyz"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    read_body(response.into_body()).await;
    let mut late = Client::connect(server.addr, proto).await;
    let response = tokio::time::timeout(PROMPT, late.get("/"))
        .await
        .expect("the refusal waited for the inner service");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    read_body(response.into_body()).await;

    release_tx.send(()).unwrap();
    let response = within("the slow response", slow_response).await.unwrap();
    assert_eq!(read_body(response.into_body()).await, "done");
    within("the drain", tracker.drained()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_probes_and_refusals_are_answered_while_the_inner_service_is_saturated() {
    probes_are_answered_while_the_inner_service_is_saturated(Proto::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_probes_and_refusals_are_answered_while_the_inner_service_is_saturated() {
    probes_are_answered_while_the_inner_service_is_saturated(Proto::Http2).await;
}

/// A request queued behind the limit is counted while it waits, and served once the slot
/// frees: the layer does not lose it, nor count it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_waiting_for_a_saturated_inner_service_is_counted_and_then_served() {
    let drain = DrainLayer::new(CancellationToken::new());
    let tracker = drain.tracker();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let service = ServiceBuilder::new()
        .layer(drain)
        .layer(ConcurrencyLimitLayer::new(1))
        .service_fn(move |request: Request<hyper::body::Incoming>| {
            let release_rx = release_rx.clone();
            async move {
                if request.uri().path() == "/slow" {
                    if let Some(rx) = release_rx.lock().await.take() {
                        let _ = rx.await;
                    }
                }
                Ok::<_, Infallible>(Response::new(Body::from(request.uri().path().to_owned())))
            }
        });
    let server = serve_hyper(service, CancellationToken::new()).await;
    let mut slow = Client::connect(server.addr, Proto::Http1).await;
    let slow_request = slow.request(http::Method::GET, "/slow");
    let slow = tokio::spawn(async move { slow.send(slow_request).await });
    support::eventually("the slow request to hold the slot", || {
        tracker.in_flight() == 1
    })
    .await;
    let mut queued = Client::connect(server.addr, Proto::Http1).await;
    let queued = tokio::spawn(async move { queued.get("/queued").await });
    support::eventually("the queued request to be counted", || {
        tracker.in_flight() == 2
    })
    .await;
    release_tx.send(()).unwrap();
    let queued = within("the queued response", queued).await.unwrap();
    assert_eq!(read_body(queued.into_body()).await, "/queued");
    within("the slow response", slow).await.unwrap();
    support::eventually("both released", || tracker.in_flight() == 0).await;
    assert_eq!(tracker.admitted_total(), 2);
}

//! [`ReadinessService`]: the readiness probe that fails the moment shutdown begins.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use tower_service::Service;

use crate::layer::body::EarlyBody;
use crate::tracker::ConnectionTracker;

/// A readiness endpoint: `200 OK` while serving, `503 Service Unavailable` from the moment
/// shutdown is announced or draining starts, so load balancers and Kubernetes stop routing
/// here before any request is refused.
///
/// Answers `GET` and `HEAD`; other methods get `405 Method Not Allowed` with `Allow`.
/// Get one from [`DrainLayer::readiness`](crate::DrainLayer::readiness), or let the layer answer
/// a path itself with [`DrainLayer::readiness_path`](crate::DrainLayer::readiness_path).
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_drain::DrainLayer;
///
/// let drain = DrainLayer::default();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route_service("/readyz", drain.readiness())
///     .layer(drain.clone());
/// ```
///
/// Mounted before or after `.layer(drain)`, the probe answers the same: `200` while serving,
/// `503` from the announce on. A layer that wraps a `ReadinessService` directly (tower's
/// `ServiceBuilder`, hyper) recognises it and lets its requests through uncounted, never
/// refused. axum boxes a route's service before its layers apply, so there the probe is counted
/// for the instant it takes, and once admission has closed the layer's own `503` answers it:
/// the same status. [`DrainLayer::readiness_path`](crate::DrainLayer::readiness_path) answers
/// without a route, uncounted everywhere.
#[derive(Clone)]
pub struct ReadinessService {
    tracker: ConnectionTracker,
}

impl ReadinessService {
    pub(crate) fn new(tracker: ConnectionTracker) -> Self {
        Self { tracker }
    }
}

impl<B> Service<Request<B>> for ReadinessService {
    type Response = Response<EarlyBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<EarlyBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(readiness_response(
            request.method(),
            self.tracker.is_ready(),
        )))
    }
}

impl fmt::Debug for ReadinessService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadinessService")
            .field("ready", &self.tracker.is_ready())
            .finish_non_exhaustive()
    }
}

/// The readiness answer: `200 ready` or `503 shutting down`.
pub(crate) fn readiness_response(method: &Method, ready: bool) -> Response<EarlyBody> {
    if ready {
        probe_response(method, StatusCode::OK, "ready\n")
    } else {
        probe_response(method, StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}

/// The liveness answer: the process is alive until it exits, draining or not.
pub(crate) fn liveness_response(method: &Method) -> Response<EarlyBody> {
    probe_response(method, StatusCode::OK, "alive\n")
}

fn probe_response(method: &Method, status: StatusCode, text: &'static str) -> Response<EarlyBody> {
    let (status, body) = match *method {
        Method::GET => (status, EarlyBody::new(Bytes::from_static(text.as_bytes()))),
        Method::HEAD => (status, EarlyBody::empty()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, EarlyBody::empty()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // A cached probe answer would hide the flip.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    } else {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

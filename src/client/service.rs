//! The service: records the body, calls the inner service, and hands the future what a retry
//! needs.

use std::error::Error;
use std::sync::Arc;

use http::Request;
use tokio::time::Instant;
use tower_service::Service;

use super::future::{Head, ResponseFuture};
use super::layer::Policy;
use super::replay::{ReplayBody, Shared};
use super::{deadline, RetryBody};

/// The service built by [`TransparentRetryLayer`](super::TransparentRetryLayer).
#[derive(Clone, Debug)]
pub struct TransparentRetry<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> TransparentRetry<S> {
    pub(crate) fn new(inner: S, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for TransparentRetry<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: Error + 'static,
    B: RetryBody,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let shared = Shared::new(body, self.policy.body_cap);
        let deadline = deadline::from_headers(&parts.headers, Instant::now);
        let head = Head::new(&parts);
        let request = Request::from_parts(parts, B::from_replay(ReplayBody::new(shared.clone())));
        // The ready service makes this attempt; its clone makes the retries (and is made
        // ready before each).
        let retries = self.inner.clone();
        let future = self.inner.call(request);
        self.policy.budget.deposit();
        ResponseFuture::new(future, retries, head, shared, deadline, self.policy.clone())
    }
}

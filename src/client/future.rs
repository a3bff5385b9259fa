//! The response future: an attempt, and while what failed proves the call unprocessed, the
//! wait for the body's release, a backoff, and the next attempt.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::layer::Policy;
use super::replay::{Released, ReplayBody, Shared};
use super::stats::GaveUp;
use super::{classify, deadline, RetryBody, RetryReason};

pin_project_lite::pin_project! {
    /// The future of [`TransparentRetry`](super::TransparentRetry): the inner service's
    /// response, or its error once the error is not retriable or the retries are used up.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S::Error>,
        retry: Retry<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        /// An attempt is in flight.
        Called { #[pin] future: F },
        /// The attempt failed unprocessed; waiting for it to let go of the body.
        Released { error: Option<E>, reason: RetryReason },
        /// Waiting out the backoff.
        Backoff { sleep: Pin<Box<Sleep>> },
        /// Waiting for the service to be ready for the next attempt.
        Ready,
    }
}

/// What a retry needs: the service, the request's head, the recorded body, the budget.
struct Retry<S, B> {
    service: S,
    head: Head,
    body: Arc<Shared<B>>,
    deadline: Option<Instant>,
    policy: Arc<Policy>,
    unsent_retries: u32,
    refused_retries: u32,
}

/// A request's head, kept to build the next attempt.
pub(crate) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
}

impl Head {
    pub(crate) fn new(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
        }
    }

    fn request<B>(&self, body: B, deadline: Option<Instant>) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        if let Some(deadline) = deadline {
            deadline::rewrite(request.headers_mut(), deadline, Instant::now());
        }
        request
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        head: Head,
        body: Arc<Shared<B>>,
        deadline: Option<Instant>,
        policy: Arc<Policy>,
    ) -> Self {
        Self {
            state: State::Called { future },
            retry: Retry {
                service,
                head,
                body,
                deadline,
                policy,
                unsent_retries: 0,
                refused_retries: 0,
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Error + 'static,
    B: RetryBody,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let retry = this.retry;
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let error = match ready!(future.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(error) => error,
                    };
                    let Some(reason) = classify(&error) else {
                        return Poll::Ready(Err(error));
                    };
                    if let Err(why) = retry.count(reason) {
                        return Poll::Ready(Err(retry.give_up(why, error)));
                    }
                    this.state.set(State::Released {
                        error: Some(error),
                        reason,
                    });
                }
                StateProj::Released { error, reason } => {
                    let released = ready!(retry.body.poll_released(cx));
                    match retry.schedule(*reason, released) {
                        Ok(None) => this.state.set(State::Ready),
                        Ok(Some(sleep)) => this.state.set(State::Backoff { sleep }),
                        Err(why) => {
                            if let Some(error) = error.take() {
                                return Poll::Ready(Err(retry.give_up(why, error)));
                            }
                            // Not reached: the error is taken only here, and returned.
                            this.state.set(State::Ready);
                        }
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    ready!(retry.service.poll_ready(cx))?;
                    let body = B::from_replay(ReplayBody::new(retry.body.clone()));
                    let request = retry.head.request(body, retry.deadline);
                    let future = retry.service.call(request);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

impl<S, B> Retry<S, B> {
    /// Counts a retry for `reason` against the call's attempts.
    fn count(&mut self, reason: RetryReason) -> Result<(), GaveUp> {
        let (used, max) = if reason.never_left_client() {
            (&mut self.unsent_retries, self.policy.max_unsent_retries)
        } else {
            (&mut self.refused_retries, self.policy.max_refused_retries)
        };
        if *used >= max {
            return Err(GaveUp::Exhausted);
        }
        *used += 1;
        Ok(())
    }

    /// Decides, once the body is back, whether and when the retry goes.
    fn schedule(
        &mut self,
        reason: RetryReason,
        released: Released,
    ) -> Result<Option<Pin<Box<Sleep>>>, GaveUp> {
        if released == Released::Committed {
            return Err(GaveUp::Committed);
        }
        if !self.policy.budget.withdraw() {
            return Err(GaveUp::OverBudget);
        }
        let retry = self.unsent_retries + self.refused_retries;
        let delay = self.policy.backoff.delay(retry, &self.policy.jitter);
        let wake = if let Some(deadline) = self.deadline {
            let wake = Instant::now() + delay;
            if wake >= deadline {
                return Err(GaveUp::PastDeadline);
            }
            Some(wake)
        } else {
            None
        };
        self.policy.stats.retried(reason);
        tracing::debug!(
            reason = reason.as_str(),
            retry,
            delay_us = delay.as_micros() as u64,
            uri = %self.head.uri,
            "transparent retry of a call the server never processed"
        );
        if delay.is_zero() {
            return Ok(None);
        }
        let wake = wake.unwrap_or_else(|| Instant::now() + delay);
        Ok(Some(Box::pin(tokio::time::sleep_until(wake))))
    }

    /// Records why a retriable error goes back to the caller, and hands it back.
    fn give_up<E: Error>(&self, why: GaveUp, error: E) -> E {
        self.policy.stats.gave_up(why);
        tracing::debug!(why = why.as_str(), %error, "transparent retry: handing the error back");
        error
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("uri", &self.retry.head.uri)
            .field("unsent_retries", &self.retry.unsent_retries)
            .field("refused_retries", &self.retry.refused_retries)
            .finish_non_exhaustive()
    }
}

//! [`Drain`]: the middleware service that counts, refuses, and answers probes.

use std::any::TypeId;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::layer::body::EarlyBody;
use crate::layer::config::{Config, Route};
use crate::layer::connection_close::is_http1;
use crate::layer::future::{Cold, ResponseFuture};
use crate::layer::probes::{liveness_response, readiness_response, ReadinessService};
use crate::layer::refused_body::Discard;
use crate::tracker::guard::InFlightGuard;
use crate::tracker::state::Admit;

/// Middleware that tracks in-flight requests and refuses new ones once admission has closed.
///
/// Built by [`DrainLayer`](crate::DrainLayer); see there for what it does.
///
/// # Readiness
///
/// `poll_ready` is always ready: probes and refusals are answered at once, even while the
/// inner service applies back-pressure (a concurrency limit held by slow requests), so a busy
/// instance still answers its liveness probe. A request for the inner service waits in its
/// [`ResponseFuture`] for the inner service to become ready, on a clone of it when the inner
/// service was not ready at `call` (the pattern tower documents for `Service::call`): hence
/// `S: Clone`.
pub struct Drain<S> {
    inner: S,
    config: Arc<Config>,
    /// The inner service said it was ready and has not been called since.
    inner_ready: bool,
    /// Every request takes `prepare`: the layer sorts requests by path, inserts the tracker
    /// extension, or wraps a probe. Decided once, when the layer is applied.
    slow: bool,
    /// The inner service is a [`ReadinessService`]: its requests pass uncounted, never refused.
    probe: bool,
}

impl<S: 'static> Drain<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        // A readiness probe the layer wraps directly (tower's `ServiceBuilder`, hyper) must
        // answer, not be counted and refused like a request: recognised here, once, by its
        // type. (axum boxes a route's service before its layers apply: see `probes.rs` for
        // what the probe answers there.)
        let probe = TypeId::of::<S>() == TypeId::of::<ReadinessService>();
        let slow = probe || config.routes_by_path || config.tracker_extension;
        Self {
            inner,
            config,
            inner_ready: false,
            slow,
            probe,
        }
    }
}

impl<S> Drain<S> {
    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Drain<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            // A clone has not been polled: its inner service's readiness is its own to find out.
            inner_ready: false,
            slow: self.slow,
            probe: self.probe,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.inner_ready {
            match self.inner.poll_ready(cx) {
                Poll::Ready(Ok(())) => self.inner_ready = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Not ready: we are anyway (see the type's docs).
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The pass-through path is small, inlines into the server and moves the request once,
        // into the inner call. Every other path leaves this function with one boxed pointer
        // (the cold state), so the future is built here by a few stores either way, not copied
        // out of a callee's return slot.
        let guard = if !self.slow && self.inner_ready {
            match self.config.tracker.admit(Admit::Request) {
                Some(guard) => Some(guard),
                None => return ResponseFuture::cold(self.config.refuse(request)),
            }
        } else {
            match self.prepare(&mut request) {
                Prepared::Call(guard) => guard,
                other => return ResponseFuture::cold(self.call_cold(request, other)),
            }
        };
        self.inner_ready = false;
        let http1 = is_http1(request.version());
        // The guard is created before the inner call, so a panic in `call` releases it too.
        ResponseFuture::inner(self.inner.call(request), guard, http1)
    }
}

/// What [`Drain::prepare`] decided for a request that is not the plain pass-through.
enum Prepared {
    /// Call the inner service now, with the request's guard if it is counted.
    Call(Option<InFlightGuard>),
    /// The inner service was not ready: the request waits for it in its future.
    WhenReady(Option<InFlightGuard>),
    /// Admission has closed.
    Refuse,
    /// A probe, answered by the layer.
    Answer(Response<EarlyBody>),
}

impl<S> Drain<S> {
    /// Every request but the plain pass-through: probes and exempt paths, the tracker extension,
    /// an inner service that was not ready. Takes the request by reference, so that a request
    /// that goes on to the inner service is not moved twice.
    #[inline(never)]
    fn prepare<B>(&mut self, request: &mut Request<B>) -> Prepared {
        let config = &*self.config;
        let tracker = &config.tracker;
        let route = if self.probe {
            Route::Exempt
        } else {
            config.route(request.uri().path())
        };
        let guard = match route {
            Route::Counted => match tracker.admit(Admit::Request) {
                Some(guard) => Some(guard),
                None => return Prepared::Refuse,
            },
            Route::Readiness => {
                return Prepared::Answer(readiness_response(request.method(), tracker.is_ready()))
            }
            Route::Liveness => return Prepared::Answer(liveness_response(request.method())),
            Route::Exempt => None,
        };
        if guard.is_some() && config.tracker_extension {
            request.extensions_mut().insert(tracker.clone());
        }
        if std::mem::take(&mut self.inner_ready) {
            Prepared::Call(guard)
        } else {
            Prepared::WhenReady(guard)
        }
    }

    /// The request does not go to the inner service now: refused, answered, or waiting for
    /// the inner service (on the service that was polled; a fresh clone takes its place here).
    #[cold]
    #[inline(never)]
    fn call_cold<B>(&mut self, request: Request<B>, prepared: Prepared) -> Pin<Box<Cold<S, B>>>
    where
        S: Service<Request<B>> + Clone,
    {
        match prepared {
            Prepared::Call(_) => unreachable!("called inline"),
            Prepared::WhenReady(guard) => {
                let http1 = is_http1(request.version());
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                Cold::when_ready(service, request, guard, http1)
            }
            Prepared::Refuse => self.config.refuse(request),
            Prepared::Answer(response) => self.config.answer(request, response),
        }
    }
}

impl Config {
    /// Refuses `request`: admission has closed.
    #[cold]
    #[inline(never)]
    fn refuse<S, B>(&self, request: Request<B>) -> Pin<Box<Cold<S, B>>>
    where
        S: Service<Request<B>>,
    {
        let response = self.rejection.response(&request);
        self.answer(request, response)
    }

    /// Answers `request` with `response` without calling the inner service, reading the
    /// request body first where the answer would otherwise be lost (see `refused_body.rs`).
    #[cold]
    fn answer<S, B>(
        &self,
        request: Request<B>,
        response: Response<EarlyBody>,
    ) -> Pin<Box<Cold<S, B>>>
    where
        S: Service<Request<B>>,
    {
        let (parts, body) = request.into_parts();
        let discard = Discard::new(
            &parts,
            body,
            self.refused_body_limit,
            self.refused_body_timeout,
        );
        Cold::early(response, discard)
    }
}

impl<S: fmt::Debug> fmt::Debug for Drain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("inner", &self.inner)
            .field("tracker", &self.config.tracker)
            .finish_non_exhaustive()
    }
}

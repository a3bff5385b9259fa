//! [`Drain`]: the middleware service that counts, refuses, and answers probes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::layer::body::EarlyBody;
use crate::layer::config::{Config, Route};
use crate::layer::connection_close::is_http1;
use crate::layer::future::ResponseFuture;
use crate::layer::probes::{liveness_response, readiness_response, ReadinessService};
use crate::layer::refused_body::Discard;
use crate::tracker::Admit;

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
    /// Every request takes `call_slow`: the layer sorts requests by path, inserts the drain
    /// signal, or wraps a probe. Decided once, when the layer is applied.
    slow: bool,
    /// The inner service is a [`ReadinessService`]: its requests pass uncounted, never refused.
    probe: bool,
}

impl<S> Drain<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        // A readiness probe wrapped by the layer (mounted before `.layer(drain)` in axum)
        // must answer, not be counted and refused like a request: recognised here, once.
        let probe = std::any::type_name::<S>() == std::any::type_name::<ReadinessService>();
        let slow = probe || config.routes_by_path || config.drain_signal;
        Self {
            inner,
            config,
            inner_ready: false,
            slow,
            probe,
        }
    }

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
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The pass-through path, kept small so that it inlines into the server and moves the
        // request once, into the inner call. Everything else is out of line.
        if self.slow || !self.inner_ready {
            return self.call_slow(request);
        }
        let config = &*self.config;
        let Some(guard) = config.tracker.shared.admit(Admit::Request) else {
            return config.refuse(request);
        };
        self.inner_ready = false;
        let http1 = is_http1(request.version());
        // The guard is created before the inner call, so a panic in `call` releases it too.
        ResponseFuture::inner(self.inner.call(request), Some(guard), http1)
    }
}

impl<S> Drain<S> {
    /// Every request but the plain pass-through: probes and exempt paths, the drain signal,
    /// an inner service that was not ready.
    #[inline(never)]
    fn call_slow<B>(&mut self, mut request: Request<B>) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>> + Clone,
        B: http_body::Body,
    {
        let config = &*self.config;
        let tracker = &config.tracker;
        let route = if self.probe {
            Route::Exempt
        } else {
            config.route(request.uri().path())
        };
        let guard = match route {
            Route::Counted => match tracker.shared.admit(Admit::Request) {
                Some(guard) => Some(guard),
                None => return config.refuse(request),
            },
            Route::Readiness => {
                let response = readiness_response(request.method(), tracker.is_ready());
                return config.answer(request, response);
            }
            Route::Liveness => {
                let response = liveness_response(request.method());
                return config.answer(request, response);
            }
            Route::Exempt => None,
        };
        if guard.is_some() && config.drain_signal {
            request.extensions_mut().insert(tracker.signal());
        }
        let http1 = is_http1(request.version());
        if !std::mem::take(&mut self.inner_ready) {
            return self.call_when_ready(request, guard, http1);
        }
        ResponseFuture::inner(self.inner.call(request), guard, http1)
    }

    /// The inner service was not ready: the request waits for it in its future, on the
    /// service that was polled (a fresh clone takes its place here).
    #[cold]
    #[inline(never)]
    fn call_when_ready<B>(
        &mut self,
        request: Request<B>,
        guard: Option<crate::InFlightGuard>,
        http1: bool,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>> + Clone,
    {
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::when_ready(service, request, guard, http1)
    }
}

impl Config {
    /// Refuses `request`: admission has closed.
    #[cold]
    #[inline(never)]
    fn refuse<S, B>(&self, request: Request<B>) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        let response = self.rejection.response(&request);
        self.answer(request, response)
    }

    /// Answers `request` with `response` without calling the inner service, reading the
    /// request body first where the answer would otherwise be lost (see `discard.rs`).
    #[cold]
    fn answer<S, B>(
        &self,
        request: Request<B>,
        response: Response<EarlyBody>,
    ) -> ResponseFuture<S, B>
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
        ResponseFuture::early(response, discard)
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

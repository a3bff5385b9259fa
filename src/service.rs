//! [`Drain`]: the middleware service that counts, refuses, and answers probes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::EarlyBody;
use crate::config::{Config, Route};
use crate::discard::Discard;
use crate::future::ResponseFuture;
use crate::keep_alive::is_http1;
use crate::readiness::{liveness_response, readiness_response};

/// Middleware that tracks in-flight requests and refuses new ones once draining.
///
/// Built by [`DrainLayer`](crate::DrainLayer); see there for what it does.
#[derive(Clone)]
pub struct Drain<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Drain<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
{
    type Response = Response<crate::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let tracker = &config.tracker;
        match config.route(request.uri().path()) {
            Route::Counted => {}
            Route::Readiness => {
                let response = readiness_response(request.method(), tracker.is_ready());
                return config.answer(request, response);
            }
            Route::Liveness => {
                let response = liveness_response(request.method());
                return config.answer(request, response);
            }
            Route::Exempt => return ResponseFuture::untracked(self.inner.call(request)),
        }
        let Some(guard) = tracker.shared.try_admit() else {
            let response = config.rejection.response(&request);
            return config.answer(request, response);
        };
        if config.drain_signal {
            request.extensions_mut().insert(tracker.signal());
        }
        let http1 = is_http1(request.version());
        // The guard is created before the inner call, so a panic in `call` releases it too.
        ResponseFuture::tracked(self.inner.call(request), guard, http1)
    }
}

impl Config {
    /// Answers `request` with `response` without calling the inner service, reading the
    /// request body first where the answer would otherwise be lost (see `discard.rs`).
    #[cold]
    fn answer<F, B>(
        &self,
        request: Request<B>,
        response: Response<EarlyBody>,
    ) -> ResponseFuture<F, B> {
        let (parts, body) = request.into_parts();
        let discard = Discard::new(&parts, body, self.refused_body_limit);
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

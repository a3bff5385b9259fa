//! [`Leave`]: the service of one connection. It remembers the request the connection is
//! serving (so a cut connection can be named), and tells an HTTP/1.x client to leave with
//! `Connection: close` once its connection must (the shutdown was announced, or the
//! connection is too old), the only way HTTP/1.x has to say goodbye without racing the
//! client's next request. The announce is read here, as each response is ready, not from the
//! connection's task: a request that arrives with the announce gets it too.
//!
//! Per request: the head written to the connection's slot (no lock, no allocation), one
//! relaxed load (and one store, on the first request), and for HTTP/1.x two loads when the
//! response is ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use pin_project_lite::pin_project;

use super::protocol::Protocol;
use super::state::ConnState;
use crate::layer::connection_close::close_connection;

/// The connection's service, as hyper calls it: the app's, through hyper-util's adapter (as
/// `axum::serve` runs it), with the head recorded first and the goodbye put on last. A hyper
/// service, not a tower one around the app's: the adapter's per-request state then holds the
/// app's service and future alone, as under `axum::serve`.
pub(super) struct Leave<S> {
    inner: TowerToHyperService<S>,
    state: Arc<ConnState>,
}

impl<S> Leave<S> {
    pub(super) fn new(inner: S, state: Arc<ConnState>) -> Self {
        Self {
            inner: TowerToHyperService::new(inner),
            state,
        }
    }
}

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for Leave<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LeaveFuture<TowerToHyperServiceFuture<S, Request<ReqBody>>>;

    fn call(&self, request: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        state
            .guard
            .record()
            .request(request.version(), request.method(), request.uri());
        // A plain load first: after the connection's first request this is a read only.
        if !state.had_request.load(Ordering::Relaxed) {
            state.had_request.store(true, Ordering::Relaxed);
        }
        let state = (state.protocol == Protocol::Http1).then(|| Arc::clone(state));
        LeaveFuture {
            future: self.inner.call(request),
            state,
        }
    }
}

pin_project! {
    pub(super) struct LeaveFuture<F> {
        #[pin]
        future: F,
        // HTTP/1.x connections only: decides `Connection: close` when the response is ready.
        state: Option<Arc<ConnState>>,
    }
}

impl<F, B, E> Future for LeaveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        let mut response = ready!(me.future.poll(cx))?;
        if let Some(state) = me.state.take() {
            if state.must_leave() {
                close_connection(&mut response);
                state.guard.told_to_leave();
            }
        }
        Poll::Ready(Ok(response))
    }
}

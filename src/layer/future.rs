//! [`ResponseFuture`]: holds the guard while the inner service works, then hands it to the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::layer::body::{EarlyBody, ResponseBody};
use crate::layer::connection_close::close_connection;
use crate::layer::refused_body::Discard;
use crate::tracker::guard::InFlightGuard;

pin_project! {
    /// Response future of [`Drain`](crate::Drain).
    ///
    /// Dropping it before it completes (the client went away, a timeout fired, the handler
    /// panicked) releases the request's count.
    ///
    /// `B` is the request body: kept, and read to its end, only when the layer answers the
    /// request itself (see [`DrainLayer::refused_body_limit`](crate::DrainLayer::refused_body_limit)).
    #[must_use = "futures do nothing unless polled"]
    #[project = Proj]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        // The inner service's future: the hot path. `None` while the request waits for the
        // inner service, or when the layer answers itself.
        #[pin]
        future: Option<S::Future>,
        // Held only for its `Drop` until the response exists, then moved into the body.
        guard: Option<InFlightGuard>,
        http1: bool,
        // The cold states, boxed so that they do not make every request's future larger.
        cold: Option<Pin<Box<Cold<S, B>>>>,
    }
}

pin_project! {
    #[project = ColdProj]
    enum Cold<S, B> {
        // A request waiting for the inner service to become ready.
        WhenReady {
            service: S,
            request: Option<Request<B>>,
        },
        // The layer's own answer, sent once the request body has been read (`discard.rs`).
        Early {
            #[pin]
            discard: Discard<B>,
            response: Option<Response<EarlyBody>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn inner(future: S::Future, guard: Option<InFlightGuard>, http1: bool) -> Self {
        Self {
            future: Some(future),
            guard,
            http1,
            cold: None,
        }
    }

    pub(crate) fn when_ready(
        service: S,
        request: Request<B>,
        guard: Option<InFlightGuard>,
        http1: bool,
    ) -> Self {
        Self {
            future: None,
            guard,
            http1,
            cold: Some(Box::pin(Cold::WhenReady {
                service,
                request: Some(request),
            })),
        }
    }

    pub(crate) fn early(response: Response<EarlyBody>, discard: Discard<B>) -> Self {
        Self {
            future: None,
            guard: None,
            http1: false,
            cold: Some(Box::pin(Cold::Early {
                discard,
                response: Some(response),
            })),
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut me = self.project();
        let Some(future) = me.future.as_mut().as_pin_mut() else {
            return poll_cold(me, cx);
        };
        let result = ready!(future.poll(cx));
        let guard = me.guard.take();
        // On error the guard is released here: there is no body to carry it.
        let mut response = result?;
        if *me.http1 && guard.as_ref().is_some_and(|g| !g.shared().is_ready()) {
            close_connection(&mut response);
        }
        Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, guard))))
    }
}

/// The cold states: waiting for the inner service (then calling it and polling its future),
/// or the layer's own answer once the request body has been read.
#[cold]
#[inline(never)]
fn poll_cold<S, B, ResBody>(
    mut me: Proj<'_, S, B>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResponseBody<ResBody>>, S::Error>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body,
{
    let cold = me
        .cold
        .as_mut()
        .expect("ResponseFuture polled after completion");
    match cold.as_mut().project() {
        ColdProj::WhenReady { service, request } => {
            // On error the guard is released with the future: nothing was processed.
            ready!(service.poll_ready(cx))?;
            let request = request
                .take()
                .expect("ResponseFuture polled after completion");
            me.future.set(Some(service.call(request)));
            *me.cold = None;
            let future = me.future.as_mut().as_pin_mut().expect("just set");
            let result = ready!(future.poll(cx));
            let guard = me.guard.take();
            let mut response = result?;
            if *me.http1 && guard.as_ref().is_some_and(|g| !g.shared().is_ready()) {
                close_connection(&mut response);
            }
            Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, guard))))
        }
        ColdProj::Early { discard, response } => {
            ready!(discard.poll_discard(cx));
            let response = response
                .take()
                .expect("ResponseFuture polled after completion");
            Poll::Ready(Ok(response.map(ResponseBody::early)))
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match (&self.cold, &self.guard) {
            (None, None) => "untracked",
            (None, Some(_)) => "tracked",
            (Some(cold), _) => match cold.as_ref().get_ref() {
                Cold::WhenReady { .. } => "waiting for the inner service",
                Cold::Early { .. } => "early",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

//! [`ResponseFuture`]: holds the guard while the inner service works, then hands it to the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::{EarlyBody, ResponseBody};
use crate::discard::Discard;
use crate::guard::InFlightGuard;
use crate::keep_alive::close_connection;

pin_project! {
    /// Response future of [`Drain`](crate::Drain).
    ///
    /// Dropping it before it completes (the client went away, a timeout fired, the handler
    /// panicked) releases the request's count.
    ///
    /// `B` is the request body: kept, and read to its end, only when the layer answers the
    /// request itself (see [`DrainLayer::refused_body_limit`](crate::DrainLayer::refused_body_limit)).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // The hot path: the inner service's future, and the guard (`None` for exempt paths).
        Inner {
            #[pin]
            future: S::Future,
            // Held only for its `Drop` until the response exists, then moved into the body.
            guard: Option<InFlightGuard>,
            http1: bool,
        },
        // The cold states are boxed, so that they do not make every request's future larger.
        WhenReady {
            waiting: Box<WhenReady<S, B>>,
        },
        Early {
            early: Pin<Box<Early<B>>>,
        },
    }
}

/// A request waiting for the inner service to become ready.
struct WhenReady<S, B> {
    service: S,
    request: Option<Request<B>>,
    // Held only for its `Drop`: the request counts while it waits.
    guard: Option<InFlightGuard>,
    http1: bool,
}

pin_project! {
    /// The layer's own answer, sent once the request body has been read (see `discard.rs`).
    struct Early<B> {
        #[pin]
        discard: Discard<B>,
        response: Option<Response<EarlyBody>>,
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(future: S::Future, guard: Option<InFlightGuard>, http1: bool) -> Self {
        Self {
            state: State::Inner {
                future,
                guard,
                http1,
            },
        }
    }

    pub(crate) fn when_ready(
        service: S,
        request: Request<B>,
        guard: Option<InFlightGuard>,
        http1: bool,
    ) -> Self {
        Self {
            state: State::WhenReady {
                waiting: Box::new(WhenReady {
                    service,
                    request: Some(request),
                    guard,
                    http1,
                }),
            },
        }
    }

    pub(crate) fn early(response: Response<EarlyBody>, discard: Discard<B>) -> Self {
        Self {
            state: State::Early {
                early: Box::pin(Early {
                    discard,
                    response: Some(response),
                }),
            },
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
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.as_mut().project().state;
        let (future, guard, http1) = match state.as_mut().project() {
            StateProj::Inner {
                future,
                guard,
                http1,
            } => (future, guard, http1),
            StateProj::WhenReady { waiting } => {
                let future = ready!(poll_when_ready(waiting, cx))?;
                state.set(future);
                return self.poll(cx);
            }
            StateProj::Early { early } => return poll_early(early, cx),
        };
        let result = ready!(future.poll(cx));
        let guard = guard.take();
        // On error the guard is released here: there is no body to carry it.
        let mut response = result?;
        if *http1 && guard.as_ref().is_some_and(|g| !g.shared().is_ready()) {
            close_connection(&mut response);
        }
        Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, guard))))
    }
}

/// Waits for the inner service, then calls it: returns the state that polls its future.
#[cold]
#[inline(never)]
fn poll_when_ready<S, B>(
    waiting: &mut WhenReady<S, B>,
    cx: &mut Context<'_>,
) -> Poll<Result<State<S, B>, S::Error>>
where
    S: Service<Request<B>>,
{
    // On error the guard is released with the box: nothing was processed.
    ready!(waiting.service.poll_ready(cx))?;
    let request = waiting
        .request
        .take()
        .expect("ResponseFuture polled after completion");
    let future = waiting.service.call(request);
    Poll::Ready(Ok(State::Inner {
        future,
        guard: waiting.guard.take(),
        http1: waiting.http1,
    }))
}

/// The layer's own answer, once the request body has been read.
#[cold]
#[inline(never)]
fn poll_early<B, ResBody, E>(
    early: &mut Pin<Box<Early<B>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResponseBody<ResBody>>, E>>
where
    B: http_body::Body,
{
    let early = early.as_mut().project();
    ready!(early.discard.poll_discard(cx));
    let response = early
        .response
        .take()
        .expect("ResponseFuture polled after completion");
    Poll::Ready(Ok(response.map(ResponseBody::early)))
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner { guard: None, .. } => "untracked",
            State::Inner { .. } => "tracked",
            State::WhenReady { .. } => "waiting for the inner service",
            State::Early { .. } => "early",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

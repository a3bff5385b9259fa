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
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        // The hot path: the inner service's future, laid out as tower-http's
        // `InFlightRequests` future is.
        Inner {
            #[pin]
            future: S::Future,
            // Held only for its `Drop` until the response exists, then moved into the body.
            guard: Option<InFlightGuard>,
            http1: bool,
        },
        // Boxed, so that the rare states do not make every request's future larger.
        Cold {
            cold: Pin<Box<Cold<S, B>>>,
        },
    }
}

pin_project! {
    /// The states of a request that is not the plain pass-through.
    #[project = ColdProj]
    pub(crate) enum Cold<S, B> {
        // A request waiting for the inner service to become ready.
        WhenReady {
            service: S,
            request: Option<Request<B>>,
            // Held only for its `Drop` until the inner future exists.
            guard: Option<InFlightGuard>,
            http1: bool,
        },
        // The layer's own answer, sent once the request body has been read (`refused_body.rs`).
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
            kind: Kind::Inner {
                future,
                guard,
                http1,
            },
        }
    }

    #[inline]
    pub(crate) fn cold(cold: Pin<Box<Cold<S, B>>>) -> Self {
        Self {
            kind: Kind::Cold { cold },
        }
    }
}

impl<S, B> Cold<S, B> {
    pub(crate) fn when_ready(
        service: S,
        request: Request<B>,
        guard: Option<InFlightGuard>,
        http1: bool,
    ) -> Pin<Box<Self>> {
        Box::pin(Cold::WhenReady {
            service,
            request: Some(request),
            guard,
            http1,
        })
    }

    pub(crate) fn early(response: Response<EarlyBody>, discard: Discard<B>) -> Pin<Box<Self>> {
        Box::pin(Cold::Early {
            discard,
            response: Some(response),
        })
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
        // Every response but the pass-through one leaves through one door, the labelled
        // block's value, and the pass-through response is never lent to a call: the compiler
        // then moves it once, from the inner future into the caller's response. Returning the
        // cold results from where they are produced adds copies to the pass-through path:
        // `scripts/callgrind.sh` before and after tells whether a change here costs.
        let cold: Result<Response<ResponseBody<ResBody>>, S::Error> = 'cold: {
            if let KindProj::Cold { .. } = self.as_mut().project().kind.project() {
                if let Some(early) = ready!(poll_cold(self.as_mut(), cx)) {
                    break 'cold early;
                }
            }
            let KindProj::Inner {
                future,
                guard,
                http1,
            } = self.as_mut().project().kind.project()
            else {
                unreachable!("poll_cold leaves the future on the pass-through path");
            };
            // Readiness first, and `&`, not `&&`: one branch fewer on the pass-through path.
            if guard
                .as_ref()
                .is_some_and(|g| !g.shared().is_ready() & *http1)
            {
                break 'cold ready!(poll_closing(self, cx));
            }
            let result = ready!(future.poll(cx));
            let guard = guard.take();
            // On error the guard is released here: there is no body to carry it.
            let response = result?;
            return Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, guard))));
        };
        Poll::Ready(cold)
    }
}

/// Shutdown has been announced and the connection is HTTP/1.x: the inner future is polled
/// here, out of line, and its response gets `Connection: close`. Readiness is read at each
/// poll, just before the inner future is polled.
#[cold]
#[inline(never)]
#[allow(clippy::type_complexity)]
fn poll_closing<S, B, ResBody>(
    future: Pin<&mut ResponseFuture<S, B>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResponseBody<ResBody>>, S::Error>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    let KindProj::Inner { future, guard, .. } = future.project().kind.project() else {
        unreachable!("only the pass-through path closes");
    };
    let result = ready!(future.poll(cx));
    let guard = guard.take();
    Poll::Ready(result.map(|mut response| {
        close_connection(&mut response);
        response.map(|body| ResponseBody::inner(body, guard))
    }))
}

/// The cold states: waiting for the inner service (then the pass-through path takes over),
/// or the layer's own answer once the request body has been read.
#[cold]
#[inline(never)]
#[allow(clippy::type_complexity)]
fn poll_cold<S, B, ResBody>(
    mut future: Pin<&mut ResponseFuture<S, B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Response<ResponseBody<ResBody>>, S::Error>>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body,
{
    let KindProj::Cold { cold } = future.as_mut().project().kind.project() else {
        unreachable!("only the cold states are polled here");
    };
    match cold.as_mut().project() {
        ColdProj::WhenReady {
            service,
            request,
            guard,
            http1,
        } => {
            // On error the guard is released with the future: nothing was processed.
            if let Err(e) = ready!(service.poll_ready(cx)) {
                return Poll::Ready(Some(Err(e)));
            }
            let request = request
                .take()
                .expect("ResponseFuture polled after completion");
            let inner = Kind::Inner {
                future: service.call(request),
                guard: guard.take(),
                http1: *http1,
            };
            // The service (a clone made for this request) goes; the pass-through path takes
            // over, in this poll and the next ones.
            future.as_mut().project().kind.set(inner);
            Poll::Ready(None)
        }
        ColdProj::Early { discard, response } => {
            ready!(discard.poll_discard(cx));
            let response = response
                .take()
                .expect("ResponseFuture polled after completion");
            Poll::Ready(Some(Ok(response.map(ResponseBody::early))))
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Inner { guard: None, .. } => "untracked",
            Kind::Inner { guard: Some(_), .. } => "tracked",
            Kind::Cold { cold } => match cold.as_ref().get_ref() {
                Cold::WhenReady { .. } => "waiting for the inner service",
                Cold::Early { .. } => "early",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

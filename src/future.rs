//! [`ResponseFuture`]: holds the guard while the inner service works, then hands it to the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

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
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Tracked {
            #[pin]
            future: F,
            // Held only for its `Drop` until the response exists, then moved into the body.
            guard: Option<InFlightGuard>,
            http1: bool,
        },
        Untracked {
            #[pin]
            future: F,
        },
        Early {
            // The request's body, read and thrown away before the answer goes out.
            #[pin]
            discard: Discard<B>,
            response: Option<Response<EarlyBody>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn tracked(future: F, guard: InFlightGuard, http1: bool) -> Self {
        Self {
            state: State::Tracked {
                future,
                guard: Some(guard),
                http1,
            },
        }
    }

    pub(crate) fn untracked(future: F) -> Self {
        Self {
            state: State::Untracked { future },
        }
    }

    pub(crate) fn early(response: Response<EarlyBody>, discard: Discard<B>) -> Self {
        Self {
            state: State::Early {
                discard,
                response: Some(response),
            },
        }
    }
}

impl<F, B, ResBody, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Tracked {
                future,
                guard,
                http1,
            } => {
                let result = ready!(future.poll(cx));
                let guard = guard.take();
                // On error the guard is released here: there is no body to carry it.
                let mut response = result?;
                if *http1 && guard.as_ref().is_some_and(|g| !g.shared().is_ready()) {
                    close_connection(&mut response);
                }
                Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, guard))))
            }
            StateProj::Untracked { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(|body| ResponseBody::inner(body, None))))
            }
            StateProj::Early { discard, response } => {
                ready!(discard.poll_discard(cx));
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::early)))
            }
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Tracked { .. } => "tracked",
            State::Untracked { .. } => "untracked",
            State::Early { .. } => "early",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

//! [`ResponseBody`]: carries the in-flight guard until the body ends; [`EarlyBody`] for the
//! responses the layer answers itself.

use std::fmt;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::tracker::guard::InFlightGuard;

pin_project! {
    /// Response body of [`Drain`](crate::Drain).
    ///
    /// For an admitted request it wraps the inner service's body and holds the request's
    /// [`InFlightGuard`]: the request counts as in flight until the body yields its last
    /// frame, fails, or is dropped. For a response the layer produced itself (a `503`, a gRPC
    /// `UNAVAILABLE`, a probe) it holds a small complete body.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            // Held only for its `Drop`, which releases the request's count.
            guard: Option<InFlightGuard>,
        },
        Early {
            body: EarlyBody,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B, guard: Option<InFlightGuard>) -> Self {
        Self {
            kind: Kind::Inner { body, guard },
        }
    }

    pub(crate) fn early(body: EarlyBody) -> Self {
        Self {
            kind: Kind::Early { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, guard } => {
                // Returned as it came (moving a frame through locals costs copies). Not dropped
                // if the code below panics (`is_end_stream`, or a waker woken by the release):
                // the frame leaks instead. The code to drop it there would keep every frame in
                // memory (`scripts/callgrind.sh` shows the cost: run it before and after a change
                // here).
                let poll = ManuallyDrop::new(body.as_mut().poll_frame(cx));
                // The request is over when the body ends, fails, or says nothing follows;
                // release at once rather than when the server gets round to dropping the body.
                // Nothing to decide once released (the frames after the last, an uncounted
                // request).
                if guard.is_some() {
                    let finished = match &*poll {
                        Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                        Poll::Ready(None | Some(Err(_))) => true,
                        Poll::Pending => false,
                    };
                    if finished {
                        drop(guard.take());
                    }
                }
                ManuallyDrop::into_inner(poll)
            }
            KindProj::Early { body } => {
                Poll::Ready(body.take().map(|data| Ok(Frame::data(data.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Early { body } => body.data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Early { body } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B>
where
    B: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body, guard } => f
                .debug_struct("ResponseBody")
                .field("inner", body)
                .field("counted", &guard.is_some())
                .finish(),
            Kind::Early { body } => f.debug_struct("ResponseBody").field("early", body).finish(),
        }
    }
}

/// A complete, in-memory body: the `503` page, the gRPC trailers-only reply, probe answers.
///
/// This is the body of [`ReadinessService`](crate::ReadinessService) responses.
#[derive(Clone, Debug, Default)]
pub struct EarlyBody {
    /// `None` once yielded, or when empty.
    data: Option<Bytes>,
}

impl EarlyBody {
    pub(crate) fn new(data: Bytes) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub(crate) fn empty() -> Self {
        Self { data: None }
    }

    fn take(&mut self) -> Option<Bytes> {
        self.data.take()
    }
}

impl Body for EarlyBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

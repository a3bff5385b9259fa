//! The trivial inner service the cost measurements wrap (`benches/drain.rs`,
//! `benches/instructions.rs`, `tests/no_alloc.rs`), and a waker that does nothing, so
//! futures can be polled by hand without a runtime.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use tower::Service;

/// The request type of these measurements: no body, as a GET.
pub type Req = Request<Empty<Bytes>>;

/// A `GET /` with an empty body.
#[inline]
pub fn request() -> Req {
    Request::new(Empty::new())
}

/// A trivial inner service: a small full body, answered at once, no allocation of its own.
#[derive(Clone, Copy, Debug)]
pub struct Hello;

impl Service<Request<Empty<Bytes>>> for Hello {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, _request: Request<Empty<Bytes>>) -> Self::Future {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello\n")))))
    }
}

struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// A waker that does nothing (`Waker::noop` needs Rust 1.85; the crate supports 1.75).
pub fn noop_waker() -> Waker {
    Waker::from(Arc::new(NoopWake))
}

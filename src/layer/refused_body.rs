//! Reading and discarding the body of a request the layer answers itself, so that its answer
//! reaches an HTTP/1.x client.
//!
//! When a service answers without reading the request body, hyper closes the HTTP/1.x
//! connection after the response with the rest of the upload still unread. Closing a socket
//! with unread data makes the kernel send a TCP reset, which can reach the client before it
//! has read the `503`: the client then sees a broken pipe or a reset, and cannot tell that its
//! request was not processed. Reading the body to its end (within a byte budget and a time
//! limit) first lets the connection close cleanly after the response.
//!
//! The time limit matters during a drain: a client that stalls in the middle of a refused
//! upload would otherwise hold the connection, and with it the server's graceful shutdown,
//! open for as long as it likes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf as _;
use http::header::{CONTENT_LENGTH, EXPECT};
use http::request::Parts;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::layer::connection_close::is_http1;

pin_project! {
    /// A request body to read to its end and throw away, at most `budget` more bytes of it
    /// and for at most `timeout`.
    pub(crate) struct Discard<B> {
        #[pin]
        body: B,
        budget: u64,
        timeout: Duration,
        // Armed the first time the body is not ready at once.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<B> Discard<B> {
    /// Decides how much of `body` to read before answering the request described by `parts`:
    ///
    /// * HTTP/2 and HTTP/3 reset only the stream, so nothing needs reading there.
    /// * `Expect: 100-continue`: the client waits for our go-ahead before sending the body, so
    ///   reading it would only make it upload what we refuse; nothing is unread.
    /// * A declared `Content-Length` above `limit`: not worth reading; the connection closes
    ///   with the body unread.
    /// * A zero `timeout`: reading is off.
    pub(crate) fn new(parts: &Parts, body: B, limit: u64, timeout: Duration) -> Self {
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let worth_reading = is_http1(parts.version)
            && !timeout.is_zero()
            && !parts.headers.contains_key(EXPECT)
            && declared.map_or(true, |len| len <= limit);
        Self {
            body,
            budget: if worth_reading { limit } else { 0 },
            timeout,
            deadline: None,
        }
    }
}

impl<B: Body> Discard<B> {
    /// Reads until the body ends, fails, the budget is spent or the time is up.
    pub(crate) fn poll_discard(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut me = self.project();
        while *me.budget > 0 && !me.body.is_end_stream() {
            match me.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let len = frame.data_ref().map_or(0, |d| d.remaining() as u64);
                    *me.budget = me.budget.saturating_sub(len);
                }
                Poll::Ready(None | Some(Err(_))) => break,
                Poll::Pending => {
                    let timeout = *me.timeout;
                    let deadline = me
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        *me.budget = 0;
        Poll::Ready(())
    }
}

//! The request body, recorded while it is sent so that an unprocessed call can send it again.
//!
//! Prior art: linkerd2-proxy's `ReplayBody` (`linkerd/http/retry`). One record is shared by
//! every attempt of a call; the attempt whose body is being sent holds it, and gives it back
//! when its body is dropped. Data frames are kept (as `Bytes`, which clone without copying)
//! up to a cap; past the cap the record is dropped and the call can no longer be retried.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// A request body replayed from a record, then continued from the caller's body.
///
/// What [`TransparentRetry`](super::TransparentRetry) hands its inner service, wrapped in
/// the inner service's own body type by [`RetryBody`](super::RetryBody).
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    /// The record, while this attempt holds it.
    record: Option<Record<B>>,
    /// How many recorded data frames this attempt has sent.
    replayed: usize,
    trailers_sent: bool,
}

/// What the attempts share: the record when no attempt holds it, and who waits for it.
pub(crate) struct Shared<B> {
    slot: Mutex<Slot<B>>,
}

struct Slot<B> {
    record: Option<Record<B>>,
    waiting: Option<Waker>,
}

struct Record<B> {
    /// The caller's body, until it has ended.
    body: Option<B>,
    frames: Vec<Bytes>,
    len: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
    /// The data went past the cap (the frames were dropped) or the caller's body failed.
    unreplayable: bool,
}

/// Whether a call's body can be sent again, once the last attempt has let go of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Released {
    Replayable,
    Committed,
}

impl<B> Shared<B> {
    pub(crate) fn new(body: B, cap: usize) -> Arc<Self> {
        let record = Record {
            body: Some(body),
            frames: Vec::new(),
            len: 0,
            cap,
            trailers: None,
            unreplayable: false,
        };
        Arc::new(Self {
            slot: Mutex::new(Slot {
                record: Some(record),
                waiting: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot<B>> {
        // Nothing panics while holding the lock; a poisoned slot is still consistent.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ready once no attempt holds the record: the previous attempt's body has been dropped.
    pub(crate) fn poll_released(&self, cx: &mut Context<'_>) -> Poll<Released> {
        let mut slot = self.lock();
        match &slot.record {
            Some(record) if record.unreplayable => Poll::Ready(Released::Committed),
            Some(_) => Poll::Ready(Released::Replayable),
            None => {
                slot.waiting = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Whether the record was already given up (over the cap, or the body failed).
    #[cfg(test)]
    pub(crate) fn committed(&self) -> bool {
        self.lock().record.as_ref().is_some_and(|r| r.unreplayable)
    }
}

impl<B> ReplayBody<B> {
    pub(crate) fn new(shared: Arc<Shared<B>>) -> Self {
        Self {
            shared,
            record: None,
            replayed: 0,
            trailers_sent: false,
        }
    }

    /// Reads the record without taking it (for `&self` methods).
    fn peek<R>(&self, read: impl FnOnce(&Record<B>) -> R) -> Option<R> {
        match &self.record {
            Some(record) => Some(read(record)),
            None => self.shared.lock().record.as_ref().map(read),
        }
    }
}

/// Takes the record from the slot into `held` if this attempt does not hold it yet.
fn acquire<'a, B>(
    held: &'a mut Option<Record<B>>,
    shared: &Shared<B>,
    cx: &mut Context<'_>,
) -> Poll<&'a mut Record<B>> {
    if held.is_none() {
        let mut slot = shared.lock();
        match slot.record.take() {
            Some(record) => *held = Some(record),
            None => {
                // Another attempt still holds it; its drop wakes us. (The retry waits for
                // the release, so only a caller polling two attempts gets here.)
                slot.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    }
    match held.as_mut() {
        Some(record) => Poll::Ready(record),
        None => Poll::Pending,
    }
}

impl<B> Record<B> {
    fn keep(&mut self, data: &Bytes) {
        if self.unreplayable {
            return;
        }
        if self.len + data.len() > self.cap {
            self.unreplayable = true;
            self.frames = Vec::new();
            return;
        }
        self.len += data.len();
        self.frames.push(data.clone());
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let replayed = this.replayed;
        let record = std::task::ready!(acquire(&mut this.record, &this.shared, cx));
        if !record.unreplayable && replayed < record.frames.len() {
            let data = record.frames[replayed].clone();
            this.replayed += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(body) = record.body.as_mut() else {
            // The caller's body has ended: its trailers, if any, then the end.
            let trailers = (!this.trailers_sent)
                .then(|| record.trailers.clone())
                .flatten();
            this.trailers_sent = true;
            return Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers))));
        };
        match std::task::ready!(Pin::new(body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    record.keep(data);
                    this.replayed = record.frames.len();
                } else if let Some(trailers) = frame.trailers_ref() {
                    record.trailers = Some(trailers.clone());
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                record.unreplayable = true;
                Poll::Ready(Some(Err(error)))
            }
            None => {
                record.body = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let (replayed, trailers_sent) = (self.replayed, self.trailers_sent);
        self.peek(|record| {
            let frames_left = !record.unreplayable && replayed < record.frames.len();
            let trailers_left = record.trailers.is_some() && !trailers_sent;
            let body_done = record.body.as_ref().map_or(true, Body::is_end_stream);
            !frames_left && !trailers_left && body_done
        })
        .unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        let replayed = self.replayed;
        self.peek(|record| {
            let left: usize = record.frames.iter().skip(replayed).map(Bytes::len).sum();
            let mut hint = record
                .body
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
            let left = left as u64;
            // The upper bound first: `set_lower` asserts the lower one stays below it.
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(left));
            }
            hint.set_lower(hint.lower().saturating_add(left));
            hint
        })
        .unwrap_or_default()
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let waiting = {
                let mut slot = self.shared.lock();
                slot.record = Some(record);
                slot.waiting.take()
            };
            if let Some(waker) = waiting {
                waker.wake();
            }
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

impl<B> fmt::Debug for Shared<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Moves the record out of a slot for the tests' inspection.
#[cfg(test)]
pub(crate) fn recorded_len<B>(shared: &Shared<B>) -> Option<usize> {
    shared.lock().record.as_ref().map(|r| r.len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn a_second_attempt_sends_the_same_frames_and_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let shared = Shared::new(StreamBody::new(futures_util::stream::iter(frames)), 1024);
        let first = ReplayBody::new(shared.clone()).collect().await.unwrap();
        let second = ReplayBody::new(shared.clone()).collect().await.unwrap();
        assert_eq!(first.trailers(), Some(&trailers));
        assert_eq!(second.trailers(), Some(&trailers));
        assert_eq!(second.to_bytes(), Bytes::from_static(b"abcd"));
        assert_eq!(recorded_len(&shared), Some(4));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_committed() {
        let shared = Shared::new(Full::new(Bytes::from_static(b"12345")), 4);
        let sent = ReplayBody::new(shared.clone()).collect().await.unwrap();
        assert_eq!(sent.to_bytes(), Bytes::from_static(b"12345"));
        assert!(shared.committed());
    }

    #[tokio::test]
    async fn an_attempt_that_never_polled_leaves_the_body_whole() {
        let shared = Shared::new(Full::new(Bytes::from_static(b"x")), 4);
        drop(ReplayBody::new(shared.clone()));
        let sent = ReplayBody::new(shared.clone()).collect().await.unwrap();
        assert_eq!(sent.to_bytes(), Bytes::from_static(b"x"));
    }

    #[test]
    fn a_replay_hints_the_recorded_bytes_plus_what_is_left() {
        let shared = Shared::new(Full::new(Bytes::from_static(b"abc")), 4);
        assert_eq!(ReplayBody::new(shared.clone()).size_hint().exact(), Some(3));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut first = ReplayBody::new(shared.clone());
        assert!(Pin::new(&mut first).poll_frame(&mut cx).is_ready());
        drop(first);
        let second = ReplayBody::new(shared);
        assert_eq!(second.size_hint().exact(), Some(3));
        assert!(!second.is_end_stream());
    }

    #[test]
    fn the_record_is_released_only_when_the_holder_drops() {
        let shared = Shared::new(Full::new(Bytes::from_static(b"x")), 4);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut body = ReplayBody::new(shared.clone());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
        assert!(shared.poll_released(&mut cx).is_pending());
        drop(body);
        assert_eq!(
            shared.poll_released(&mut cx),
            Poll::Ready(Released::Replayable)
        );
    }
}

//! A write that meets a reset connection waits for the reads to deliver what the server sent.
//!
//! A server that shuts down gracefully sends `GOAWAY` (its last stream, `NO_ERROR`) and
//! closes; if the client is still writing, or a balancer resets the connection, the client's
//! next write fails (`EPIPE`, `ECONNRESET`) while the `GOAWAY` already waits in its receive
//! buffer. h2 writes after it reads but does not read again after a write error: it fails every
//! stream with the I/O error, and the streams above the last one, which the server did not
//! process, can no longer be told from those it did. grpc-go's transport does what
//! [`DeferredReset`] does: the write is reported done (the bytes are dropped; the connection
//! is gone), and the error comes back only once the reads have ended, after h2 has read the
//! `GOAWAY` and the answers before it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// The inner I/O, with a write that met a reset held back until the reads end.
#[derive(Debug)]
pub(crate) struct DeferredReset<T> {
    inner: T,
    /// Whether write errors are deferred: not while [`PrefaceGated`](super::PrefaceGated)
    /// holds stream frames back, where a reset must fail the connection at once as closed
    /// before the preface (deferred, the stream frames written after it would be dropped
    /// unsent and then fail with an I/O error that is not retried).
    armed: bool,
    /// The kind of the first write error that meant the server is gone; from then on, the
    /// inner I/O is not written to.
    reset: Option<io::ErrorKind>,
    /// Set when a read after the reset returns end of file or an error: nothing more will
    /// come. (Reads before the reset are not watched, so as not to copy them; a reset
    /// connection reports its end again to the next read, and h2 reads before it writes.)
    read_ended: bool,
}

impl<T> DeferredReset<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            armed: false,
            reset: None,
            read_ended: false,
        }
    }

    /// From now on, a write that meets a reset is deferred.
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    /// What a write that met `error` returns: `Ok(len)` while the reads may still deliver the
    /// server's last frames, the error once they cannot.
    fn defer(&mut self, error: io::Error, len: usize) -> io::Result<usize> {
        if !self.armed || self.read_ended || !is_reset(&error) {
            return Err(error);
        }
        self.reset = Some(error.kind());
        Ok(len)
    }

    /// The result of a write after the reset: done while the reads go on, the reset once they
    /// have ended (so that a writer that keeps writing cannot spin).
    fn after_reset(&self, kind: io::ErrorKind, len: usize) -> io::Result<usize> {
        if self.read_ended {
            Err(kind.into())
        } else {
            Ok(len)
        }
    }
}

/// Write errors that mean the peer (or a balancer between) reset or closed the connection:
/// what it sent before can still be read.
fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// How much one read after a reset copies at most.
const AFTER_RESET_READ: usize = 8 * 1024;

impl<T: Read + Unpin> Read for DeferredReset<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // After a reset, through a copy, to see the end of the reads (the cursor cannot be
        // reborrowed). A connection reads little more than the frames already received.
        let mut bytes = [0; AFTER_RESET_READ];
        let room = buf.remaining().min(AFTER_RESET_READ);
        let mut copy = ReadBuf::new(&mut bytes[..room]);
        let read = ready!(Pin::new(&mut this.inner).poll_read(cx, copy.unfilled()));
        if read.is_err() || (room > 0 && copy.filled().is_empty()) {
            this.read_ended = true;
        }
        buf.put_slice(copy.filled());
        Poll::Ready(read)
    }
}

impl<T: Write + Unpin> Write for DeferredReset<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(kind) = this.reset {
            return Poll::Ready(this.after_reset(kind, buf.len()));
        }
        match ready!(Pin::new(&mut this.inner).poll_write(cx, buf)) {
            Err(error) => Poll::Ready(this.defer(error, buf.len())),
            written => Poll::Ready(written),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(kind) = this.reset {
            return Poll::Ready(this.after_reset(kind, 0).map(drop));
        }
        match ready!(Pin::new(&mut this.inner).poll_flush(cx)) {
            Err(error) => Poll::Ready(this.defer(error, 0).map(drop)),
            flushed => Poll::Ready(flushed),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.is_some() {
            // Nothing left to close: the connection is gone.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    async fn write(io: &mut DeferredReset<TokioIo<tokio::io::DuplexStream>>) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, b"frame")).await
    }

    async fn read(io: &mut DeferredReset<TokioIo<tokio::io::DuplexStream>>) -> io::Result<Vec<u8>> {
        let mut bytes = [0; 64];
        let mut buf = hyper::rt::ReadBuf::new(&mut bytes);
        poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, buf.unfilled())).await?;
        Ok(buf.filled().to_vec())
    }

    #[tokio::test]
    async fn a_write_that_meets_a_closed_peer_lets_the_reads_deliver_what_it_sent() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut io = DeferredReset::new(TokioIo::new(client));
        io.arm();
        server.write_all(b"goaway").await.unwrap();
        drop(server);
        // The peer is gone: the write would fail with EPIPE, and is reported done.
        assert_eq!(write(&mut io).await.unwrap(), 5);
        assert_eq!(write(&mut io).await.unwrap(), 5);
        assert_eq!(read(&mut io).await.unwrap(), b"goaway");
        assert_eq!(read(&mut io).await.unwrap(), b"");
        // The reads have ended: a writer that goes on gets the error, and cannot spin.
        let error = write(&mut io).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        let flush = poll_fn(|cx| Pin::new(&mut io).poll_flush(cx)).await;
        assert_eq!(flush.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn other_write_errors_are_not_deferred() {
        let (client, _server) = tokio::io::duplex(1024);
        let mut io = DeferredReset::new(TokioIo::new(client));
        io.arm();
        let error = io.defer(io::ErrorKind::TimedOut.into(), 5).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(io.reset.is_none());
    }

    #[tokio::test]
    async fn before_it_is_armed_a_write_that_meets_a_closed_peer_fails() {
        let (client, server) = tokio::io::duplex(1024);
        let mut io = DeferredReset::new(TokioIo::new(client));
        drop(server);
        let error = write(&mut io).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}

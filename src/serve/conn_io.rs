//! [`ConnIo`]: a connection's stream as hyper sees it. It first hands over the bytes read to
//! tell the protocol ([`Prefix`]), and when hyper drops it (the connection closed, or the
//! upgraded stream of a WebSocket ended), gives the stream back to the connection's task, which
//! counts the connection as closed only then and closes the stream itself (`linger.rs`).
//! Once an HTTP/2 connection is told to leave, its reads go through [`HeldPong`], which keeps
//! the client's acknowledgement of hyper's shutdown `PING` behind the streams the client had
//! queued.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::held_pong::HeldPong;
use super::protocol::{Prefix, Protocol};
use super::state::ConnState;

/// How a connection's stream ended, when hyper gives it back: what its close still has to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Ended {
    /// hyper shut it down (its FIN sent; over TLS, `close_notify` first): the close does not
    /// do it again.
    pub(super) shut_down: bool,
    /// A read found the end of the peer's stream (its FIN; over TLS, its `close_notify`):
    /// nothing more can arrive, so nothing unread can turn the close into a reset, and the
    /// close does not linger. Not seen while an HTTP/2 connection's reads go through
    /// [`HeldPong`]: those connections linger as before.
    pub(super) peer_closed: bool,
}

/// The connection's stream as hyper sees it.
pub(super) struct ConnIo<Io> {
    /// `Some` until dropped.
    io: Option<Io>,
    prefix: Prefix,
    /// How much of `prefix` hyper has read.
    replayed: u8,
    /// Where the stream goes back, with how its two sides ended.
    back: Option<oneshot::Sender<(Io, Ended)>>,
    ended: Ended,
    /// Told of every write (`ConnState::wrote`).
    state: Option<Arc<ConnState>>,
    /// HTTP/2, once told to leave: made when the task says so (`ConnState::going_away`).
    pong: Option<Box<HeldPong>>,
}

impl<Io> ConnIo<Io> {
    /// `io` for hyper, `prefix` read first, and where `io` comes back once hyper is done.
    pub(super) fn new(
        io: Io,
        prefix: Prefix,
        state: Option<Arc<ConnState>>,
    ) -> (Self, oneshot::Receiver<(Io, Ended)>) {
        let (back, returned) = oneshot::channel();
        let conn = Self {
            io: Some(io),
            prefix,
            replayed: 0,
            back: Some(back),
            ended: Ended::default(),
            state,
            pong: None,
        };
        (conn, returned)
    }

    /// An HTTP/2 connection its task told to leave.
    fn going_away(&self) -> bool {
        self.state.as_ref().is_some_and(|state| {
            state.protocol == Protocol::Http2 && state.going_away.load(Ordering::Relaxed)
        })
    }

    fn wrote(&self) {
        if let Some(state) = &self.state {
            // Relaxed: read by the task only after the connection is done with the socket.
            state.wrote.store(true, Ordering::Relaxed);
        }
    }
}

impl<Io: Unpin> ConnIo<Io> {
    fn io(&mut self) -> Pin<&mut Io> {
        Pin::new(self.io.as_mut().expect("present until dropped"))
    }
}

impl<Io> Drop for ConnIo<Io> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // The task may be gone (aborted at the deadline): then the stream is just dropped.
            let _ = back.send((io, self.ended));
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for ConnIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < self.prefix.len {
            let rest = &self.prefix.bytes[usize::from(self.replayed)..usize::from(self.prefix.len)];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            self.replayed += n as u8; // at most the prefix's length
            return Poll::Ready(Ok(()));
        }
        if self.pong.is_none() && self.going_away() {
            let mut pong = Box::<HeldPong>::default();
            pong.watch();
            self.pong = Some(pong);
        }
        let this = &mut *self;
        match &mut this.pong {
            Some(pong) if pong.is_active() => {
                let io = Pin::new(this.io.as_mut().expect("present until dropped"));
                pong.poll_read(cx, buf, |cx, buf| io.poll_read(cx, buf))
            }
            _ => {
                let (before, wanted) = (buf.filled().len(), buf.remaining() > 0);
                let read = this.io().poll_read(cx, buf);
                if wanted && matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() == before {
                    this.ended.peer_closed = true;
                }
                read
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for ConnIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        self.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shutdown = self.io().poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = shutdown {
            self.ended.shut_down = true;
        }
        shutdown
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn hyper_reads_the_prefix_first_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        let prefix = Prefix {
            bytes: *b"GET ",
            len: 4,
        };
        let (mut io, returned) = ConnIo::new(server, prefix, None);
        client.write_all(b"/ HTTP/1.1\r\n").await.unwrap();
        let mut read = vec![0; 16];
        let mut n = 0;
        while n < 16 {
            n += io.read(&mut read[n..]).await.unwrap();
        }
        assert_eq!(&read, b"GET / HTTP/1.1\r\n");
        drop(io);
        assert!(
            returned.await.is_ok(),
            "the stream comes back when hyper drops it"
        );
    }

    #[tokio::test]
    async fn the_stream_comes_back_saying_whether_hyper_shut_it_down() {
        let (_client, server) = tokio::io::duplex(64);
        let (io, returned) = ConnIo::new(server, Prefix::default(), None);
        drop(io);
        assert!(!returned.await.unwrap().1.shut_down, "not shut down");

        let (_client, server) = tokio::io::duplex(64);
        let (mut io, returned) = ConnIo::new(server, Prefix::default(), None);
        io.shutdown().await.unwrap();
        drop(io);
        assert!(returned.await.unwrap().1.shut_down, "shut down");
    }

    #[tokio::test]
    async fn the_stream_comes_back_saying_whether_the_peer_closed_its_side() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut client, server) = tokio::io::duplex(64);
        let (mut io, returned) = ConnIo::new(server, Prefix::default(), None);
        client.write_all(b"GET").await.unwrap();
        let mut bytes = [0; 8];
        assert_eq!(io.read(&mut bytes).await.unwrap(), 3);
        drop(io);
        assert!(!returned.await.unwrap().1.peer_closed, "still open");

        let (mut client, server) = tokio::io::duplex(64);
        let (mut io, returned) = ConnIo::new(server, Prefix::default(), None);
        client.shutdown().await.unwrap();
        assert_eq!(io.read(&mut bytes).await.unwrap(), 0);
        drop(io);
        assert!(returned.await.unwrap().1.peer_closed, "its end read");
    }
}

//! A lingering close, as nginx does it: once hyper is done with a connection, the socket is
//! not dropped at once. Closing a socket with unread data makes the kernel answer with a reset,
//! and a reset makes the peer's kernel throw away what the peer has not read yet: the last
//! responses, or the `GOAWAY` that says which streams were processed. A load balancer that
//! keeps writing (a request sent before it read our goodbye, a `WINDOW_UPDATE`) is exactly such
//! a peer. So the connection sends its FIN, then reads and discards until the peer closes too,
//! for at most [`LINGER`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// How long a closed connection waits for the peer to close its side.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// The connection's socket as hyper sees it. When hyper drops it, the socket comes back to the
/// connection's task, which lingers with it.
pub(super) struct Lingering {
    stream: Option<TcpStream>,
    back: Option<oneshot::Sender<TcpStream>>,
}

impl Lingering {
    /// The socket for hyper, and where it comes back once hyper is done.
    pub(super) fn new(stream: TcpStream) -> (Self, oneshot::Receiver<TcpStream>) {
        let (back, returned) = oneshot::channel();
        let io = Self {
            stream: Some(stream),
            back: Some(back),
        };
        (io, returned)
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("present until dropped"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            // The task may be gone (aborted at the deadline): then the socket is just dropped.
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

/// Sends FIN (again, if hyper already did), then reads and discards until the peer closes,
/// fails, or [`LINGER`] has passed.
pub(super) async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut discard = [0; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

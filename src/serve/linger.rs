//! A lingering close, as nginx does it, where it protects something. Closing a TCP socket with
//! unread data makes the kernel answer with a reset, and a reset makes the peer's kernel throw
//! away what the peer has not read yet: the last responses, or the `GOAWAY` that says which
//! streams were processed. So a connection that may still receive sends its FIN, then reads and
//! discards until the peer closes too, for at most [`LINGER`].
//!
//! Where nothing can be lost the socket closes at once, as nginx does on a graceful exit: an idle
//! HTTP/1.x client that sends nothing more (a pooled keep-alive connection that does not read)
//! would otherwise hold the process for the whole linger. HTTP/2 peers keep writing after a
//! goodbye (`WINDOW_UPDATE`s while they read the last responses, streams sent before they read
//! the `GOAWAY`), so HTTP/2 connections always linger. An HTTP/1.x connection closed right
//! after a response lingers if the peer is still sending ([`QUIET`]); one closed idle (nothing
//! written since it was told to leave) only if bytes from the peer wait unread. A connection
//! whose peer has closed its side (hyper read its end) never lingers: nothing more can arrive,
//! and nothing unread is left to turn the close into a reset. Only TCP
//! lingers (TLS over TCP too, on the socket underneath once `close_notify` is sent): other
//! streams are shut down and dropped.

use std::any::Any;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a closed connection waits for the peer to close its side.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// How long an HTTP/1.x connection looks for bytes still coming from its peer (a request body
/// the response did not read, a request sent before the peer read `Connection: close`) before
/// closing at once.
pub(super) const QUIET: Duration = Duration::from_millis(10);

/// How a connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Linger {
    /// Linger until the peer closes (HTTP/2).
    Always,
    /// Linger if the peer is still sending within [`QUIET`] (HTTP/1.x, closed after a
    /// response: a request it sent before reading `Connection: close` may be on its way).
    IfSending,
    /// Linger only if bytes from the peer are waiting now (HTTP/1.x, closed idle: nothing was
    /// written since it was told to leave, so there is nothing of ours a reset could destroy).
    IfReadable,
    /// Close at once: the connection never sent a byte, or the peer has closed its side (its
    /// end was read: nothing more can arrive).
    Never,
}

/// Sends FIN (over TLS, `close_notify` first) unless `shut_down` says hyper already did, then,
/// on TCP and as `linger` says, reads and discards until the peer closes, fails, or [`LINGER`]
/// has passed.
pub(super) async fn close<Io>(mut io: Io, linger: Linger, shut_down: bool)
where
    Io: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // Over TLS, `close_notify` must be written first: bounded, for a peer that reads nothing
    // (over plain TCP the FIN never waits). Not twice: a second `shutdown` sends nothing but
    // costs a system call on every connection.
    if !shut_down {
        let _ = tokio::time::timeout(LINGER, io.shutdown()).await;
    }
    let Some(stream) = tcp(&mut io) else {
        return;
    };
    let still_sending = match linger {
        Linger::Always => true,
        // Readable: bytes came, or the peer's FIN (then the discard below ends at once).
        Linger::IfSending => tokio::time::timeout(QUIET, stream.readable()).await.is_ok(),
        Linger::IfReadable => {
            let mut byte = [std::mem::MaybeUninit::uninit()];
            // A non-blocking peek: the kernel's answer now, not the reactor's last one.
            !matches!(
                socket2::SockRef::from(&*stream).peek(&mut byte),
                Err(_) | Ok(0)
            )
        }
        Linger::Never => false,
    };
    if still_sending {
        // Over TLS, the peer's records are discarded unread: nothing more is served.
        // On the heap, only here: in the task's future it would cost every connection 4 KiB.
        let mut discard = vec![0; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = stream.read(&mut discard).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// The TCP socket of `io`: itself, or the one under its TLS.
fn tcp(io: &mut dyn Any) -> Option<&mut TcpStream> {
    #[cfg(feature = "rustls")]
    if io.is::<super::tls::Served<TcpStream>>() {
        let tls = io.downcast_mut::<super::tls::Served<TcpStream>>()?;
        return Some(tls.get_mut().0);
    }
    io.downcast_mut::<TcpStream>()
}

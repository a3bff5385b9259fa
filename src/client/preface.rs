//! A connector that holds a new HTTP/2 connection's streams back until the server has spoken.
//!
//! Behind an L4 balancer (HAProxy `mode tcp`, a Kubernetes `Service`), a new connection is
//! accepted by the balancer, not the server; if the chosen server is gone, the connection
//! closes before any byte from a server. hyper writes its streams as soon as the connection
//! is handed over, so their failure cannot be told from a server that read them and died.
//! grpc-go and grpc-java wait for the server's preface before they put a call on a
//! connection; [`PrefaceConnector`] does the same below hyper: the client's preface and its
//! connection-level frames (stream 0: `SETTINGS`, `WINDOW_UPDATE`, `PING`) go out at once, and
//! the first frame of any stream waits until the server's first byte has arrived. If the
//! connection ends before that, every stream on it fails with an error that
//! [`classify`](super::classify) reads as
//! [`ClosedBeforePreface`](super::RetryReason::ClosedBeforePreface).
//!
//! The gate is for cleartext HTTP/2 with prior knowledge (tonic's `http://` channels,
//! hyper-util's client with `http2_only(true)`): it reads the bytes hyper writes as HTTP/2
//! frames. A connection whose first bytes are not the client's HTTP/2 preface is passed
//! through untouched: TLS that tonic's `ClientTlsConfig` runs above this connector (its
//! `ClientHello`), HTTP/1.1. Under TLS, a connection closed before the handshake ended fails
//! in tonic's connect, which [`classify`](super::classify) retries as
//! [`ConnectFailed`](super::RetryReason::ConnectFailed); once the handshake is done the
//! HTTP/2 preface travels encrypted and cannot be waited for here, so a TLS connection closed
//! after its handshake and before the server's `SETTINGS` fails its calls with an I/O error
//! that goes back to the caller.
//!
//! Once the server has spoken, or on a connection passed through, a write that meets a reset
//! (`EPIPE`, `ECONNRESET`, `ECONNABORTED`) is reported done and its error held until the reads
//! end, so that h2 reads the `GOAWAY` the server sent before it (see `reset.rs`). Before the
//! server has spoken it fails the connection at once, as closed before the preface.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tower_service::Service;

use super::reset::DeferredReset;

/// The client's connection preface (RFC 9113 §3.4).
const MAGIC: &[u8; CLIENT_MAGIC] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Its length.
const CLIENT_MAGIC: usize = 24;
/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// How much of the server's first bytes are read at once while streams wait.
const FIRST_READ: usize = 4096;

/// Wraps a connector (hyper-util's `HttpConnector`, or any `Service<Uri>` returning hyper
/// I/O) so that no stream of a new cleartext HTTP/2 connection is written before the server's
/// first byte. See the [module docs](super#behind-an-l4-balancer) for when it is needed.
///
/// # Examples
///
/// ```
/// use hyper_util::client::legacy::connect::HttpConnector;
/// use tower_drain::client::PrefaceConnector;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut http = HttpConnector::new();
/// http.enforce_http(false);
/// http.set_nodelay(true);
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
///     .connect_with_connector_lazy(PrefaceConnector::new(http));
/// # drop(channel);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PrefaceConnector<C> {
    inner: C,
}

impl<C> PrefaceConnector<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Self { inner }
    }

    /// The wrapped connector.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connector, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the connector.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C> Service<Uri> for PrefaceConnector<C>
where
    C: Service<Uri>,
{
    type Response = PrefaceGated<C::Response>;
    type Error = C::Error;
    type Future = Connecting<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Connecting {
            inner: self.inner.call(uri),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PrefaceConnector`]: the inner connector's, its I/O wrapped.
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct Connecting<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for Connecting<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<PrefaceGated<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let io = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(PrefaceGated::new(io)))
    }
}

/// A connection from [`PrefaceConnector`]: once the server's first byte has arrived it is the
/// inner I/O plus one branch per call.
///
/// A connection that does not start with the client's HTTP/2 preface (TLS put above the
/// connector by tonic's `ClientTlsConfig`, HTTP/1.1) is passed through untouched.
///
/// Once the server has spoken (or the connection is passed through), a write that fails
/// because the server or a balancer reset the connection (`EPIPE`, `ECONNRESET`,
/// `ECONNABORTED`) is reported done and its error held until the reads have ended, so that h2
/// still reads the `GOAWAY` the server sent before the reset. Before, it fails the connection
/// at once, as closed before the preface.
#[derive(Debug)]
pub struct PrefaceGated<T> {
    inner: DeferredReset<T>,
    gate: Gate,
    /// Where the writer is in the client's bytes (only used while waiting).
    writer: FrameCursor,
    /// The server's first bytes, read while a stream frame waited to be written.
    early: Vec<u8>,
    early_read: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Stream frames wait for the server's first byte.
    Waiting,
    /// The server has spoken: everything passes through.
    Open,
    /// Not HTTP/2 with prior knowledge: everything passes through, nothing is read as frames.
    Bypassed,
}

impl<T> PrefaceGated<T> {
    fn new(inner: T) -> Self {
        Self {
            inner: DeferredReset::new(inner),
            gate: Gate::Waiting,
            writer: FrameCursor::default(),
            early: Vec::new(),
            early_read: 0,
        }
    }

    /// Whether the server has sent its first byte (always `false` on a connection passed
    /// through untouched, which is not watched).
    pub fn server_spoke(&self) -> bool {
        self.gate == Gate::Open
    }
}

impl<T: Read + Unpin> PrefaceGated<T> {
    /// Reads the server's first bytes into `early`; `Ready(Ok)` once they are there.
    fn poll_first_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut first = [0; FIRST_READ];
        let mut buf = ReadBuf::new(&mut first);
        let read = Pin::new(&mut self.inner).poll_read(cx, buf.unfilled());
        ready!(read).map_err(ClosedBeforePreface::wrap)?;
        if buf.filled().is_empty() {
            return Poll::Ready(Err(ClosedBeforePreface::eof()));
        }
        self.early.extend_from_slice(buf.filled());
        self.gate = Gate::Open;
        self.inner.arm();
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Unpin> Read for PrefaceGated<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gate == Gate::Waiting {
            ready!(this.poll_first_bytes(cx))?;
        }
        if this.early_read < this.early.len() {
            let early = &this.early[this.early_read..];
            let n = early.len().min(buf.remaining());
            buf.put_slice(&early[..n]);
            this.early_read += n;
            if this.early_read == this.early.len() {
                this.early = Vec::new();
                this.early_read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: Read + Write + Unpin> Write for PrefaceGated<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.gate == Gate::Waiting && !this.writer.continues_magic(buf) {
            // A TLS `ClientHello` (tonic's TLS is above this connector), or HTTP/1.1.
            this.gate = Gate::Bypassed;
            this.inner.arm();
        }
        if this.gate != Gate::Waiting {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let admitted = this.writer.clone().advance(buf, Mode::Admit);
        if admitted == 0 && !buf.is_empty() {
            // A stream frame waits: read for the server's first byte ourselves, since the
            // reader (h2) may be waiting on this write.
            ready!(this.poll_first_bytes(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..admitted]))
            .map_err(ClosedBeforePreface::wrap)?;
        this.writer.advance(&buf[..written], Mode::Commit);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        if this.gate == Gate::Waiting {
            Poll::Ready(flushed.map_err(ClosedBeforePreface::wrap))
        } else {
            Poll::Ready(flushed)
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for PrefaceGated<T> {
    fn connected(&self) -> Connected {
        self.inner.get_ref().connected()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stops before the header of a frame on a stream (or one not yet whole in the buffer).
    Admit,
    /// Records bytes that were written.
    Commit,
}

/// Where the client's bytes are: in the preface, in a frame header, or in a frame's payload.
#[derive(Clone, Debug)]
struct FrameCursor {
    magic_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    payload_left: usize,
}

impl Default for FrameCursor {
    fn default() -> Self {
        Self {
            magic_left: CLIENT_MAGIC,
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
        }
    }
}

impl FrameCursor {
    /// Whether `buf`, written next, continues the client's preface (or the preface is
    /// behind): `false` for a connection that is not HTTP/2 with prior knowledge.
    fn continues_magic(&self, buf: &[u8]) -> bool {
        let at = CLIENT_MAGIC - self.magic_left;
        let n = self.magic_left.min(buf.len());
        buf[..n] == MAGIC[at..at + n]
    }

    /// Moves over `buf`; returns how many bytes it moved over.
    fn advance(&mut self, buf: &[u8], mode: Mode) -> usize {
        let mut at = 0;
        while at < buf.len() {
            let rest = &buf[at..];
            if self.magic_left > 0 {
                let n = self.magic_left.min(rest.len());
                self.magic_left -= n;
                at += n;
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(rest.len());
                self.payload_left -= n;
                at += n;
            } else {
                if self.header_len == 0 && mode == Mode::Admit {
                    // A new frame: admitted only if whole in view and on stream 0.
                    if rest.len() < FRAME_HEADER || stream_id(&rest[..FRAME_HEADER]) != 0 {
                        break;
                    }
                }
                let n = (FRAME_HEADER - self.header_len).min(rest.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&rest[..n]);
                self.header_len += n;
                at += n;
                if self.header_len == FRAME_HEADER {
                    self.payload_left = payload_len(&self.header);
                    self.header_len = 0;
                }
            }
        }
        at
    }
}

fn stream_id(header: &[u8]) -> u32 {
    u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff
}

fn payload_len(header: &[u8; FRAME_HEADER]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// The error a [`PrefaceGated`] connection fails with when it ends before the server's first
/// byte: no stream frame had been written.
#[derive(Debug)]
pub struct ClosedBeforePreface {
    cause: Option<io::Error>,
}

impl ClosedBeforePreface {
    const MESSAGE: &'static str =
        "connection closed before the server's HTTP/2 preface; no stream was sent";

    fn eof() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, Self { cause: None })
    }

    fn wrap(cause: io::Error) -> io::Error {
        io::Error::new(cause.kind(), Self { cause: Some(cause) })
    }

    /// Whether `error` is (or, through h2, which keeps only its message, was) this error.
    pub(crate) fn is(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<Self>() || inner.to_string().starts_with(Self::MESSAGE))
    }
}

impl fmt::Display for ClosedBeforePreface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", Self::MESSAGE),
            None => f.write_str(Self::MESSAGE),
        }
    }
}

impl Error for ClosedBeforePreface {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_ref().map(|cause| cause as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u32, payload: usize) -> Vec<u8> {
        let mut frame = vec![0; FRAME_HEADER + payload];
        frame[0..3].copy_from_slice(&(payload as u32).to_be_bytes()[1..]);
        frame[5..9].copy_from_slice(&stream.to_be_bytes());
        frame
    }

    #[test]
    fn admits_the_preface_and_connection_frames_but_not_a_stream_frame() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(frame(0, 18)); // SETTINGS
        bytes.extend(frame(0, 4)); // WINDOW_UPDATE
        let admitted = bytes.len();
        bytes.extend(frame(1, 30)); // HEADERS
        assert_eq!(
            FrameCursor::default().advance(&bytes, Mode::Admit),
            admitted
        );
    }

    #[test]
    fn a_header_split_by_a_short_write_is_finished_before_the_next_decision() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(frame(0, 6));
        let mut cursor = FrameCursor::default();
        // The socket took the preface and 4 bytes of the SETTINGS header.
        assert_eq!(cursor.advance(&bytes[..CLIENT_MAGIC + 4], Mode::Commit), 28);
        let mut rest = bytes[CLIENT_MAGIC + 4..].to_vec();
        rest.extend(frame(3, 0));
        assert_eq!(cursor.advance(&rest, Mode::Admit), 5 + 6);
    }

    #[test]
    fn a_header_not_yet_whole_in_the_buffer_waits() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(&frame(0, 0)[..5]);
        assert_eq!(
            FrameCursor::default().advance(&bytes, Mode::Admit),
            CLIENT_MAGIC
        );
    }

    #[test]
    fn the_client_preface_is_recognised_in_pieces_and_a_tls_client_hello_is_not() {
        let mut cursor = FrameCursor::default();
        assert!(cursor.continues_magic(&MAGIC[..5]));
        cursor.advance(&MAGIC[..5], Mode::Commit);
        assert!(cursor.continues_magic(&MAGIC[5..]));
        cursor.advance(&MAGIC[5..], Mode::Commit);
        assert!(cursor.continues_magic(&frame(1, 4)), "past the preface");
        // A TLS record: handshake (0x16), TLS 1.0 record version, length.
        assert!(!FrameCursor::default().continues_magic(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!FrameCursor::default().continues_magic(b"GET / HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_tls_client_hello_is_written_whole_before_the_server_speaks() {
        use hyper_util::rt::TokioIo;
        use tokio::io::AsyncReadExt;

        let (client, mut server) = tokio::io::duplex(4096);
        let mut io = PrefaceGated::new(TokioIo::new(client));
        // Its random bytes would read as a frame header on a stream: it must not wait.
        let mut hello = vec![0x16, 0x03, 0x01, 0x01, 0x00];
        hello.resize(261, 0xa5);
        let mut sent = 0;
        while sent < hello.len() {
            let rest = &hello[sent..];
            sent += std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, rest))
                .await
                .unwrap();
        }
        let mut received = vec![0; hello.len()];
        server.read_exact(&mut received).await.unwrap();
        assert_eq!(received, hello);
        assert!(!io.server_spoke());
    }

    #[test]
    fn the_marker_survives_being_reduced_to_its_message() {
        let error = ClosedBeforePreface::eof();
        let flattened = io::Error::new(error.kind(), error.get_ref().unwrap().to_string());
        assert!(ClosedBeforePreface::is(&error));
        assert!(ClosedBeforePreface::is(&flattened));
        assert!(!ClosedBeforePreface::is(&io::Error::from(
            io::ErrorKind::BrokenPipe
        )));
    }
}

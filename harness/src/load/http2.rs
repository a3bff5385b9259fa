//! `--client h2`: long-lived HTTP/2 connections (cleartext, prior knowledge; with `--ca`, TLS
//! with ALPN `h2`), several concurrent streams each, on the `h2` crate directly so that every
//! error is seen exactly.
//!
//! A client retries **only** what the protocol proves was not processed, as gRPC's
//! transparent retry does (gRFC A6) and hyper-util's pooled client does, and a refused stream
//! only **once**, on a new connection:
//!
//! - a stream reset by the server with `REFUSED_STREAM` (RFC 9113 §8.7);
//! - a stream above the last-stream-id of the server's `GOAWAY` (RFC 9113 §6.8). `h2` fails
//!   exactly those streams with the remote `GOAWAY` error (`Error::is_go_away() &&
//!   is_remote()`, see `recv_go_away` in h2's `proto/streams/streams.rs`); streams at or below
//!   the last id run on, and if the connection then ends under them they fail with an I/O
//!   error, which is counted as lost.
//!
//! Both are refusals. The first is retried on a new connection (the first stream to notice a
//! refusal replaces the connection for all its streams) and counted under `retried` by reason;
//! a request refused again there is lost (`refused twice`): behind a balancer that still routes
//! to a draining server, the new connection can land on it again. Every refusal, retried or
//! lost, is also counted on the wire ([`super::goaway`]: `refused` in the report). A request that could not even be opened because
//! the connection was already going away or gone (`ready`/`send_request` failed) never reached
//! the network: it is sent on a new connection and counted under `unsent`, not as a refusal.
//!
//! Like gRPC clients, a new connection carries streams only once the server's preface (its
//! first frame, `SETTINGS`) has arrived, within [`PREFACE_TIMEOUT`]. Behind a TCP load balancer
//! the client's connection is accepted before the balancer has reached a server; if it then
//! closes without a byte from the server (the server it picked was gone), no request was on it,
//! and the requests move to the next connection (counted under `unsent`). Over TLS the same
//! holds for a TLS handshake that fails or takes longer than [`PREFACE_TIMEOUT`]: the TLS
//! stream is below the HTTP/2 connection ([`super::tls`]), so no request was written yet.
//!
//! Everything else (another reset, a broken connection, a `5xx`, a short body) is lost.
//!
//! Each connection reads through [`Watched`], which times the server's `GOAWAY` frames.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};

use super::goaway::{Log, Watched};
use super::stats::{describe, Outcome};
use super::tls::{self, Tls};
use super::{Client, Ctx, Job};

/// Attempts of one request before giving up (each one refused or never sent).
const MAX_ATTEMPTS: usize = 10;

/// Refusals a request survives: one retry on a new connection, as gRPC's transparent retry.
const MAX_REFUSALS: usize = 1;

/// How long a new connection may take to deliver the server's preface.
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why no connection could be made.
enum ConnectError {
    /// The load balancer could not be reached: the request is lost.
    Unreachable(String),
    /// The connection closed, or stayed silent, before the server's preface: no request was
    /// sent on it, so the request tries the next connection.
    NoPreface,
}

/// One long-lived connection shared by several stream workers, replaced after it goes away.
pub struct Connection {
    target: String,
    tls: Option<Arc<Tls>>,
    goaways: Arc<Log>,
    /// The generation of the connection and its handle; `None` once it must be replaced.
    current: Mutex<(u64, Option<SendRequest<Bytes>>)>,
}

impl Connection {
    pub fn new(target: &str, tls: Option<&Arc<Tls>>, goaways: &Arc<Log>) -> Arc<Self> {
        Arc::new(Connection {
            target: target.to_string(),
            tls: tls.cloned(),
            goaways: Arc::clone(goaways),
            current: Mutex::new((0, None)),
        })
    }

    async fn sender(&self) -> Result<(u64, SendRequest<Bytes>), ConnectError> {
        let mut current = self.current.lock().await;
        if current.1.is_none() {
            current.1 = Some(connect(&self.target, self.tls.as_deref(), &self.goaways).await?);
            current.0 += 1;
        }
        Ok((current.0, current.1.clone().expect("set above")))
    }

    /// Forgets generation `generation` (if it is still the current one).
    async fn replace(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            current.1 = None;
        }
    }
}

async fn connect(
    target: &str,
    tls: Option<&Tls>,
    goaways: &Arc<Log>,
) -> Result<SendRequest<Bytes>, ConnectError> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| ConnectError::Unreachable(format!("connect {target}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    // Closed or silent before the TLS handshake ended: as before the preface.
    let tcp = match tokio::time::timeout(PREFACE_TIMEOUT, tls::wrap(tls, tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) | Err(_) => return Err(ConnectError::NoPreface),
    };
    let (first_read, preface) = oneshot::channel();
    let io = FirstRead {
        io: Watched::new(tcp, goaways),
        first_read: Some(first_read),
    };
    // The handshake only writes the client's preface; it fails if the socket already closed.
    let (sender, connection) = h2::client::handshake(io)
        .await
        .map_err(|_| ConnectError::NoPreface)?;
    tokio::spawn(async move {
        // Errors surface on the streams that were open; nothing to add here.
        let _ = connection.await;
    });
    match tokio::time::timeout(PREFACE_TIMEOUT, preface).await {
        Ok(Ok(())) => Ok(sender),
        // Closed before a byte arrived, or silent: dropping `sender` closes the connection.
        Ok(Err(_)) | Err(_) => Err(ConnectError::NoPreface),
    }
}

/// A connection that reports its first successful read: the server's preface.
struct FirstRead {
    io: Watched<tls::Stream>,
    first_read: Option<oneshot::Sender<()>>,
}

impl AsyncRead for FirstRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if let Some(first_read) = self.first_read.take() {
                let _ = first_read.send(());
            }
        }
        read
    }
}

impl AsyncWrite for FirstRead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One stream worker of a shared [`Connection`].
pub struct Http2 {
    pub connection: Arc<Connection>,
}

impl Client for Http2 {
    async fn call(&mut self, ctx: &Ctx, job: Job) -> Outcome {
        let scheme = if self.connection.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let uri = format!("{scheme}://{}{}", ctx.target, job.path());
        let mut refusals = 0;
        for _ in 0..MAX_ATTEMPTS {
            let (generation, sender) = match self.connection.sender().await {
                Ok(s) => s,
                Err(ConnectError::Unreachable(e)) => return Outcome::Failed("connect".into(), e),
                Err(ConnectError::NoPreface) => {
                    ctx.unsent();
                    continue;
                }
            };
            let request = Request::get(&uri).body(()).expect("a valid request");
            // Fails only if the connection is already going away or gone: nothing was sent.
            let opened = match sender.ready().await {
                Ok(mut sender) => sender.send_request(request, true),
                Err(e) => Err(e),
            };
            let response = match opened {
                Ok((response, _)) => response,
                Err(_) => {
                    self.connection.replace(generation).await;
                    ctx.unsent();
                    continue;
                }
            };
            match response.await {
                Ok(response) => return read(response, &job.expected()).await,
                Err(e) => match unprocessed(&e) {
                    Some(reason) => {
                        refusals += 1;
                        if refusals > MAX_REFUSALS {
                            let message = format!("{reason} again on a new connection");
                            return Outcome::Failed("refused twice".into(), message);
                        }
                        ctx.retried(reason);
                        self.connection.replace(generation).await;
                    }
                    None => return Outcome::Failed(kind(&e), describe(&e)),
                },
            }
        }
        let message = format!("{MAX_ATTEMPTS} attempts, none sent");
        Outcome::Failed("gave up".into(), message)
    }
}

/// The reason to retry a stream that failed before its response, if the protocol proves the
/// server did not process it.
fn unprocessed(e: &h2::Error) -> Option<&'static str> {
    if e.is_remote() && e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM) {
        Some("REFUSED_STREAM")
    } else if e.is_remote() && e.is_go_away() {
        Some("above GOAWAY last-stream-id")
    } else {
        None
    }
}

fn kind(e: &h2::Error) -> String {
    match e.reason() {
        Some(reason) if e.is_reset() => format!("reset({reason:?})"),
        Some(reason) if e.is_go_away() => format!("goaway({reason:?})"),
        _ if e.is_io() => "closed".into(),
        _ => "h2 error".into(),
    }
}

/// Reads the whole body, giving flow-control credit back as it goes, and checks it.
async fn read(response: Response<RecvStream>, expected: &str) -> Outcome {
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Err(e) => return Outcome::Failed("body".into(), describe(&e)),
        }
    }
    if !status.is_success() {
        return Outcome::Status(status.as_u16());
    }
    if bytes != expected.as_bytes() {
        let message = format!(
            "{status} with {} bytes, expected {} bytes (truncated or wrong body)",
            bytes.len(),
            expected.len()
        );
        return Outcome::Failed("body".into(), message);
    }
    Outcome::Ok
}

//! The TLS handshake of one connection, in the connection's own task (never in the accept
//! loop, so a client that stalls its handshake holds only itself), bounded like a first
//! request on the wire:
//!
//! - by the header read timeout, counted from the accept: a client that connects and stalls
//!   is closed;
//! - at the drain, before the client's `ClientHello` has come, as a connection that has sent
//!   nothing: closed once `FIRST_BYTES` old (`connection.rs`);
//! - at the drain, once the `ClientHello` has come, as a first request on the wire: given
//!   `LATE_FIRST_REQUEST` to finish (hyper #3792: a connection accepted just before the drain
//!   gets its response).

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::super::connection::{silent_at_drain, FIRST_BYTES, LATE_FIRST_REQUEST};
use super::super::protocol::Protocol;
use super::TlsConfig;
use crate::tracker::ConnectionTracker;

/// The connection once its handshake is done, or `None` if it failed, timed out, or the
/// drain closed it first.
pub(in crate::serve) async fn handshake<Io>(
    io: Io,
    config: &TlsConfig,
    tracker: &ConnectionTracker,
    deadline: Instant,
    accepted: Instant,
) -> Option<TlsStream<Io>>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    // Biased: what has come wins over the drain's close.
    let start = tokio::select! {
        biased;
        hello = tokio::time::timeout_at(deadline, hello) => hello.ok()?.ok()?,
        () = silent_at_drain(tracker, accepted + FIRST_BYTES) => return None,
    };
    // The configuration in force when the client said hello: a reload applies from here on.
    let accept = start.into_stream(config.current());
    tokio::select! {
        biased;
        stream = tokio::time::timeout_at(deadline, accept) => stream.ok()?.ok(),
        () = async {
            tracker.draining().await;
            tokio::time::sleep(LATE_FIRST_REQUEST).await;
        } => None,
    }
}

/// The protocol the handshake chose with ALPN, if any.
pub(in crate::serve) fn negotiated<Io>(stream: &TlsStream<Io>) -> Option<Protocol> {
    match stream.get_ref().1.alpn_protocol()? {
        b"h2" => Some(Protocol::Http2),
        b"http/1.1" | b"http/1.0" => Some(Protocol::Http1),
        _ => None,
    }
}

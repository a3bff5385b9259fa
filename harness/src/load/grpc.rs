//! `--client grpc`: tonic clients on long-lived channels, calling the `demo.Echo` service of
//! `examples/support/echo.rs` (not exempt from the drain layer) with **no** retry policy, as
//! tonic ships: fast and slow requests are `/demo.Echo/Unary` calls, streams are
//! `/demo.Echo/Stream` calls, and every answer is checked.
//!
//! Each `--connections` channel is shared by `--streams` concurrent callers. tonic's channel
//! reconnects by itself after a `GOAWAY` or a closed connection. Nothing is retried here: a
//! call that does not end with `OK` and the expected messages is lost, counted by its gRPC code
//! and message (for example `Unavailable: service is shutting down..` from the drain layer, or
//! `Cancelled`/`Unavailable` with "operation was canceled" from tonic's own client).
//!
//! With `--client-retry`, every channel sits behind one `tower_drain::client::
//! TransparentRetryLayer` (and its connector behind `PrefaceConnector`): calls the server never
//! processed are retried, and the layer's counts are printed at the end.
//!
//! With `--ca`, the connector does the TLS itself ([`super::tls`], ALPN `h2`) rather than
//! tonic's `ClientTlsConfig`: tonic puts its TLS *above* the connector, where
//! [`Watched`] would read ciphertext (no `GOAWAY` timing, no refused streams) and
//! `PrefaceConnector` would take the TLS records for HTTP/2 frames. Below them, both read the
//! decrypted HTTP/2 as over cleartext. The endpoint keeps the `http` scheme (tonic refuses an
//! `https` URI without its own TLS): the servers do not look at `:scheme`.

use std::sync::Arc;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};
use tower::util::Either;
use tower::Layer;
use tower_drain::client::{PrefaceConnector, TransparentRetry, TransparentRetryLayer};

use crate::echo;

use super::goaway::{Log, Watched};
use super::stats::Outcome;
use super::tls::{self, Tls};
use super::{Client, Ctx, Job};

/// A lazily connected channel to `target`, to share between callers. Its connections read
/// through [`Watched`], which times the server's `GOAWAY` frames: tonic's own connector
/// (`connect_lazy`) with the same TCP setting it applies by default (`TCP_NODELAY`).
///
/// With `retry`, the connector is behind `PrefaceConnector` and the channel behind the layer.
pub fn channel(
    target: &str,
    tls: Option<&Arc<Tls>>,
    goaways: &Arc<Log>,
    retry: Option<&TransparentRetryLayer>,
) -> Result<GrpcChannel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| format!("bad target {target:?}: {e}"))?;
    let (target, tls, goaways) = (target.to_string(), tls.cloned(), Arc::clone(goaways));
    let connector = tower::service_fn(move |_: Uri| {
        let (target, tls, goaways) = (target.clone(), tls.clone(), Arc::clone(&goaways));
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let stream = tls::wrap(tls.as_deref(), tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(Watched::new(stream, &goaways)))
        }
    });
    Ok(match retry {
        None => Either::Left(endpoint.connect_with_connector_lazy(connector)),
        Some(layer) => Either::Right(
            layer.layer(endpoint.connect_with_connector_lazy(PrefaceConnector::new(connector))),
        ),
    })
}

/// A channel, bare or behind the transparent retry layer.
pub type GrpcChannel = Either<Channel, TransparentRetry<Channel>>;

/// One caller on a shared channel.
pub struct Grpc {
    client: tonic::client::Grpc<GrpcChannel>,
}

impl Grpc {
    pub fn new(channel: GrpcChannel) -> Self {
        Grpc {
            client: tonic::client::Grpc::new(channel),
        }
    }
}

impl Client for Grpc {
    async fn call(&mut self, _ctx: &Ctx, job: Job) -> Outcome {
        let expected = job.expected();
        let answer = match job {
            Job::Fast => unary(&mut self.client, Bytes::from(expected.clone()), 0).await,
            Job::Slow { ms } => unary(&mut self.client, Bytes::from(expected.clone()), ms).await,
            Job::Stream { chunks, ms } => stream(&mut self.client, chunks, ms)
                .await
                .map(|messages| messages.concat().into()),
        };
        match answer {
            Ok(bytes) if bytes == expected.as_bytes() => Outcome::Ok,
            Ok(bytes) => Outcome::Failed(
                "wrong answer".into(),
                format!("{} bytes, expected {}", bytes.len(), expected.len()),
            ),
            Err(status) => {
                let message = status_text(&status);
                Outcome::Failed(format!("{:?}: {message}", status.code()), message)
            }
        }
    }
}

/// The status message and the chain of errors under it, cut to 100 characters.
fn status_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = if text.is_empty() {
                part
            } else {
                format!("{text}: {part}")
            };
        }
        source = s.source();
    }
    text.chars().take(100).collect()
}

/// Calls `/demo.Echo/Unary` with `message`, after `delay_ms` on the server.
pub async fn unary<T>(
    client: &mut tonic::client::Grpc<T>,
    message: Bytes,
    delay_ms: u64,
) -> Result<Bytes, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    client.ready().await.map_err(not_ready)?;
    let mut request = Request::new(message);
    if delay_ms > 0 {
        request
            .metadata_mut()
            .insert("delay-ms", delay_ms.to_string().parse().expect("digits"));
    }
    let path = http::uri::PathAndQuery::from_static(echo::UNARY);
    Ok(client
        .unary(request, path, echo::RawCodec)
        .await?
        .into_inner())
}

/// Calls `/demo.Echo/Stream` for `count` messages `ms` apart and collects them, in order.
pub async fn stream<T>(
    client: &mut tonic::client::Grpc<T>,
    count: u64,
    ms: u64,
) -> Result<Vec<Bytes>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    client.ready().await.map_err(not_ready)?;
    let request = Request::new(Bytes::from(format!("{count} {ms}")));
    let path = http::uri::PathAndQuery::from_static(echo::STREAM);
    let mut messages = client
        .server_streaming(request, path, echo::RawCodec)
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(message) = messages.message().await? {
        all.push(message);
    }
    Ok(all)
}

/// What tonic's generated clients return when the channel cannot become ready: `UNKNOWN`
/// with the transport error.
fn not_ready(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Status {
    Status::unknown(format!("Service was not ready: {}", e.into()))
}

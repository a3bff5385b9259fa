//! A hand-written gRPC service, `demo.Echo`, without protoc or prost: messages are raw bytes
//! ([`RawCodec`]), the routing is the few lines tonic's code generator would write. The `tonic`
//! example serves it, as does the plain control server of the zero-downtime proof.
//!
//! - `/demo.Echo/Unary`: answers the request's bytes. With the metadata `delay-ms: N` (at most
//!   60 000) it sleeps N ms first.
//! - `/demo.Echo/Stream`: the request is the text `N M`; it answers N messages (at most
//!   10 000) `chunk 1\n` .. `chunk N\n`, M ms apart (at most 60 000): the gRPC twin of
//!   `GET /stream?chunks=N&ms=M`.
//!
//! Bad requests get `INVALID_ARGUMENT`, never a panic.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::Stream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// The service name, as a `.proto` file would declare it: `package demo; service Echo`.
pub const NAME: &str = "demo.Echo";
/// The unary method's path.
pub const UNARY: &str = "/demo.Echo/Unary";
/// The server-streaming method's path.
pub const STREAM: &str = "/demo.Echo/Stream";

/// A gRPC codec whose messages are the raw bytes of the frame: no schema, no code generation.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// The stream of `/demo.Echo/Stream`'s answers.
pub type Messages = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

/// The `demo.Echo` service, to pass to tonic's `Server::add_service`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoServer;

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = NAME;
}

impl<B> tower::Service<http::Request<B>> for EchoServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(match request.uri().path() {
                UNARY => grpc.unary(tower::service_fn(echo), request).await,
                STREAM => {
                    grpc.server_streaming(tower::service_fn(chunks), request)
                        .await
                }
                // What generated code answers for an unknown method of a known service.
                _ => Status::unimplemented("demo.Echo has Unary and Stream").into_http(),
            })
        })
    }
}

async fn echo(request: Request<Bytes>) -> Result<Response<Bytes>, Status> {
    let delay = match request.metadata().get("delay-ms") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms <= 60_000)
            .ok_or_else(|| Status::invalid_argument("delay-ms must be 0 to 60000"))?,
    };
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok(Response::new(request.into_inner()))
}

async fn chunks(request: Request<Bytes>) -> Result<Response<Messages>, Status> {
    let text = std::str::from_utf8(request.get_ref()).unwrap_or("");
    let mut numbers = text.split(' ').map(|n| n.parse::<u64>().ok());
    let (count, ms) = match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(Some(count)), Some(Some(ms)), None) if count <= 10_000 && ms <= 60_000 => (count, ms),
        _ => return Err(Status::invalid_argument("the request must be `N M`")),
    };
    let every = Duration::from_millis(ms);
    let messages = futures_util::stream::unfold(1, move |i| async move {
        if i > count {
            return None;
        }
        if i > 1 {
            tokio::time::sleep(every).await;
        }
        Some((Ok(Bytes::from(format!("chunk {i}\n"))), i + 1))
    });
    Ok(Response::new(Box::pin(messages) as Messages))
}

//! Client side: retry, transparently, the calls a server never processed.
//!
//! A deploy that drops no request on the server can still fail calls on the client. During a
//! rolling restart a tonic or hyper client sees three kinds of failure for calls that never
//! reached the application:
//!
//! * **queued when the connection closed**: hyper queues calls for a connection that has
//!   received `GOAWAY`; when it ends they fail with "operation was canceled: connection
//!   closed" (`hyper::Error::is_canceled`), which tonic reports as `CANCELLED`;
//! * **above the `GOAWAY`'s last stream**: h2 fails them with the server's `GOAWAY`, which
//!   tonic reports as `INTERNAL` ("h2 protocol error");
//! * **a new connection closed before the server spoke**: behind an L4 balancer whose chosen
//!   server was gone.
//!
//! grpc-go and grpc-java retry these without any retry policy (gRFC A6's "transparent
//! retry"); tonic does not ([grpc-rust #2185]), and tower's `Retry` cannot, since tonic's
//! request body cannot be cloned ([tonic #733]). [`TransparentRetryLayer`] does, between a
//! tonic client and its `Channel`, or around hyper-util's client:
//!
//! ```
//! use tonic_health::pb::health_client::HealthClient;
//! use tower::ServiceBuilder;
//! use tower_drain::client::TransparentRetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let client = HealthClient::new(
//!     ServiceBuilder::new()
//!         .layer(TransparentRetryLayer::default())
//!         .service(channel),
//! );
//! # drop(client);
//! # }
//! ```
//!
//! With hyper-util's client, the request body is one of the types [`RetryBody`] is
//! implemented for (http-body-util's `BoxBody` or `UnsyncBoxBody`, tonic's body):
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{combinators::BoxBody, BodyExt, Full};
//! use hyper_util::client::legacy::{connect::HttpConnector, Client};
//! use hyper_util::rt::TokioExecutor;
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_drain::client::{PrefaceConnector, TransparentRetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client = Client::builder(TokioExecutor::new())
//!     .http2_only(true)
//!     .build::<_, BoxBody<Bytes, Infallible>>(PrefaceConnector::new(HttpConnector::new()));
//! let mut client = ServiceBuilder::new()
//!     .layer(TransparentRetryLayer::default())
//!     .service(client);
//! let request = http::Request::post("http://127.0.0.1:1/echo")
//!     .body(Full::new(Bytes::from_static(b"hello")).boxed())
//!     .unwrap();
//! // Nothing listens on port 1: the connect error is retried, then handed back.
//! let error = client.ready().await.unwrap().call(request).await.unwrap_err();
//! assert!(error.is_connect());
//! # }
//! ```
//!
//! # What is retried
//!
//! Only what the error's source chain proves unprocessed ([`RetryReason`]):
//!
//! * **never sent**: `hyper::Error::is_canceled` (hyper gave the request back unwritten), a
//!   connect error (hyper-util's `Error::is_connect`; in tonic's `ConnectError`, a connection
//!   refused, or closed or reset before it was up, its TLS handshake included: rustls' "tls
//!   handshake eof");
//! * **refused**: `RST_STREAM` with `REFUSED_STREAM` from the server (RFC 9113 §8.7);
//! * **above the last stream of a graceful `GOAWAY`** (`NO_ERROR`, RFC 9113 §6.8);
//! * **closed before the server's preface**, on a connection from [`PrefaceConnector`].
//!
//! # What is never retried, and why
//!
//! Everything else goes back to the caller unchanged, because the server may have acted on
//! it:
//!
//! * any response, trailers-only ones included (a gRPC `UNAVAILABLE` is an answer: it is the
//!   application's retry policy that decides);
//! * resets with other codes (`CANCEL`, `INTERNAL_ERROR`, ...);
//! * I/O errors on a stream the server may have seen (a connection reset after the request
//!   was written);
//! * a `GOAWAY` with an error code (the server may have failed mid-way; RFC 9113 allows a
//!   retry above its last stream, but a crashing server is not a deploy);
//! * timeouts, and errors after the response headers (the response body is not touched);
//! * a call whose body went past [`TransparentRetryLayer::body_cap`] (its record is gone).
//!
//! The peers follow the same rules: grpc-go's [`shouldRetry`] retries what its transport
//! marks [`Unprocessed`]; grpc-java's [`RetriableStream`] retries `MISCARRIED` calls (never
//! left the client) up to 1000 times and `REFUSED` ones once; Go's `x/net/http2`
//! [`canRetryError`] retries `REFUSED_STREAM` and streams above a `GOAWAY`; hyper-util's
//! legacy client retries requests hyper gave back unsent ([`retry_canceled_requests`]).
//!
//! # Bounds
//!
//! * a few attempts: 10 retries for calls that never left the client (a balancer may route a
//!   new connection to a stopped server until its health check notices), 3 for refused ones;
//! * a jittered exponential backoff (5 ms doubling up to 250 ms, full jitter);
//! * within the call's deadline: its `grpc-timeout`, rewritten to what is left on a retry;
//! * a [`RetryBudget`] shared by the layer's services (20% of calls plus 10 a second), so a
//!   backend that refuses everything is not hammered;
//! * the request body is recorded while it is sent, up to 256 KiB ([`ReplayBody`]); a retry
//!   starts only once the failed attempt has dropped the body.
//!
//! [`TransparentRetryLayer::stats`] counts retries by reason; each retry is a `tracing` event
//! at `DEBUG`.
//!
//! # With tonic's and tower's retry policies
//!
//! This layer is not a retry policy: it never retries a call the server may have processed,
//! so it needs no idempotency and is safe for every method. A policy (tower's `Retry`, or
//! retrying `UNAVAILABLE` in the application) decides on answers and on failures after
//! processing, for idempotent calls; put it outside this layer. The two never retry the same
//! failure.
//!
//! # Behind an L4 balancer
//!
//! Without [`PrefaceConnector`], a connection that the balancer closes before the server
//! spoke fails its calls with an I/O error that cannot be told apart from a server that
//! processed them and died: those calls go back to the caller. With it (the connector below
//! tonic's `Endpoint::connect_with_connector`, or hyper-util's client with `http2_only`),
//! they are retried. It costs one round trip on a new connection's first call.
//!
//! It also keeps a graceful `GOAWAY` readable when a reset overtakes it: a server (or the
//! balancer in front of it) that sends `GOAWAY` and closes while the client is still writing
//! makes the client's next write fail with `EPIPE` or `ECONNRESET`, and h2 would fail every
//! stream with that I/O error without reading the `GOAWAY` already received. The connector
//! reports such a write done and returns its error only once the reads have ended, as
//! grpc-go's transport does: the streams above the last one are retried, those at or below it
//! go back. (A call hyper hands to h2 just after the connection failed gets the connection's
//! I/O error, not the `GOAWAY`'s, though it was never sent; it goes back too.)
//!
//! ## With TLS
//!
//! tonic's `ClientTlsConfig` (tonic's `tls-ring` or `tls-aws-lc` feature) runs TLS above the
//! connector. [`PrefaceConnector`] sees that the connection does not start with HTTP/2's
//! preface and passes it through; a connection closed before its handshake ended is retried
//! as [`ConnectFailed`](RetryReason::ConnectFailed), since no request is written before the
//! handshake. What TLS hides is the server's `SETTINGS`: a connection closed after the
//! handshake and before the server's preface fails its calls with an I/O error, handed back.
//! A TLS-terminating balancer answers the handshake itself, so behind one only the answers
//! the layer reads from HTTP/2 (`REFUSED_STREAM`, `GOAWAY`) make a call retryable.
//!
//! ```no_run
//! use hyper_util::client::legacy::connect::HttpConnector;
//! use tonic::transport::{ClientTlsConfig, Endpoint};
//! use tonic_health::pb::health_client::HealthClient;
//! use tower::ServiceBuilder;
//! use tower_drain::client::{PrefaceConnector, TransparentRetryLayer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut http = HttpConnector::new();
//! http.enforce_http(false);
//! // The roots of tonic's `tls-native-roots` or `tls-webpki-roots` feature, or `ca_certificate`.
//! let channel = Endpoint::from_static("https://grpc.example.com")
//!     .tls_config(ClientTlsConfig::new().with_enabled_roots())?
//!     .connect_with_connector_lazy(PrefaceConnector::new(http));
//! let client = HealthClient::new(
//!     ServiceBuilder::new()
//!         .layer(TransparentRetryLayer::default())
//!         .service(channel),
//! );
//! # drop(client);
//! # Ok(())
//! # }
//! ```
//!
//! [grpc-rust #2185]: https://github.com/hyperium/tonic/issues/2185
//! [tonic #733]: https://github.com/hyperium/tonic/issues/733
//! [`shouldRetry`]: https://github.com/grpc/grpc-go/blob/master/stream.go
//! [`Unprocessed`]: https://github.com/grpc/grpc-go/blob/master/internal/transport/transport.go
//! [`RetriableStream`]: https://github.com/grpc/grpc-java/blob/master/core/src/main/java/io/grpc/internal/RetriableStream.java
//! [`canRetryError`]: https://github.com/golang/net/blob/master/http2/transport.go
//! [`retry_canceled_requests`]: https://docs.rs/hyper-util/latest/hyper_util/client/legacy/struct.Builder.html#method.retry_canceled_requests

mod backoff;
mod body;
mod budget;
mod classify;
mod deadline;
mod future;
mod layer;
mod preface;
mod replay;
mod reset;
mod service;
mod stats;

pub use body::RetryBody;
pub use budget::RetryBudget;
pub use classify::{classify, RetryReason};
pub use future::ResponseFuture;
pub use layer::TransparentRetryLayer;
pub use preface::{ClosedBeforePreface, Connecting, PrefaceConnector, PrefaceGated};
pub use replay::ReplayBody;
pub use service::TransparentRetry;
pub use stats::RetryStats;

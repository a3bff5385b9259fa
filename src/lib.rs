//! Zero-downtime deploys for tower-based HTTP and gRPC servers (axum, tonic, hyper-util).
//!
//! When a deploy sends `SIGTERM`, a server must drop **no** request: requests in flight
//! finish, new requests go to other instances, and shared resources close last. This crate
//! provides the pieces, built on a [`CancellationToken`](tokio_util::sync::CancellationToken):
//!
//! * [`DrainLayer`]: a tower layer that counts every request until its response **body** has
//!   ended, and once the token is cancelled refuses new requests with `503` (gRPC:
//!   `UNAVAILABLE`) without calling your service, so clients can retry them elsewhere.
//! * [`ConnectionTracker`]: the shared count. [`ConnectionTracker::drained`] resolves when
//!   draining has started and nothing is in flight: event driven, no polling, no lost wake-up.
//! * [`ReadinessService`] (or [`DrainLayer::readiness_path`]): a readiness probe that fails the
//!   moment shutdown begins, before anything is refused.
//! * [`DrainSignal`]: lets long streams (SSE, WebSockets) notice the drain and end themselves.
//!
//! # The order of a graceful shutdown
//!
//! 1. **Flip readiness** ([`ConnectionTracker::announce_shutdown`]): load balancers stop
//!    sending new traffic; HTTP/1.x responses carry `Connection: close`.
//! 2. **Notice period** (a few seconds on Kubernetes): requests are still served normally
//!    while endpoints are removed everywhere.
//! 3. **Drain**: cancel the token. The layer refuses new requests; the server stops accepting
//!    (`with_graceful_shutdown`, `serve_with_shutdown`) and sends HTTP/2 `GOAWAY`.
//! 4. **Wait** for [`ConnectionTracker::drained`], bounded by a deadline
//!    ([`ConnectionTracker::drained_timeout`]).
//! 5. **Close shared resources** (the database pool) last.
//!
//! # Example
//!
//! ```
//! use std::future::IntoFuture;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tokio_util::sync::CancellationToken;
//! use tower_drain::DrainLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let token = CancellationToken::new();
//! let drain = DrainLayer::new(token.clone())
//!     .readiness_path("/readyz")
//!     .liveness_path("/livez");
//! let tracker = drain.tracker();
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(drain);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = tokio::spawn(
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(token.clone().cancelled_owned())
//!         .into_future(),
//! );
//!
//! // On SIGTERM:
//! tracker.announce_shutdown(); // 1. readiness fails
//! # let notice = Duration::ZERO;
//! tokio::time::sleep(notice).await; // 2. notice period
//! token.cancel(); // 3. refuse new requests, stop accepting
//! if let Err(stragglers) = tracker.drained_timeout(Duration::from_secs(25)).await {
//!     eprintln!("{stragglers}"); // 4. bounded wait
//! }
//! server.await??;
//! // 5. close the pool here
//! # Ok(())
//! # }
//! ```
//!
//! # Cost
//!
//! A request that passes through costs two atomic loads (one only on HTTP/1.x), three atomic
//! read-modify-writes on the tracker (admit, count, release) and an `Arc` clone and drop for
//! the guard: no lock and no heap allocation (the `no_alloc` test proves the latter with a
//! counting allocator; README § Performance has the measurements). The token is mirrored into the tracker's
//! own atomic, so `CancellationToken::is_cancelled` (which locks a mutex) is never called per
//! request.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod discard;
mod drained;
mod error;
mod future;
mod guard;
mod keep_alive;
mod layer;
mod loom;
mod readiness;
mod reject;
mod service;
#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
pub mod shutdown;
mod signal;
mod token_watch;
mod tracker;

pub use body::{EarlyBody, ResponseBody};
pub use drained::{Drained, Draining};
pub use error::DrainTimeout;
pub use future::ResponseFuture;
pub use guard::InFlightGuard;
pub use layer::DrainLayer;
pub use readiness::ReadinessService;
pub use service::Drain;
#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
pub use shutdown::{Shutdown, ShutdownReport};
pub use signal::DrainSignal;
pub use tracker::ConnectionTracker;

//! Zero-downtime deploys for tower-based HTTP and gRPC servers (axum, tonic, hyper-util).
//!
//! When a deploy sends `SIGTERM`, a server must drop **no** request: requests in flight
//! finish, new requests go to other instances, and shared resources close last. This crate
//! provides the pieces, built on a [`CancellationToken`]:
//!
//! * [`DrainLayer`]: a tower layer that counts every request until its response **body** has
//!   ended. Once the token is cancelled it serves what the protocol's own goodbye hands over
//!   (HTTP/2 streams before the final `GOAWAY`, HTTP/1.x requests already on the wire), and
//!   once admission has closed it refuses the rest with `503` (gRPC: `UNAVAILABLE`) without
//!   calling your service ([what is refused, and when](DrainLayer#what-is-refused-and-when)).
//! * [`ConnectionTracker`]: the shared count. [`ConnectionTracker::drained`] resolves when
//!   admission has closed and nothing is in flight: event driven, no polling, no lost wake-up.
//! * [`ReadinessService`] (or [`DrainLayer::readiness_path`]): a readiness probe that fails the
//!   moment shutdown begins, before anything is refused.
//!   Long streams (SSE, WebSockets) end themselves with [`ConnectionTracker::draining`].
//! * `serve` (feature `serve`): a connection-owning server that keeps accepting through the
//!   notice period while telling every connection to leave (HTTP/2 `GOAWAY`, HTTP/1.1
//!   `Connection: close`), so that clients pinned to this instance move before the drain; and
//!   `serve::bind`, a listener with a production backlog, for any server.
//! * `Shutdown` (feature `shutdown`): the whole sequence for the process, with deadlines,
//!   background tasks, cleanup hooks in order, a report and an exit code.
//!
//! # The order of a graceful shutdown
//!
//! 1. **Flip readiness** ([`ConnectionTracker::announce_shutdown`]): load balancers stop
//!    sending new traffic; HTTP/1.x responses carry `Connection: close`.
//! 2. **Notice period** (a few seconds on Kubernetes): requests are still served normally
//!    while endpoints are removed everywhere.
//! 3. **Drain**: cancel the token. The server stops accepting and says goodbye to each
//!    connection (`with_graceful_shutdown`, `serve_with_shutdown`: HTTP/2 `GOAWAY`, HTTP/1.x
//!    close after the response in progress); the layer serves what those connections still
//!    deliver.
//! 4. **Wait**, bounded by a deadline, for the server to close its connections (then every
//!    response byte is written, and nothing more can arrive: [`ConnectionTracker::close`]) and
//!    for [`ConnectionTracker::drained`].
//! 5. **Close shared resources** (the database pool) last.
//!
//! [`Shutdown`] runs this sequence for the whole process, with the server given to
//! [`Shutdown::spawn_server`]; the example below spells it out by hand.
//!
//! # Example
//!
//! ```
//! use std::future::IntoFuture;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tower_drain::{CancellationToken, DrainLayer};
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
//! // In production, `tower_drain::serve::bind` (feature `serve`): a backlog of 1024, not 128.
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
//! token.cancel(); // 3. stop accepting, say goodbye to every connection
//!
//! // 4. Bounded wait: the server closes its connections (every response written), after
//! // which nothing more can arrive; then nothing is in flight.
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
//! if let Ok(served) = tokio::time::timeout_at(deadline, server).await {
//!     served??;
//!     tracker.close();
//! }
//! if tokio::time::timeout_at(deadline, tracker.drained()).await.is_err() {
//!     eprintln!("{} requests still in flight at the deadline", tracker.in_flight());
//! }
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
//! counting allocator; `docs/performance.md` in the repository has the measurements). Once the drain has begun,
//! admission also reads the clock, to end the handoff grace. The token is mirrored into the tracker's
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

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(feature = "serve")]
mod connections;
mod error;
mod layer;
mod loom;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;
#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
pub mod shutdown;
mod tracker;

pub mod future {
    //! Futures returned by the layer's service and by the tracker.
    pub use crate::layer::future::ResponseFuture;
    pub use crate::tracker::drained::{Drained, Draining};
}

pub mod body {
    //! Response bodies of the layer's service.
    pub use crate::layer::body::{EarlyBody, ResponseBody};
}

#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub use connections::{ConnectionCounts, LastRequest, OpenConnection};
pub use error::BoxError;
pub use layer::probes::ReadinessService;
pub use layer::service::Drain;
pub use layer::DrainLayer;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub use serve::{serve, Serve};
#[cfg(feature = "shutdown")]
#[cfg_attr(docsrs, doc(cfg(feature = "shutdown")))]
pub use shutdown::{Shutdown, ShutdownReport};
pub use tracker::guard::InFlightGuard;
pub use tracker::ConnectionTracker;

/// Re-exported from tokio-util: the token a [`DrainLayer`] drains on.
pub use tokio_util::sync::CancellationToken;

/// The README's snippets, compiled as doctests.
#[cfg(all(doctest, feature = "shutdown", feature = "serve"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

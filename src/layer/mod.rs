//! [`DrainLayer`]: the one-line addition to a server, and its options.
//!
//! The layer's parts: the service (`service.rs`), its response future (`future.rs`) and body
//! (`body.rs`), what it was configured with (`config.rs`), the refusal (`refusal.rs`), the
//! probes it answers (`probes.rs`), `Connection: close` (`connection_close.rs`) and the reading
//! of a refused request's body (`refused_body.rs`).

pub(crate) mod body;
pub(crate) mod config;
pub(crate) mod connection_close;
pub(crate) mod future;
pub(crate) mod probes;
pub(crate) mod refusal;
pub(crate) mod refused_body;
pub(crate) mod service;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use crate::layer::config::{checked_path, Config};
use crate::layer::probes::ReadinessService;
use crate::layer::service::Drain;
use crate::tracker::drained::Drained;
use crate::tracker::ConnectionTracker;

/// Applies [`Drain`] to a service: counts in-flight requests, and refuses the requests the
/// process can no longer take once the drain has begun.
///
/// * Every admitted request is counted until its response **body** ends or is dropped, so
///   streaming responses (SSE, chunked downloads, gRPC streams) are waited for.
/// * Once shutdown is announced or draining started, HTTP/1.x responses carry
///   `Connection: close` so keep-alive clients reconnect elsewhere.
/// * Optionally the layer answers a readiness path and a liveness path itself, and lets
///   exempt paths through uncounted. Probes and refusals are answered at once, even while
///   the inner service applies back-pressure.
///
/// # What is refused, and when
///
/// The rule: a request that the server's connection accepted during the protocol's own
/// goodbye is **served**, and only work the process can no longer take is refused.
///
/// When the token is cancelled, a server wired to it (`with_graceful_shutdown`,
/// `serve_with_shutdown`, hyper-util's `GracefulShutdown`) stops accepting and says goodbye
/// to each connection: HTTP/2 sends `GOAWAY`, and the streams the client sent before it read
/// the final one are exactly those HTTP/2 says the server processes (RFC 9113 §6.8); HTTP/1.x
/// finishes the request on the wire and closes. Those requests still reach the layer, and it
/// **admits** them, as a server without the layer would: refusing them would turn a lossless
/// handoff into an error no client retries by default (gRPC's transparent retry covers only
/// streams the server never processed, not an `UNAVAILABLE` answer).
///
/// Admission **closes** once the server has closed its connections
/// ([`ConnectionTracker::close`], which [`Shutdown`](crate::Shutdown) calls when the servers
/// given to it finish), or by itself one [handoff grace](Self::handoff_grace) after the drain
/// began, for a server that never says goodbye. From then on requests are answered without
/// calling the inner service: `503 Service Unavailable` with `Retry-After` (and
/// `Connection: close` on HTTP/1.x), or, for gRPC requests, a trailers-only response with
/// `grpc-status: 14` (`UNAVAILABLE`). The request was not processed, so the client can retry
/// it elsewhere. On HTTP/1.x the refused request's body is read first, so that the answer is
/// not lost to a reset when the connection closes
/// ([`refused_body_limit`](Self::refused_body_limit)).
///
/// An HTTP/2 stream is best refused with `RST_STREAM(REFUSED_STREAM)`, which clients (and
/// gRPC's transparent retry) retry on their own. A middleware can only ask for that through
/// its service error, which hyper turns into a reset: axum's services cannot fail
/// (`Infallible`), and tonic turns service errors into a status response. So the layer answers
/// `503`/`UNAVAILABLE`, and relies on the server for the lossless part: a server wired to the
/// token refuses streams past its final `GOAWAY` itself, and admission only closes once that
/// server has closed its connections (or the grace has passed).
///
/// Clones share one [`ConnectionTracker`]; apply clones of one layer to every server of the
/// process (HTTP and gRPC alike) so a single drain covers them all.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_drain::{CancellationToken, DrainLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let token = CancellationToken::new();
/// let drain = DrainLayer::new(token.clone()).readiness_path("/readyz");
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(drain.clone());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # token.cancel(); // so that this example ends at once
/// let server = axum::serve(listener, app).with_graceful_shutdown(token.clone().cancelled_owned());
/// // On SIGTERM: fail readiness, wait for load balancers, then `token.cancel()`.
/// server.await?;
/// drain.drained().await; // every request has finished: now close the database pool
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct DrainLayer {
    config: Arc<Config>,
}

impl DrainLayer {
    /// Creates a layer that starts draining when `token` is cancelled.
    ///
    /// Cancelling the token (or a parent of it) takes effect before `cancel()` returns:
    /// readiness fails and the [handoff grace](Self::handoff_grace) begins.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            config: Arc::new(Config::new(ConnectionTracker::new(token))),
        }
    }

    /// The token whose cancellation starts the drain: cancel it yourself, or hand it to
    /// whatever decides (a [`Shutdown`](crate::Shutdown) does it for you).
    pub fn token(&self) -> &CancellationToken {
        self.config.tracker.token()
    }

    /// The tracker shared by every service this layer (or a clone of it) builds.
    pub fn tracker(&self) -> ConnectionTracker {
        self.config.tracker.clone()
    }

    /// How long after the drain begins admission stays open by itself, for the requests the
    /// server's connections still deliver while they say goodbye (see
    /// [what is refused](Self#what-is-refused-and-when)). Default: 1 s.
    ///
    /// It only matters when nothing tells the tracker that the server has closed its
    /// connections: [`Shutdown::spawn_server`](crate::Shutdown::spawn_server) and
    /// [`ConnectionTracker::close`] close admission as soon as it has. It bounds how long a
    /// server that never says goodbye (no graceful shutdown wired to the token) keeps getting
    /// requests admitted, and [`drained`](Self::drained) waits for it. An HTTP/2 goodbye takes
    /// one round trip (`GOAWAY`, `PING`, final `GOAWAY`), an HTTP/1.x one less: keep the grace
    /// well above the clients' round-trip time. `Duration::ZERO` refuses from the moment the
    /// token is cancelled, as if the server had already gone.
    ///
    /// This is a setting of the tracker, shared by every clone of the layer.
    #[must_use = "a builder method returns the configured layer"]
    pub fn handoff_grace(self, grace: Duration) -> Self {
        self.config.tracker.shared.set_grace(grace);
        self
    }

    /// Shortcut for [`ConnectionTracker::drained`].
    pub fn drained(&self) -> Drained<'_> {
        self.config.tracker.drained()
    }

    /// A readiness endpoint bound to this layer's tracker, to mount as a route.
    pub fn readiness(&self) -> ReadinessService {
        ReadinessService::new(self.tracker())
    }

    /// Makes the layer answer `GET`/`HEAD` requests to `path` itself, as [`ReadinessService`]
    /// does: `200` while serving, `503` once shutdown is announced or draining. Such requests
    /// are not counted and never reach the inner service.
    ///
    /// # Panics
    ///
    /// If `path` does not start with `/` or holds a query or fragment.
    #[must_use = "a builder method returns the configured layer"]
    pub fn readiness_path(self, path: &str) -> Self {
        self.configure(|c| c.readiness_path = Some(checked_path("readiness", path)))
    }

    /// Makes the layer answer `GET`/`HEAD` requests to `path` itself with `200 OK` until the
    /// process exits, draining or not. Such requests are not counted and never reach the
    /// inner service. A liveness probe must not fail during a drain, or the orchestrator
    /// kills the process before its requests finish.
    ///
    /// # Panics
    ///
    /// If `path` does not start with `/` or holds a query or fragment.
    #[must_use = "a builder method returns the configured layer"]
    pub fn liveness_path(self, path: &str) -> Self {
        self.configure(|c| c.liveness_path = Some(checked_path("liveness", path)))
    }

    /// Lets requests to `path` through while draining, without counting them: metrics
    /// scrapes, admin endpoints. May be called several times.
    ///
    /// # Panics
    ///
    /// If `path` does not start with `/` or holds a query or fragment.
    #[must_use = "a builder method returns the configured layer"]
    pub fn exempt_path(self, path: &str) -> Self {
        self.configure(|c| c.exempt_paths.push(checked_path("exempt", path)))
    }

    /// The `Retry-After` sent with `503` refusals, rounded up to whole seconds. Default: 1 s.
    #[must_use = "a builder method returns the configured layer"]
    pub fn retry_after(self, retry_after: Duration) -> Self {
        self.configure(|c| c.rejection.set_retry_after(retry_after))
    }

    /// The text of refusals: the `503` body, and the `grpc-message` of gRPC refusals
    /// (percent-encoded as gRPC requires).
    #[must_use = "a builder method returns the configured layer"]
    pub fn rejection_message(self, message: &str) -> Self {
        self.configure(|c| c.rejection.set_message(message))
    }

    /// Inserts the [`ConnectionTracker`] into the extensions of every admitted request, so
    /// handlers can extract it (`Extension<ConnectionTracker>` in axum) and end long streams
    /// when the drain begins ([`ConnectionTracker::draining`]).
    ///
    /// Off by default: inserting an extension costs up to three allocations per request (the
    /// extension map, its table, the boxed value; measured in `tests/no_alloc.rs`). Handlers
    /// can instead get the tracker ([`tracker`](Self::tracker)) through application state.
    #[must_use = "a builder method returns the configured layer"]
    pub fn with_tracker_extension(self) -> Self {
        self.configure(|c| c.tracker_extension = true)
    }

    /// How much of a refused HTTP/1.x request's body the layer reads (and throws away) before
    /// sending its answer. Default: 16 MiB.
    ///
    /// When an HTTP/1.x server answers without reading the request body, the connection is
    /// closed with the rest of the upload unread, and the client may see a reset or a broken
    /// pipe instead of the `503`, unable to tell that its request was never processed. Reading
    /// the body first lets the `503` arrive. Refused requests are not counted in flight, so this
    /// never delays [`drained`](Self::drained). Bodies declared (`Content-Length`) larger than
    /// the limit are not read; requests with `Expect: 100-continue` and HTTP/2 or HTTP/3
    /// requests need no reading and get their answer at once. `0` turns reading off.
    #[must_use = "a builder method returns the configured layer"]
    pub fn refused_body_limit(self, bytes: u64) -> Self {
        self.configure(|c| c.refused_body_limit = bytes)
    }

    /// For how long at most the layer reads a refused HTTP/1.x request's body (see
    /// [`refused_body_limit`](Self::refused_body_limit)). Default: 1 s.
    ///
    /// When the time is up, the answer is sent at once and the connection closes with the rest
    /// of the upload unread: a client still sending may then see a reset or a broken pipe
    /// instead of the `503`, as if reading were off. The limit keeps a client that stalls in
    /// the middle of an upload from holding the connection, and with it the server's graceful
    /// shutdown, open. `Duration::ZERO` turns reading off.
    #[must_use = "a builder method returns the configured layer"]
    pub fn refused_body_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.refused_body_timeout = timeout)
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.routes_by_path = config.readiness_path.is_some()
            || config.liveness_path.is_some()
            || !config.exempt_paths.is_empty();
        self
    }
}

/// A layer with its own token: `DrainLayer::new(CancellationToken::new())`. Get the token with
/// [`token`](DrainLayer::token), or let a [`Shutdown`](crate::Shutdown) cancel it.
impl Default for DrainLayer {
    fn default() -> Self {
        Self::new(CancellationToken::new())
    }
}

/// The layer's tracker, so that APIs taking a tracker take the layer too:
/// `Shutdown::builder(&drain)`.
impl From<&DrainLayer> for ConnectionTracker {
    fn from(layer: &DrainLayer) -> Self {
        layer.tracker()
    }
}

/// `S: 'static`: the layer recognises a [`ReadinessService`](crate::ReadinessService) it wraps
/// by its type (`TypeId`), which Rust gives only for `'static` types, as every tower service
/// a server runs is.
impl<S: 'static> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Drain::new(inner, Arc::clone(&self.config))
    }
}

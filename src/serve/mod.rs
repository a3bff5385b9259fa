//! [`serve`]: a connection-owning server (hyper-util, HTTP/1.1 and HTTP/2 cleartext on one
//! port) that drains like Envoy: it keeps accepting through the notice period and tells every
//! connection to leave while still serving it.
//!
//! # What it does, and when
//!
//! | moment | listener | HTTP/1.x connections | HTTP/2 connections |
//! |---|---|---|---|
//! | serving | accepts | keep-alive | as the client likes |
//! | **announce** ([`announce_shutdown`](crate::ConnectionTracker::announce_shutdown): the notice period begins) | still accepts | the next response carries `Connection: close`, then the connection closes | graceful `GOAWAY` at once (first with the maximum stream id and a `PING`, then the final one a round trip later); streams sent before it are served; the client opens a new connection, which the load balancer, seeing readiness fail, sends elsewhere |
//! | accepted during the notice | | served; with the layer, its responses carry `Connection: close` | served until the drain, as the framework's server serves it: told to leave again, a client that just came back would have its streams refused |
//! | **drain** (the token is cancelled) | closed, once the connections already queued in its backlog are taken and served (an [`Inherited`] socket leaves them to the next generation) | idle ones close; busy ones close after the response in progress; a connection that has sent nothing closes unless just accepted | `GOAWAY` if not yet sent |
//! | drain deadline ([`Shutdown`](crate::Shutdown)) | | cut | cut |
//!
//! The future completes once every connection has closed: every response byte has been
//! handed to the kernel. Give it to [`Shutdown::spawn_server`](crate::Shutdown::spawn_server)
//! and the drain waits for exactly that; at the drain deadline the connections still open are
//! cut, and the [report](crate::ShutdownReport) names each one with the last request it
//! delivered.
//!
//! A connection closes without the lingering close (reading until the peer closes, up to 2 s,
//! so that a reset does not destroy the peer's unread responses) unless something can be
//! lost: always for HTTP/2, whose peers keep writing after a goodbye; for HTTP/1.x only if the
//! peer is still sending. An idle client that does not read (a pooled keep-alive connection)
//! or never wrote (a pre-connection) does not hold the exit.
//!
//! Pinned clients (an HTTP/2 or gRPC connection that an L4 load balancer such as kube-proxy
//! keeps on this instance) thus move during the notice period, within a round trip of the
//! announce, instead of racing the drain. [`max_connection_age`](Serve::max_connection_age)
//! (gRFC A9) moves them while serving too, to rebalance long-lived connections.
//!
//! # A drop-in for `axum::serve` and tonic's `Server`
//!
//! - **Any listener** ([`Listener`], the shape of axum 0.8's): a tokio
//!   [`TcpListener`](tokio::net::TcpListener), a [`UnixListener`](tokio::net::UnixListener)
//!   (the peer's credentials in [`UnixPeer`]), a socket inherited from systemd or a process
//!   manager ([`Inherited`]), or connections your own code accepts. The protocol is read from
//!   the first bytes, so any stream works.
//! - **The client's address**: give `serve` a make service, as `axum::serve` takes one:
//!   `app.into_make_service_with_connect_info::<SocketAddr>()` for axum's `ConnectInfo`
//!   ([`ConnectionService`]); [`TonicConnectInfo`] (feature `tonic`) for tonic's
//!   `Request::remote_addr()`.
//! - **WebSockets**: HTTP/1.1 upgrades, and HTTP/2 extended `CONNECT` (RFC 8441) as
//!   `axum::serve` enables it. An upgraded connection counts as open until its stream ends,
//!   and is named in the report if cut; handlers see the drain begin through
//!   [`DrainLayer::token`](crate::DrainLayer::token).
//! - **Settings** ([`Serve`]'s methods, defaults in its docs), `TCP_NODELAY` included.
//! - **TLS** (feature `rustls`): [`Serve::tls`] takes the rustls `ServerConfig` you gave
//!   axum-server or tonic; ALPN chooses HTTP/2 or HTTP/1.1, certificates reload without a
//!   restart, and a connection in its handshake at the drain is served (see `serve::tls`).
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use tower_drain::DrainLayer;
//!
//! # async fn run() -> std::io::Result<()> {
//! let drain = DrainLayer::default();
//! let app = Router::new()
//!     .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
//!         format!("hello {peer}")
//!     }))
//!     .layer(drain.clone());
//! let listener = tower_drain::serve::bind("0.0.0.0:3000").await?;
//! // was: axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! tower_drain::serve(listener, &drain, app.into_make_service_with_connect_info::<SocketAddr>())
//!     .await
//! # }
//! ```
//!
//! # The listen backlog
//!
//! `serve` takes the listener as you bound it, backlog included. tokio's
//! [`TcpListener::bind`](tokio::net::TcpListener::bind) listens with a backlog of 128 (std's
//! value). When another instance restarts, the load balancer moves its load onto this one at once,
//! often one new connection per request it moves. Past the backlog the kernel drops their `SYN`s
//! and each client retries a second later, which a balancer's connect timeout often does not wait
//! for: nginx, with its defaults (`max_fails=1`), then takes this healthy instance out of rotation
//! as well, while the restarting one is out, and answers `502` to everything for `fail_timeout`.
//! Production servers listen with more (nginx 511, Go the system maximum, `net.core.somaxconn`):
//! [`bind`] is `TcpListener::bind` with a backlog of 1024.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tower_drain::serve::bind("0.0.0.0:3000").await?;
//! # drop(listener);
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! With [`Shutdown`](crate::Shutdown) (feature `shutdown`), give it to
//! [`spawn_server`](crate::Shutdown::spawn_server):
//! `shutdown.spawn_server("http", tower_drain::serve(listener, &drain, app))`. By hand:
//!
//! ```
//! use std::future::IntoFuture;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tower_drain::DrainLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let drain = DrainLayer::default().readiness_path("/readyz");
//! let app = Router::new().route("/", get(|| async { "hello" })).layer(drain.clone());
//! let listener = tower_drain::serve::bind("127.0.0.1:0").await?;
//! let server = tokio::spawn(tower_drain::serve(listener, &drain, app.into_make_service()).into_future());
//!
//! // On SIGTERM:
//! let tracker = drain.tracker();
//! tracker.announce_shutdown(); // readiness fails; every connection is told to leave
//! # let notice = Duration::ZERO;
//! tokio::time::sleep(notice).await; // still accepting and serving
//! drain.token().cancel(); // stop accepting; the requests in flight finish
//! server.await??; // every connection closed, every response written
//! tracker.close(); // nothing more can arrive
//! tracker.drained().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use self::options::Options;
use self::service::HttpService;
use crate::tracker::ConnectionTracker;
use crate::DrainLayer;

pub use self::bind::bind;
#[cfg(unix)]
pub use self::listener::UnixPeer;
pub use self::listener::{Inherited, Listener};
pub use self::make::{Cloned, ConnectionService, Made};
pub use self::tap::TapIo;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use self::tonic::{TonicConnectInfo, WithTonicConnectInfo};

mod accept;
mod bind;
mod conn_io;
mod connection;
mod gate;
mod held_pong;
mod hyper_conn;
mod idle;
mod leave;
mod lifecycle;
mod linger;
mod listener;
mod make;
mod options;
mod protocol;
mod service;
mod settings;
mod state;
mod tap;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
#[cfg(feature = "tonic")]
mod tonic;

/// Serves `app` on `listener`, draining with `drain`'s tracker: see the
/// [module docs](self) for what it does at each moment of a shutdown.
///
/// - `listener`: a tokio [`TcpListener`](tokio::net::TcpListener) (see [`bind`]), a
///   [`UnixListener`](tokio::net::UnixListener), an [`Inherited`] socket, or any
///   [`Listener`].
/// - `app`: what each connection's requests go to. A service, cloned for each connection (an
///   axum `Router`, tonic `Routes`, any tower HTTP service), or a make service called with
///   each connection's address, such as axum's
///   `into_make_service_with_connect_info::<SocketAddr>()` for the `ConnectInfo` extractor
///   ([`ConnectionService`]). With axum, pass `app.into_make_service()` (or that) rather
///   than the `Router`: axum then turns its handlers into routes once, not on every request,
///   which is what `axum::serve` does and saves three allocations a request. Apply the layer
///   to it as usual (`.layer(drain.clone())`); `serve` only uses the layer's tracker for the timing, and counts connections into it.
///
/// The returned [`Serve`] is configured with its builder methods and awaited (it is
/// `IntoFuture`), or given to [`Shutdown::spawn_server`](crate::Shutdown::spawn_server).
/// It completes once the drain has begun and every connection has closed.
pub fn serve<L, M, K>(listener: L, drain: &DrainLayer, app: M) -> Serve<L, M, K>
where
    L: Listener,
    M: ConnectionService<L::Addr, K>,
{
    Serve {
        listener,
        tracker: drain.tracker(),
        app,
        options: Options::default(),
        kind: PhantomData,
    }
}

/// A server built by [`serve`]: configure it, then await it or give it to
/// [`Shutdown::spawn_server`](crate::Shutdown::spawn_server).
///
/// # Defaults
///
/// | Setting | Default |
/// |---|---|
/// | [`header_read_timeout`](Self::header_read_timeout) | 30 s, to the first request's head |
/// | [`http2_keep_alive`](Self::http2_keep_alive) | off |
/// | [`http2_max_concurrent_streams`](Self::http2_max_concurrent_streams) | 200 |
/// | [`idle_timeout`](Self::idle_timeout) | none |
/// | [`max_connection_age`](Self::max_connection_age) | none |
/// | [`max_connections`](Self::max_connections) | no limit |
/// | [`tap_io`](Self::tap_io) | none |
/// | [`tcp_nodelay`](Self::tcp_nodelay) | on |
/// | [`tcp_keepalive`](Self::tcp_keepalive) | off |
/// | [`initial_stream_window_size`](Self::initial_stream_window_size) | 1 MiB |
/// | [`initial_connection_window_size`](Self::initial_connection_window_size) | 1 MiB |
/// | [`http2_adaptive_window`](Self::http2_adaptive_window) | off |
/// | [`max_frame_size`](Self::max_frame_size) | 16 KiB |
/// | [`http2_max_header_list_size`](Self::http2_max_header_list_size) | 16 KiB |
/// | [`http2_max_pending_accept_reset_streams`](Self::http2_max_pending_accept_reset_streams) | 20 |
/// | HTTP/2 extended `CONNECT` (RFC 8441, WebSockets over HTTP/2) | on, as in `axum::serve` |
/// | [`http1_max_headers`](Self::http1_max_headers) | 100 |
/// | [`http1_max_buf_size`](Self::http1_max_buf_size) | 417 792 bytes (about 400 KiB) |
///
/// The HTTP/2 and HTTP/1.x values are hyper's, written out in `serve` so that they stay
/// what this table says whatever hyper's version.
#[must_use = "a server does nothing until it is awaited or given to Shutdown::spawn_server"]
pub struct Serve<L, M, K = Cloned> {
    listener: L,
    tracker: ConnectionTracker,
    app: M,
    options: Options,
    kind: PhantomData<fn() -> K>,
}

/// Runs the server, once the app's service is one `serve` can run: a tower HTTP service
/// taking `Request<hyper::body::Incoming>`, `Clone + Send + 'static`, with `Send` futures
/// and bodies, errors that convert into [`BoxError`](crate::BoxError).
impl<L, M, K> IntoFuture for Serve<L, M, K>
where
    L: Listener,
    M: ConnectionService<L::Addr, K>,
    M::Service: HttpService,
    K: 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(accept::run(
            self.listener,
            self.tracker,
            self.app,
            self.options,
        ))
    }
}

impl<L, M, K> fmt::Debug for Serve<L, M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("tracker", &self.tracker)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

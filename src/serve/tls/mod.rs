//! TLS in [`serve`](crate::serve()) (feature `rustls`): [`Serve::tls`] terminates TLS with
//! rustls, through tokio-rustls, on any [`Listener`](super::Listener).
//!
//! - **Drop-in**: give it the [`rustls::ServerConfig`] you gave axum-server or tonic
//!   (`Arc<ServerConfig>` or `ServerConfig`), or [`TlsConfig::from_pem_files`].
//! - **ALPN chooses the protocol**: `h2` and `http/1.1` are offered if the configuration names
//!   none; a client without ALPN is served as in cleartext (HTTP/1.1, or HTTP/2 with prior
//!   knowledge). The first bytes are still read, to bound them by the header read timeout
//!   (hyper has no timer for the HTTP/2 preface); bytes that contradict the negotiated protocol
//!   close the connection.
//! - **The handshake runs in the connection's task**, never in the accept loop: a client that
//!   stalls it holds only its own connection, closed after
//!   [`header_read_timeout`](super::Serve::header_read_timeout) (counted from the accept).
//! - **Drained like cleartext**: once the handshake is done, the drain's rules apply as to any
//!   connection. At the drain, a connection still in its handshake is treated as a first
//!   request on the wire: if its `ClientHello` has come, it is given a second to finish, then
//!   served (hyper #3792's case); if not, it is closed as a silent connection is.
//! - **Goodbye**: `close_notify` is sent before the socket closes, then the lingering close
//!   on the TCP socket underneath, as in cleartext.
//! - **Certificate reload** without a restart: [`TlsConfig::reload`] (or
//!   [`reload_from_pem_files`](TlsConfig::reload_from_pem_files)) applies to new handshakes;
//!   open connections keep theirs.
//! - **Client certificates** (mutual TLS) reach handlers as the [`PeerCertificates`] request
//!   extension. The client's address reaches make services as it does in cleartext
//!   (`into_make_service_with_connect_info::<SocketAddr>()`).
//!
//! # The crypto provider
//!
//! rustls is built with its `ring` provider, not its default aws-lc-rs: `ring` builds with a
//! C compiler alone, while aws-lc-rs also needs cmake (and nasm on some targets), which a
//! plain Linux machine or a slim build image often lacks. [`TlsConfig::from_pem_files`] names
//! the `ring` provider explicitly; a [`ServerConfig`](rustls::ServerConfig) you build
//! yourself may use any provider.
//!
//! # Examples
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use axum::{extract::ConnectInfo, routing::get, Router};
//! use tower_drain::{serve::tls::TlsConfig, DrainLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let drain = DrainLayer::default();
//! let app = Router::new()
//!     .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
//!         format!("hello {peer}")
//!     }))
//!     .layer(drain.clone());
//! // was: axum_server::bind_rustls(addr, RustlsConfig::from_config(config))
//! let listener = tower_drain::serve::bind("0.0.0.0:3443").await?;
//! tower_drain::serve(listener, &drain, app.into_make_service_with_connect_info::<SocketAddr>())
//!     .tls(TlsConfig::from_pem_files("cert.pem", "key.pem")?)
//!     .await?;
//! # Ok(())
//! # }
//! ```

pub(super) use self::acceptor::{handshake, negotiated};
pub use self::config::TlsConfig;
pub use self::connect_info::PeerCertificates;
pub(super) use self::connect_info::WithPeerCertificates;

/// A connection's stream once its handshake is done, as `serve` holds it: boxed
/// (`connection.rs` says why). `linger.rs` finds the TCP socket under it by this type.
pub(super) type Served<Io> = Box<tokio_rustls::server::TlsStream<Io>>;

use super::Serve;

mod acceptor;
mod config;
mod connect_info;

impl<L, M, K> Serve<L, M, K> {
    /// Serves TLS with `config` (feature `rustls`): an `Arc<rustls::ServerConfig>`, a
    /// `ServerConfig`, or a [`TlsConfig`] to reload later. See the
    /// [`tls` module docs](self) for what changes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    /// # let drain = tower_drain::DrainLayer::default();
    /// # let app = axum::Router::new().layer(drain.clone());
    /// let listener = tower_drain::serve::bind("0.0.0.0:3443").await?;
    /// tower_drain::serve(listener, &drain, app.into_make_service())
    ///     .tls(config)
    ///     .await
    /// # }
    /// ```
    pub fn tls(mut self, config: impl Into<TlsConfig>) -> Self {
        self.options.tls = Some(config.into());
        self
    }
}

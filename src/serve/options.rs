//! The settings of a `Serve`, and the hyper-util builders made from them: what
//! every connection of one server shares.

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// The settings of a `Serve`, shared by its connections.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) header_read_timeout: Duration,
    pub(super) keep_alive_interval: Option<Duration>,
    pub(super) keep_alive_timeout: Duration,
    pub(super) max_concurrent_streams: u32,
    pub(super) max_connection_age: Option<Duration>,
    pub(super) max_connection_age_grace: Option<Duration>,
    pub(super) tcp_nodelay: bool,
    pub(super) tcp_keepalive: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            keep_alive_interval: Some(Duration::from_secs(60)),
            keep_alive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 200,
            max_connection_age: None,
            max_connection_age_grace: None,
            tcp_nodelay: true,
            tcp_keepalive: None,
        }
    }
}

/// The hyper-util builders for each protocol: the protocol is known before hyper sees the
/// connection (see `protocol.rs`).
pub(super) struct Builders {
    pub(super) http1: auto::Builder<TokioExecutor>,
    pub(super) http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub(super) fn new(options: &Options) -> Self {
        let mut http1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        // No timer for HTTP/1: hyper's own header read timeout allocates a timer for every
        // request (it drops it after each head). The connection's task bounds its first
        // request instead (`Serve::header_read_timeout`).
        http1.http1().header_read_timeout(None);
        let mut http2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        http2
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(options.keep_alive_interval)
            .keep_alive_timeout(options.keep_alive_timeout)
            .max_concurrent_streams(options.max_concurrent_streams)
            // WebSockets over HTTP/2 (RFC 8441), as axum::serve turns it on.
            .enable_connect_protocol();
        Self { http1, http2 }
    }
}

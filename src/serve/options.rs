//! The settings of a `Serve`, and hyper's builders made from them: what every connection of
//! one server shares. The setters, with their documentation, are in
//! `settings.rs`; the defaults here are the ones its table lists.

use std::sync::Arc;
use std::time::Duration;

use std::error::Error as StdError;

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::TokioTimer;

use super::hyper_conn::HyperConnection;
use super::idle::{StreamExecutor, Streams};
use super::protocol::Protocol;

/// hyper's defaults, written out so that the documented table holds whatever hyper's version.
pub(super) const DEFAULT_WINDOW: u32 = 1024 * 1024;
pub(super) const DEFAULT_MAX_FRAME_SIZE: u32 = 16 * 1024;
pub(super) const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// h2's default since 0.4 (hyper issue 2877).
pub(super) const DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
pub(super) const DEFAULT_HTTP1_MAX_HEADERS: usize = 100;
pub(super) const DEFAULT_HTTP1_MAX_BUF_SIZE: usize = 8192 + 4096 * 100;

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
    pub(super) initial_stream_window_size: u32,
    pub(super) initial_connection_window_size: u32,
    pub(super) adaptive_window: bool,
    pub(super) max_frame_size: u32,
    pub(super) max_header_list_size: u32,
    pub(super) max_pending_accept_reset_streams: usize,
    pub(super) http1_max_headers: usize,
    pub(super) http1_max_buf_size: usize,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
    #[cfg(feature = "rustls")]
    pub(super) tls: Option<super::tls::TlsConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            max_concurrent_streams: 200,
            max_connection_age: None,
            max_connection_age_grace: None,
            tcp_nodelay: true,
            tcp_keepalive: None,
            initial_stream_window_size: DEFAULT_WINDOW,
            initial_connection_window_size: DEFAULT_WINDOW,
            adaptive_window: false,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            max_pending_accept_reset_streams: DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS,
            http1_max_headers: DEFAULT_HTTP1_MAX_HEADERS,
            http1_max_buf_size: DEFAULT_HTTP1_MAX_BUF_SIZE,
            idle_timeout: None,
            max_connections: None,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }
}

/// hyper's builders for each protocol: the protocol is known before hyper sees the
/// connection (see `protocol.rs`).
pub(super) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<StreamExecutor>,
}

impl Builders {
    pub(super) fn new(options: &Options) -> Self {
        Self {
            http1: http1(options),
            http2: http2(options, StreamExecutor::default()),
        }
    }

    /// hyper's connection for `protocol` over `io`, and the count of its streams in flight
    /// when the idle timeout needs it (HTTP/2: hyper spawns each stream, so the executor
    /// counts them, with a builder of its own; HTTP/1.x connections are timed by hyper itself,
    /// see [`http1`]). Without an idle timeout, the shared builders: nothing per connection.
    pub(super) fn serve<I, S, B>(
        &self,
        protocol: Protocol,
        io: I,
        service: S,
        options: &Options,
    ) -> (HyperConnection<I, S, StreamExecutor>, Option<Arc<Streams>>)
    where
        S: HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        S::Future: Send + 'static,
        I: Read + Write + Unpin + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        match protocol {
            Protocol::Http1 => {
                let conn = self.http1.serve_connection(io, service).with_upgrades();
                (HyperConnection::Http1 { conn }, None)
            }
            Protocol::Http2 if options.idle_timeout.is_none() => {
                let conn = self.http2.serve_connection(io, service);
                (HyperConnection::Http2 { conn }, None)
            }
            Protocol::Http2 => {
                let streams = Arc::new(Streams::default());
                let executor = StreamExecutor::counting(Arc::clone(&streams));
                let conn = http2(options, executor).serve_connection(io, service);
                (HyperConnection::Http2 { conn }, Some(streams))
            }
        }
    }
}

/// HTTP/1.x. Without an idle timeout, no timer: hyper's header read timeout allocates a timer
/// for every request (it drops it after each head), and the connection's task bounds its first
/// request itself (`Serve::header_read_timeout`). With one, hyper's header timer is the idle
/// timeout: it runs from the moment a connection has nothing in flight (its previous response
/// written) until the next request's head has arrived.
fn http1(options: &Options) -> http1::Builder {
    let mut http1 = http1::Builder::new();
    if options.http1_max_buf_size != DEFAULT_HTTP1_MAX_BUF_SIZE {
        http1.max_buf_size(options.http1_max_buf_size);
    }
    // Only when changed: given any limit, hyper parses each request's headers into a vector
    // sized to it (about a thousand instructions and a copy per request), where with none it
    // uses an array of its default size, 100.
    if options.http1_max_headers != DEFAULT_HTTP1_MAX_HEADERS {
        http1.max_headers(options.http1_max_headers);
    }
    match options.idle_timeout {
        Some(idle) => {
            http1
                .timer(TokioTimer::new())
                .header_read_timeout(idle.min(options.header_read_timeout));
        }
        None => {
            http1.header_read_timeout(None);
        }
    }
    http1
}

fn http2(options: &Options, executor: StreamExecutor) -> http2::Builder<StreamExecutor> {
    let mut http2 = http2::Builder::new(executor);
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .max_concurrent_streams(options.max_concurrent_streams)
        .initial_stream_window_size(options.initial_stream_window_size)
        .initial_connection_window_size(options.initial_connection_window_size)
        .max_frame_size(options.max_frame_size)
        .max_header_list_size(options.max_header_list_size)
        .max_pending_accept_reset_streams(options.max_pending_accept_reset_streams)
        // WebSockets over HTTP/2 (RFC 8441), as axum::serve turns it on.
        .enable_connect_protocol();
    // After the window sizes: hyper's adaptive window replaces them.
    if options.adaptive_window {
        http2.adaptive_window(true);
    }
    http2
}

//! [`Serve`]'s settings: one method each, named as tonic's `Server` names them where it has
//! the setting (`initial_stream_window_size`, `http2_adaptive_window`, `max_frame_size`...),
//! hyper-util's builder methods with their protocol's prefix otherwise. Each documents its
//! default; [`Serve`]'s docs list them all.

use std::time::Duration;

use super::options::{
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_HEADER_LIST_SIZE, DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS,
    DEFAULT_WINDOW,
};
use super::tap::TapIo;
use super::{Listener, Serve};

/// The largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// The largest HTTP/2 frame size (RFC 9113 §6.5.2).
const MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// hyper's smallest HTTP/1.x buffer.
const MIN_HTTP1_BUF_SIZE: usize = 8192;

impl<L, M, K> Serve<L, M, K> {
    /// How long a connection may take, from its accept, to say which protocol it speaks and,
    /// on HTTP/1.x, to send its first request's headers; it is closed after that, never
    /// served. Bounds the connections of slow or silent clients that never send a request.
    /// Default 30 s.
    ///
    /// Later requests on a keep-alive connection are not timed by default (as under
    /// `axum::serve`): hyper's per-request header timer costs an allocation and a timer for
    /// every request. [`idle_timeout`](Self::idle_timeout) turns it on for HTTP/1.x.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero: every connection would be closed before its first request.
    #[track_caller]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "Serve::header_read_timeout must be non-zero: a zero timeout would close every \
             connection before its first request"
        );
        self.options.header_read_timeout = timeout;
        self
    }

    /// HTTP/2 keep-alive: a `PING` every `interval` on an idle connection, closed if not
    /// answered within `timeout`. `None` turns it off. Detects clients that vanished without
    /// closing. Default: off, as in `axum::serve`, tonic's `Server` and hyper (its pings and
    /// timers cost about 1 % of a small request's instructions); `Some(60 s)` and 20 s is a
    /// common choice.
    pub fn http2_keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.options.keep_alive_interval = interval;
        self.options.keep_alive_timeout = timeout;
        self
    }

    /// The most streams a client may have open at once on one HTTP/2 connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`). Default: 200.
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.options.max_concurrent_streams = max;
        self
    }

    /// Tells each connection to leave once it is `age` old (gRFC A9's `MAX_CONNECTION_AGE`),
    /// give or take 10 % at random so that connections opened together do not leave together:
    /// HTTP/2 connections get a graceful `GOAWAY`, HTTP/1.x ones `Connection: close` on their
    /// next response. Clients reconnect and the load balancer spreads them anew: the way to
    /// rebalance long-lived HTTP/2 and gRPC clients while serving. Default: never.
    ///
    /// `grace` (gRFC A9's `MAX_CONNECTION_AGE_GRACE`) then bounds how long the connection's
    /// streams in flight may take before it is closed; `None` waits for them.
    pub fn max_connection_age(mut self, age: Duration, grace: Option<Duration>) -> Self {
        self.options.max_connection_age = Some(age);
        self.options.max_connection_age_grace = grace;
        self
    }

    /// Tells a connection that has had no request in flight for `timeout` to leave, as the
    /// drain would: HTTP/2 gets a graceful `GOAWAY` (gRPC's `MAX_CONNECTION_IDLE`, Go's
    /// `IdleTimeout`), an HTTP/1.x connection is closed while it waits for its next request.
    /// Frees what idle clients hold (a file descriptor, buffers, a slot of
    /// [`max_connections`](Self::max_connections)). Default: none for HTTP/2; HTTP/1.x
    /// connections are closed after [`header_read_timeout`](Self::header_read_timeout)
    /// without a request.
    ///
    /// A request is in flight until its response's last byte is written. HTTP/1.x is timed by
    /// hyper from its previous response to the end of the next request's headers: the shorter
    /// of this and `header_read_timeout` bounds that wait. HTTP/2 connections then count their
    /// streams: two atomic additions per stream.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero: every connection would be closed as soon as it is idle.
    #[track_caller]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "Serve::idle_timeout must be non-zero: a zero timeout would close every \
             connection as soon as it is idle"
        );
        self.options.idle_timeout = Some(timeout);
        self
    }

    /// The most connections served at once. Once reached, `serve` stops accepting: new
    /// connections wait in the listen backlog (see [`bind`](super::bind)) and are accepted as
    /// open ones close. None is refused or reset by `serve`. At the drain, the connections
    /// already queued are taken whatever the limit, so that closing the listener resets none.
    /// Default: no limit.
    ///
    /// # Panics
    ///
    /// If `max` is zero (nothing would ever be accepted), or above
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS).
    #[track_caller]
    pub fn max_connections(mut self, max: usize) -> Self {
        assert!(
            max > 0 && max <= tokio::sync::Semaphore::MAX_PERMITS,
            "Serve::max_connections must be between 1 and Semaphore::MAX_PERMITS, not {max}"
        );
        self.options.max_connections = Some(max);
        self
    }

    /// `TCP_NODELAY` on each TCP connection: small writes (an HTTP/2 frame, a gRPC message, a
    /// response's last bytes) leave at once instead of waiting for the previous segment's
    /// acknowledgement (Nagle's algorithm), at the price of more, smaller packets under load.
    /// Default: on, as tonic's server and Go's `net/http` do (`axum::serve` leaves the
    /// system's default, off). No effect on other streams.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.options.tcp_nodelay = nodelay;
        self
    }

    /// TCP keepalive on each TCP connection: probes once it has been idle for `idle`, so that
    /// a peer that vanished (a crashed client, a dropped NAT entry) is noticed and its
    /// connection closed. `None` leaves the system's default (off). Default: `None`.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.options.tcp_keepalive = idle;
        self
    }

    /// HTTP/2 `SETTINGS_INITIAL_WINDOW_SIZE`: how many bytes of each request body a client
    /// may send before the server reads them. Larger windows carry large uploads faster over
    /// long round trips, at the price of memory per stream. `None`: the default, 1 MiB
    /// (hyper's).
    ///
    /// # Panics
    ///
    /// Above 2³¹ − 1, the largest window HTTP/2 allows.
    #[track_caller]
    pub fn initial_stream_window_size(mut self, size: impl Into<Option<u32>>) -> Self {
        let size = size.into().unwrap_or(DEFAULT_WINDOW);
        assert!(
            size <= MAX_WINDOW,
            "Serve::initial_stream_window_size must be at most 2^31 - 1, not {size}"
        );
        self.options.initial_stream_window_size = size;
        self
    }

    /// The HTTP/2 connection's flow-control window: how many bytes of all its request bodies
    /// together a client may send before the server reads them. `None`: the default, 1 MiB
    /// (hyper's).
    ///
    /// # Panics
    ///
    /// Above 2³¹ − 1, the largest window HTTP/2 allows.
    #[track_caller]
    pub fn initial_connection_window_size(mut self, size: impl Into<Option<u32>>) -> Self {
        let size = size.into().unwrap_or(DEFAULT_WINDOW);
        assert!(
            size <= MAX_WINDOW,
            "Serve::initial_connection_window_size must be at most 2^31 - 1, not {size}"
        );
        self.options.initial_connection_window_size = size;
        self
    }

    /// HTTP/2 adaptive flow control: the windows start at the protocol's 65 535 bytes and grow
    /// with the connection's measured bandwidth-delay product (hyper `PING`s to measure it),
    /// in place of [`initial_stream_window_size`](Self::initial_stream_window_size) and
    /// [`initial_connection_window_size`](Self::initial_connection_window_size). `None`: the
    /// default, off.
    pub fn http2_adaptive_window(mut self, enabled: impl Into<Option<bool>>) -> Self {
        self.options.adaptive_window = enabled.into().unwrap_or(false);
        self
    }

    /// HTTP/2 `SETTINGS_MAX_FRAME_SIZE`: the largest frame payload a client may send. `None`:
    /// the default, 16 KiB (the protocol's smallest, hyper's default).
    ///
    /// # Panics
    ///
    /// Outside 16 384 ..= 16 777 215, the range HTTP/2 allows.
    #[track_caller]
    pub fn max_frame_size(mut self, size: impl Into<Option<u32>>) -> Self {
        let size = size.into().unwrap_or(DEFAULT_MAX_FRAME_SIZE);
        assert!(
            (DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&size),
            "Serve::max_frame_size must be within 16384..=16777215, not {size}"
        );
        self.options.max_frame_size = size;
        self
    }

    /// HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`: the largest request header list accepted,
    /// counted as HTTP/2 does (names and values, plus 32 bytes per field). A request with more
    /// is answered `431 Request Header Fields Too Large`. `None`: the default, 16 KiB
    /// (hyper's).
    pub fn http2_max_header_list_size(mut self, max: impl Into<Option<u32>>) -> Self {
        self.options.max_header_list_size = max.into().unwrap_or(DEFAULT_MAX_HEADER_LIST_SIZE);
        self
    }

    /// How many HTTP/2 streams a client may open and reset before the server has even
    /// accepted them; past that the connection is closed with `GOAWAY` (`ENHANCE_YOUR_CALM`).
    /// The guard against rapid reset (CVE-2023-44487), which cannot be turned off. `None`:
    /// the default, 20 (h2's).
    ///
    /// # Panics
    ///
    /// If `max` is zero: a client whose request is cancelled would lose its connection.
    #[track_caller]
    pub fn http2_max_pending_accept_reset_streams(mut self, max: impl Into<Option<usize>>) -> Self {
        let max = max
            .into()
            .unwrap_or(DEFAULT_MAX_PENDING_ACCEPT_RESET_STREAMS);
        assert!(
            max > 0,
            "Serve::http2_max_pending_accept_reset_streams must be non-zero"
        );
        self.options.max_pending_accept_reset_streams = max;
        self
    }

    /// The most header fields an HTTP/1.x request may have; one with more is answered
    /// `431 Request Header Fields Too Large`. Default: 100 (hyper's). hyper parses up to 100
    /// on the stack; a different value makes it allocate for each request's headers.
    pub fn http1_max_headers(mut self, max: usize) -> Self {
        self.options.http1_max_headers = max;
        self
    }

    /// The most bytes an HTTP/1.x connection buffers: a request head larger than this is
    /// answered `431 Request Header Fields Too Large`. Default: 417 792 bytes (about 400 KiB,
    /// hyper's).
    ///
    /// # Panics
    ///
    /// Below 8 192 bytes, hyper's smallest buffer.
    #[track_caller]
    pub fn http1_max_buf_size(mut self, max: usize) -> Self {
        assert!(
            max >= MIN_HTTP1_BUF_SIZE,
            "Serve::http1_max_buf_size must be at least 8192, not {max}"
        );
        self.options.http1_max_buf_size = max;
        self
    }

    /// Calls `tap` with each accepted connection, before it is served: to set a socket option
    /// (`SO_SNDBUF`, `IP_TOS`), or count or log connections. The same closure as axum's
    /// `ListenerExt::tap_io`. It runs before `serve`'s own socket options
    /// ([`tcp_nodelay`](Self::tcp_nodelay), [`tcp_keepalive`](Self::tcp_keepalive)), on the
    /// accept loop: keep it short. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tokio::net::TcpStream;
    /// use tower_drain::DrainLayer;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let drain = DrainLayer::default();
    /// let app = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
    ///     Ok::<_, Infallible>(http::Response::new(String::from("hello")))
    /// });
    /// let listener = tower_drain::serve::bind("127.0.0.1:0").await?;
    /// tower_drain::serve(listener, &drain, app)
    ///     .tap_io(|stream: &mut TcpStream| {
    ///         let _ = stream.set_ttl(64);
    ///     })
    ///     .await
    /// # }
    /// ```
    pub fn tap_io<F>(self, tap: F) -> Serve<TapIo<L, F>, M, K>
    where
        L: Listener,
        F: FnMut(&mut L::Io) + Send + 'static,
    {
        Serve {
            listener: TapIo::new(self.listener, tap),
            tracker: self.tracker,
            app: self.app,
            options: self.options,
            kind: self.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use hyper::body::Incoming;
    use tokio::net::TcpListener;

    use super::*;
    use crate::serve::{serve, Cloned};
    use crate::DrainLayer;

    async fn server() -> Serve<TcpListener, impl Clone, Cloned> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service = tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        serve(listener, &DrainLayer::default(), service)
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "header_read_timeout must be non-zero")]
    async fn zero_header_read_timeout_panics() {
        let _ = server().await.header_read_timeout(Duration::ZERO);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "idle_timeout must be non-zero")]
    async fn zero_idle_timeout_panics() {
        let _ = server().await.idle_timeout(Duration::ZERO);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "max_connections must be between 1")]
    async fn zero_max_connections_panics() {
        let _ = server().await.max_connections(0);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "initial_stream_window_size must be at most 2^31 - 1")]
    async fn stream_window_above_the_protocol_maximum_panics() {
        let _ = server().await.initial_stream_window_size(1 << 31);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "initial_connection_window_size must be at most 2^31 - 1")]
    async fn connection_window_above_the_protocol_maximum_panics() {
        let _ = server().await.initial_connection_window_size(u32::MAX);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "max_frame_size must be within")]
    async fn frame_size_below_the_protocol_minimum_panics() {
        let _ = server().await.max_frame_size(16_383);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "http2_max_pending_accept_reset_streams must be non-zero")]
    async fn zero_pending_accept_reset_streams_panics() {
        let _ = server().await.http2_max_pending_accept_reset_streams(0);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "http1_max_buf_size must be at least 8192")]
    async fn http1_buffer_below_hypers_minimum_panics() {
        let _ = server().await.http1_max_buf_size(8191);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn none_restores_the_documented_defaults() {
        let serve = server()
            .await
            .initial_stream_window_size(1 << 20)
            .initial_stream_window_size(None)
            .max_frame_size(None)
            .http2_max_header_list_size(None)
            .http2_max_pending_accept_reset_streams(None)
            .http2_adaptive_window(None);
        let defaults = super::super::options::Options::default();
        assert_eq!(format!("{:?}", serve.options), format!("{defaults:?}"));
    }
}

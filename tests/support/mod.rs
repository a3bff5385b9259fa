//! Shared helpers for the integration tests: real servers on 127.0.0.1:0, real hyper
//! clients (HTTP/1.1 and HTTP/2 prior knowledge), body reading and bounded waits.
//!
//! Every wait goes through [`within`] so a bug fails the test instead of hanging it.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upper bound for any single wait in a test: long enough for a loaded 2-core machine,
/// short enough that a hang fails quickly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
///
/// Unlike `tokio::time::timeout`, the deadline is checked *before* the future is polled
/// again: `timeout` re-polls the future when its timer fires, and a `drained()` whose
/// wake-up was lost would then see the finished drain and pass, 10 s late. Here a future
/// that only completes because the deadline woke it fails the test.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    let deadline = tokio::time::sleep(WAIT);
    tokio::pin!(deadline, future);
    tokio::select! {
        biased;
        () = &mut deadline => panic!("timed out after {WAIT:?} waiting for {what}"),
        output = &mut future => output,
    }
}

/// Waits until `condition` holds, re-checking every millisecond, for state that has no event
/// to wait on (the count a server task releases after the client saw the end of a body).
/// Fails the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Which protocol a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub const ALL: [Proto; 2] = [Proto::Http1, Proto::Http2];

    pub fn version(self) -> Version {
        match self {
            Proto::Http1 => Version::HTTP_11,
            Proto::Http2 => Version::HTTP_2,
        }
    }
}

/// A server running in a background task.
pub struct Server {
    pub addr: SocketAddr,
    /// Cancelling this stops accepting and starts the server's own graceful shutdown
    /// (HTTP/1 connections close when idle, HTTP/2 connections get `GOAWAY`).
    pub shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Wraps a server task started elsewhere (tonic) whose shutdown signal is `shutdown`.
    pub fn from_parts(addr: SocketAddr, shutdown: CancellationToken, task: JoinHandle<()>) -> Self {
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// Starts the server's graceful shutdown and waits until it has finished.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.finished().await;
    }

    /// Waits until the server task ends (its shutdown signal must fire by itself).
    pub async fn finished(self) {
        within("the server to shut down", self.task)
            .await
            .expect("server task panicked");
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Serves `service` with hyper-util's auto builder (HTTP/1.1 and HTTP/2 prior knowledge on
/// one port) and `GracefulShutdown`, until `shutdown` is cancelled.
pub async fn serve_hyper<S, B>(service: S, shutdown: CancellationToken) -> Server
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signal = shutdown.clone();
    let task = tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let hyper_service = TowerToHyperService::new(service.clone());
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), hyper_service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        // A connection error (a client that went away) ends only that connection.
                        let _ = conn.await;
                    });
                }
                () = signal.cancelled() => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Server {
        addr,
        shutdown,
        task,
    }
}

/// Serves an axum router with `axum::serve(..).with_graceful_shutdown(..)` until `shutdown`
/// is cancelled.
pub async fn serve_axum(app: axum::Router, shutdown: CancellationToken) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signal = shutdown.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .expect("axum::serve failed");
    });
    Server {
        addr,
        shutdown,
        task,
    }
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// How a [`Client`] connection is set up, where a test must not depend on the machine's or
/// hyper's defaults. `None` keeps the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientOptions {
    /// `SO_RCVBUF`, set before connecting. Setting it turns the kernel's receive-buffer
    /// autotuning off for this socket: what the connection holds unread then no longer grows
    /// with the machine's `net.ipv4.tcp_rmem` maximum (6 MiB on many distributions, 32 MiB on
    /// others). Linux doubles the value (for its bookkeeping): [`Client::recv_buffer`] is
    /// what the kernel reports back.
    pub recv_buffer: Option<u32>,
    /// HTTP/1.1: the most hyper's connection reads from the socket ahead of the body
    /// (hyper's default: 8 KiB + 400 KiB).
    pub http1_max_buf_size: Option<usize>,
    /// HTTP/2: the stream's initial flow-control window, the most the server may send on a
    /// stream beyond what the body's reader took (hyper's client default: 2 MiB).
    pub http2_stream_window: Option<u32>,
}

/// One client connection, HTTP/1.1 or HTTP/2 prior knowledge.
pub struct Client {
    pub proto: Proto,
    /// The socket's `SO_RCVBUF` right after it connected, as `getsockopt` reports it. It
    /// stays so only if [`ClientOptions::recv_buffer`] was set; otherwise the kernel tunes it.
    pub recv_buffer: usize,
    /// The client's own address, as the server sees it.
    local: SocketAddr,
    sender: Sender,
    conn: JoinHandle<()>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, proto: Proto) -> Client {
        Self::connect_with(addr, proto, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: SocketAddr, proto: Proto, options: ClientOptions) -> Client {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .unwrap();
        if let Some(size) = options.recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connect failed");
        stream.set_nodelay(true).unwrap();
        let recv_buffer = socket2::SockRef::from(&stream).recv_buffer_size().unwrap();
        let local = stream.local_addr().unwrap();
        let io = TokioIo::new(stream);
        let (sender, conn) = match proto {
            Proto::Http1 => {
                let mut builder = hyper::client::conn::http1::Builder::new();
                if let Some(max) = options.http1_max_buf_size {
                    builder.max_buf_size(max);
                }
                let (sender, conn) = builder.handshake(io).await.unwrap();
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Sender::Http1(sender), conn)
            }
            Proto::Http2 => {
                let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
                if let Some(window) = options.http2_stream_window {
                    builder.initial_stream_window_size(window);
                }
                let (sender, conn) = builder.handshake(io).await.unwrap();
                let conn = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Sender::Http2(sender), conn)
            }
        };
        Client {
            proto,
            recv_buffer,
            local,
            sender,
            conn,
        }
    }

    /// The client's own address, as the server sees it.
    #[allow(dead_code)] // not every test binary asks
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A second handle on the same connection (HTTP/2 only: streams are multiplexed).
    pub fn h2_clone(&self) -> Client {
        match &self.sender {
            Sender::Http2(sender) => Client {
                proto: Proto::Http2,
                recv_buffer: self.recv_buffer,
                local: self.local,
                sender: Sender::Http2(sender.clone()),
                conn: tokio::spawn(async {}),
            },
            Sender::Http1(_) => panic!("HTTP/1.1 connections cannot be shared"),
        }
    }

    pub fn request(&self, method: http::Method, path: &str) -> Request<Empty<Bytes>> {
        Request::builder()
            .method(method)
            .uri(path)
            .version(self.proto.version())
            .header(http::header::HOST, "127.0.0.1")
            .body(Empty::new())
            .unwrap()
    }

    /// Sends `request` and returns the response head (the body is read by the caller).
    pub async fn try_send(
        &mut self,
        mut request: Request<Empty<Bytes>>,
    ) -> hyper::Result<Response<Incoming>> {
        match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                // hyper's HTTP/2 client wants an absolute URI (for `:scheme`/`:authority`).
                if request.uri().authority().is_none() {
                    let uri = format!("http://127.0.0.1{}", request.uri());
                    *request.uri_mut() = uri.parse().unwrap();
                }
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }

    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> Response<Incoming> {
        within("a response head", self.try_send(request))
            .await
            .expect("request failed")
    }

    pub async fn get(&mut self, path: &str) -> Response<Incoming> {
        let request = self.request(http::Method::GET, path);
        self.send(request).await
    }

    /// Whether the connection has been closed (by either side).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// Closes the TCP connection abruptly, as a client that goes away does.
    pub fn disconnect(self) {
        self.conn.abort();
    }
}

/// Reads a whole body.
pub async fn read_body<B>(body: B) -> Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    within("the response body", body.collect())
        .await
        .expect("body failed")
        .to_bytes()
}

/// Reads the next non-empty data frame of a body, skipping trailers and the empty DATA frame
/// that carries an HTTP/2 END_STREAM. `None` at the end.
pub async fn next_data<B>(body: &mut B) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    loop {
        let frame = within("the next body frame", body.frame()).await?;
        match frame.expect("body failed").into_data() {
            Ok(data) if !data.is_empty() => return Some(data),
            _ => {}
        }
    }
}

/// The value of a header as a string, if present.
pub fn header<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("non-ASCII header").to_owned())
}

/// A response body fed by the test through a channel, so the test decides when each chunk
/// is sent and when the body ends (by dropping the [`ChunkSender`]).
pub fn channel_body() -> (ChunkSender, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (ChunkSender(tx), ChannelBody(rx))
}

/// Sends the chunks of a [`ChannelBody`]; dropping it ends the body.
#[derive(Debug)]
pub struct ChunkSender(tokio::sync::mpsc::Sender<Bytes>);

impl ChunkSender {
    /// Sends one chunk; fails once the body was dropped (the client went away).
    pub async fn send_data(&mut self, data: Bytes) -> Result<(), Bytes> {
        self.0.send(data).await.map_err(|e| e.0)
    }

    /// Resolves once the body was dropped.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

/// A body whose chunks come from a [`ChunkSender`].
#[derive(Debug)]
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(http_body::Frame::data(data))))
    }
}

/// Runs each named `async fn name(proto: Proto)` once per protocol, as the tests
/// `http1::name` and `http2::name`. The functions and `Proto` must be in scope where it is used.
#[allow(unused_macros)] // not every test binary runs tests per protocol
macro_rules! both_protocols {
    ($($name:ident),* $(,)?) => {
        mod http1 {
            per_protocol!(Http1: $($name),*);
        }
        mod http2 {
            per_protocol!(Http2: $($name),*);
        }
    };
}

#[allow(unused_macros)]
macro_rules! per_protocol {
    ($proto:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                super::$name(super::Proto::$proto).await
            }
        )*
    };
}

//! [`HyperConnection`]: hyper's own connection for the protocol a connection speaks. `serve`
//! reads the protocol from the first bytes itself (`protocol.rs`), so it hands the stream to
//! hyper's HTTP/1.x or HTTP/2 connection directly: hyper-util's `auto` connection would read
//! the version a second time and put every read of the connection through its rewind buffer.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Body;
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use pin_project_lite::pin_project;

pin_project! {
    /// One connection as hyper serves it, HTTP/1.x (with upgrades) or HTTP/2.
    #[project = HyperConnectionProj]
    pub(super) enum HyperConnection<I, S, E>
    where
        S: HttpService<Incoming>,
    {
        Http1 { #[pin] conn: http1::UpgradeableConnection<I, S> },
        Http2 { #[pin] conn: http2::Connection<I, S, E> },
    }
}

impl<I, S, E, B> HyperConnection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    /// Starts hyper's graceful shutdown: HTTP/2 `GOAWAY`; HTTP/1.x closes once its response
    /// in progress is written (at once if idle).
    pub(super) fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            HyperConnectionProj::Http1 { conn } => conn.graceful_shutdown(),
            HyperConnectionProj::Http2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<I, S, E, B> Future for HyperConnection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HyperConnectionProj::Http1 { conn } => conn.poll(cx),
            HyperConnectionProj::Http2 { conn } => conn.poll(cx),
        }
    }
}

//! [`TonicConnectInfo`]: tonic's `Request::remote_addr()` under [`serve`](crate::serve()), as
//! under tonic's own `Server` (feature `tonic`).

use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::Request;
use tonic::transport::server::TcpConnectInfo;
use tower_service::Service;

/// A make service for [`serve`](crate::serve()) that puts tonic's [`TcpConnectInfo`] on every
/// request of each connection, so that a gRPC handler's `request.remote_addr()` (and
/// `local_addr()`) answer as under tonic's `Server`.
///
/// # Examples
///
/// ```no_run
/// use tonic::service::Routes;
/// use tower_drain::serve::TonicConnectInfo;
/// use tower_drain::DrainLayer;
/// use tower_layer::Layer as _;
///
/// # async fn run(routes: Routes) -> std::io::Result<()> {
/// let drain = DrainLayer::default();
/// let listener = tower_drain::serve::bind("127.0.0.1:50051").await?;
/// let local = listener.local_addr()?;
/// let app = TonicConnectInfo::new(drain.layer(routes)).local_addr(local);
/// tower_drain::serve(listener, &drain, app).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TonicConnectInfo<S> {
    inner: S,
    local_addr: Option<SocketAddr>,
}

impl<S> TonicConnectInfo<S> {
    /// Wraps `service`, cloned for each connection.
    pub fn new(service: S) -> Self {
        Self {
            inner: service,
            local_addr: None,
        }
    }

    /// The listener's address, for `Request::local_addr()`; `None` (what it answers) without
    /// it.
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }
}

impl<S: Clone> Service<SocketAddr> for TonicConnectInfo<S> {
    type Response = WithTonicConnectInfo<S>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, peer: SocketAddr) -> Self::Future {
        ready(Ok(WithTonicConnectInfo {
            inner: self.inner.clone(),
            info: TcpConnectInfo {
                local_addr: self.local_addr,
                remote_addr: Some(peer),
            },
        }))
    }
}

/// One connection's service, made by [`TonicConnectInfo`]: its requests carry the
/// connection's [`TcpConnectInfo`].
#[derive(Debug, Clone)]
pub struct WithTonicConnectInfo<S> {
    inner: S,
    info: TcpConnectInfo,
}

impl<S, B> Service<Request<B>> for WithTonicConnectInfo<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.info.clone());
        self.inner.call(request)
    }
}

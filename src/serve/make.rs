//! [`ConnectionService`]: what [`serve`](crate::serve()) accepts as the app. Either a service,
//! cloned for each connection (an axum `Router`, tonic `Routes`), or a make service called
//! with each connection's address, as `axum::serve` and axum-server take one: axum's
//! `into_make_service_with_connect_info::<SocketAddr>()` puts `ConnectInfo` on every request.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;

use crate::BoxError;

/// What [`serve`](crate::serve()) can serve: a service, cloned for each connection, or a make
/// service, called with each connection's address ([`Listener::Addr`](super::Listener::Addr)).
///
/// Implemented for both; `K` tells them apart and is inferred (it is
/// [`Cloned`] or [`Made`]). Not to be implemented outside this crate.
///
/// # Examples
///
/// axum's `ConnectInfo`, as with `axum::serve`:
///
/// ```
/// use std::net::SocketAddr;
/// use axum::{extract::ConnectInfo, routing::get, Router};
/// use tower_drain::DrainLayer;
///
/// # async fn run() -> std::io::Result<()> {
/// let drain = DrainLayer::default();
/// let app = Router::new()
///     .route("/whoami", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
///         peer.to_string()
///     }))
///     .layer(drain.clone());
/// let listener = tower_drain::serve::bind("127.0.0.1:0").await?;
/// tower_drain::serve(
///     listener,
///     &drain,
///     app.into_make_service_with_connect_info::<SocketAddr>(),
/// )
/// .await
/// # }
/// ```
pub trait ConnectionService<Addr, K>: sealed::Sealed<Addr, K> + Send + 'static {
    /// The service of one connection.
    type Service;
    /// Makes [`Self::Service`].
    type Future: Future<Output = Result<Self::Service, BoxError>> + Send + 'static;

    /// Ready to make a connection's service.
    #[doc(hidden)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// The service for the connection from `peer`.
    #[doc(hidden)]
    fn make(&mut self, peer: &Addr) -> Self::Future;
}

/// [`ConnectionService`]'s `K` for a service, cloned for each connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct Cloned;

/// [`ConnectionService`]'s `K` for a make service, called with each connection's address.
#[derive(Debug)]
#[non_exhaustive]
pub struct Made;

// A service is told from a make service by what it answers: responses. (axum's
// `IntoMakeService` is a service for any request type, but answers with a service.)
impl<S, B, Addr> sealed::Sealed<Addr, Cloned> for S where
    S: Service<Request<Incoming>, Response = Response<B>>
{
}

impl<S, B, Addr> ConnectionService<Addr, Cloned> for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
{
    type Service = S;
    type Future = Ready<Result<S, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn make(&mut self, _: &Addr) -> Self::Future {
        ready(Ok(self.clone()))
    }
}

impl<M, Addr> sealed::Sealed<Addr, Made> for M where M: Service<Addr> {}

impl<M, Addr> ConnectionService<Addr, Made> for M
where
    M: Service<Addr> + Send + 'static,
    M::Response: 'static,
    M::Future: Send + 'static,
    M::Error: Into<BoxError>,
    Addr: Clone,
{
    type Service = M::Response;
    type Future = Pin<Box<dyn Future<Output = Result<M::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Service::poll_ready(self, cx).map_err(Into::into)
    }

    fn make(&mut self, peer: &Addr) -> Self::Future {
        let future = self.call(peer.clone());
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

mod sealed {
    /// Keeps [`ConnectionService`](super::ConnectionService) to the two impls above.
    pub trait Sealed<Addr, K> {}
}

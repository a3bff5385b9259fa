//! [`HttpService`]: what `serve` needs of the service it is given, named once.

use std::future::Future;

use bytes::Buf;
use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;

use crate::BoxError;

/// A tower HTTP service that `serve` can run on its connections: cloned for each connection,
/// its futures and response bodies sent to the connections' tasks. Every such service
/// implements it (axum `Router`, tonic `Routes`, any tower HTTP service): the blanket impl
/// below spells out the bound once, and the accept loop and the connections name it.
///
/// The associated types carry the bounds on the service's own associated types, so that they
/// hold wherever `S: HttpService` is written (bounds in a `where` clause of a trait are not
/// implied by it, and associated type bounds in supertraits need Rust 1.79).
pub(crate) trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<<Self as HttpService>::ResBody>,
        Error = <Self as HttpService>::ServiceError,
        Future = <Self as HttpService>::ServiceFuture,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResBody: http_body::Body<
            Data = <Self as HttpService>::Data,
            Error = <Self as HttpService>::BodyError,
        > + Send
        + 'static;
    /// The response body's chunks.
    type Data: Buf + Send;
    /// The response body's error.
    type BodyError: Into<BoxError>;
    /// The service's error.
    type ServiceError: Into<BoxError>;
    /// The service's response future.
    type ServiceFuture: Future<Output = Result<Response<Self::ResBody>, Self::ServiceError>>
        + Send
        + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
    type Data = B::Data;
    type BodyError = B::Error;
    type ServiceError = S::Error;
    type ServiceFuture = S::Future;
}

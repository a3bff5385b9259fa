//! The request body types the layer can send again: those that can wrap a [`ReplayBody`].

use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};

use super::ReplayBody;

/// A request body type that can carry a [`ReplayBody`] of itself: the layer's service takes
/// and hands its inner service the same body type, so it fits between a tonic client and its
/// `Channel` (or a hyper-util client) without changing either.
///
/// Implemented for tonic's body and http-body-util's boxed bodies, the types tonic and
/// hyper-util clients are used with.
pub trait RetryBody: Body<Data = Bytes> + Unpin + Sized {
    /// Wraps the record of a call's body in this body type.
    fn from_replay(body: ReplayBody<Self>) -> Self;
}

impl RetryBody for tonic::body::Body {
    fn from_replay(body: ReplayBody<Self>) -> Self {
        tonic::body::Body::new(body)
    }
}

impl<E: 'static> RetryBody for BoxBody<Bytes, E> {
    fn from_replay(body: ReplayBody<Self>) -> Self {
        BoxBody::new(body)
    }
}

impl<E: 'static> RetryBody for UnsyncBoxBody<Bytes, E> {
    fn from_replay(body: ReplayBody<Self>) -> Self {
        UnsyncBoxBody::new(body)
    }
}

//! [`PeerCertificates`]: the client's certificates, on each request of a TLS connection whose
//! client presented some (mutual TLS), as tonic's `TlsConnectInfo` carries them.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use rustls::pki_types::CertificateDer;
use tower_service::Service;

/// The certificate chain the client presented during the TLS handshake, the client's own
/// certificate first: a request extension on every request of a TLS connection whose client
/// presented one (the server's configuration asked for it with a client certificate verifier).
/// Requests of connections without one carry none.
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use tower_drain::serve::tls::PeerCertificates;
///
/// let app: Router = Router::new().route(
///     "/whoami",
///     get(|certs: Option<Extension<PeerCertificates>>| async move {
///         match certs {
///             Some(Extension(certs)) => format!("{} certificates", certs.chain().len()),
///             None => "anonymous".to_owned(),
///         }
///     }),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct PeerCertificates {
    chain: Arc<[CertificateDer<'static>]>,
}

impl PeerCertificates {
    /// The chain, the client's certificate first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The client's own certificate.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        // Never empty: made only from a chain rustls accepted.
        &self.chain[0]
    }

    /// The client's chain, if it presented one.
    pub(in crate::serve) fn of(chain: Option<&[CertificateDer<'static>]>) -> Option<Self> {
        match chain {
            Some(chain) if !chain.is_empty() => Some(Self {
                chain: chain.iter().cloned().collect(),
            }),
            _ => None,
        }
    }
}

/// A connection's service, putting its client's certificates on each request.
#[derive(Debug, Clone)]
pub(in crate::serve) struct WithPeerCertificates<S> {
    inner: S,
    certs: Option<PeerCertificates>,
}

impl<S> WithPeerCertificates<S> {
    pub(in crate::serve) fn new(inner: S, certs: Option<PeerCertificates>) -> Self {
        Self { inner, certs }
    }
}

impl<S, B> Service<Request<B>> for WithPeerCertificates<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(certs) = &self.certs {
            request.extensions_mut().insert(certs.clone());
        }
        self.inner.call(request)
    }
}

//! `loadgen --ca PATH`: the clients' TLS, on tokio-rustls with rustls' ring provider.
//!
//! Each client wraps its TCP stream here and only then in its HTTP machinery, so everything
//! above the TLS layer reads and writes HTTP as in the cleartext cells: [`super::goaway`]'s
//! watcher sees the decrypted frames (it times `GOAWAY`s and counts refused streams over TLS
//! too), and so does `tower_drain::client::PrefaceConnector` in the gRPC client's retry mode.
//! ALPN offers one protocol, the client's: `http/1.1` for `h1`, `h2` for `h2` and `grpc`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// What a client needs to open TLS connections: the trusted certificates, the name to ask
/// for and check, the protocol to offer.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Tls {
    /// Trusts the PEM certificates in `ca` (a CA, or the self-signed server certificate),
    /// checks the server's certificate for `server_name`, offers `alpn` alone.
    pub fn new(ca: &Path, server_name: &str, alpn: &[u8]) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("--ca {}: no certificate in it", ca.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("--server-name {server_name:?}: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The TLS handshake on `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

/// A client's connection: cleartext, or TLS over TCP.
pub type Stream = tokio_util::either::Either<TcpStream, TlsStream<TcpStream>>;

/// `tcp` as is without `tls`, else after the TLS handshake.
pub async fn wrap(tls: Option<&Tls>, tcp: TcpStream) -> std::io::Result<Stream> {
    Ok(match tls {
        None => Stream::Left(tcp),
        Some(tls) => Stream::Right(tls.connect(tcp).await?),
    })
}

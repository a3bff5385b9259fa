//! [`TlsConfig`]: the rustls configuration `serve` hands each new connection, which can be
//! swapped while serving (a renewed certificate) without a restart.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The TLS configuration of [`Serve::tls`](crate::Serve::tls): a rustls [`ServerConfig`]
/// that can be replaced while serving.
///
/// Each handshake reads the configuration once, after the client's `ClientHello`: a
/// [`reload`](Self::reload) applies to the connections that say hello after it, and the
/// connections already open keep theirs. Clones share the configuration: keep one to reload.
///
/// If the configuration names no ALPN protocols, `h2` and `http/1.1` are set (in that order
/// of preference); a configuration that names some is taken as it is. The negotiated protocol
/// is the one the connection is served with.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::get, Router};
/// use tower_drain::{serve::tls::TlsConfig, DrainLayer};
///
/// let drain = DrainLayer::default();
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(drain.clone());
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// // On SIGHUP, or when the files change: new handshakes get the new certificate.
/// let reload = tls.clone();
/// tokio::spawn(async move {
///     # return;
///     if let Err(error) = reload.reload_from_pem_files("cert.pem", "key.pem") {
///         eprintln!("keeping the old certificate: {error}");
///     }
/// });
/// let listener = tower_drain::serve::bind("0.0.0.0:3443").await?;
/// tower_drain::serve(listener, &drain, app.into_make_service()).tls(tls).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsConfig {
    /// `config`, with ALPN `h2` and `http/1.1` if it names no protocols.
    pub fn new(config: impl Into<Arc<ServerConfig>>) -> Self {
        Self {
            current: Arc::new(RwLock::new(with_alpn(config.into()))),
        }
    }

    /// A configuration serving the certificate chain in the PEM file `cert` (the server's
    /// certificate first) with the private key in the PEM file `key` (PKCS#8, PKCS#1 or
    /// SEC1), no client authentication, and rustls' `ring` provider with its safe defaults.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, holds no certificate or no key, or the key does not fit.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(server_config_from_pem_files(
            cert.as_ref(),
            key.as_ref(),
        )?))
    }

    /// Replaces the configuration: handshakes that start from now on use `config` (with ALPN
    /// set as in [`new`](Self::new)); open connections keep the one they were made with.
    pub fn reload(&self, config: impl Into<Arc<ServerConfig>>) {
        let config = with_alpn(config.into());
        // A panic while holding the lock cannot leave a half-written `Arc`: take it anyway.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// As [`from_pem_files`](Self::from_pem_files), then [`reload`](Self::reload). On error
    /// the configuration in use stays.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn reload_from_pem_files(
        &self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> io::Result<()> {
        self.reload(server_config_from_pem_files(cert.as_ref(), key.as_ref())?);
        Ok(())
    }

    /// The configuration new handshakes use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl From<ServerConfig> for TlsConfig {
    fn from(config: ServerConfig) -> Self {
        Self::new(config)
    }
}

impl From<Arc<ServerConfig>> for TlsConfig {
    fn from(config: Arc<ServerConfig>) -> Self {
        Self::new(config)
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn_protocols", &self.current().alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// `config`, with ALPN `h2` and `http/1.1` if it has none (copied only then).
fn with_alpn(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if !config.alpn_protocols.is_empty() {
        return config;
    }
    let mut config = Arc::try_unwrap(config).unwrap_or_else(|shared| (*shared).clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn server_config_from_pem_files(cert: &Path, key: &Path) -> io::Result<ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| pem_error(cert, e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no certificate in {}", cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    // The provider named, not the process default: which one that is depends on the features
    // of every crate in the build, and rustls panics when it cannot tell.
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> io::Error {
    match error {
        rustls::pki_types::pem::Error::Io(error) => {
            io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        }
        error => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {error}", path.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alpn: &[&[u8]]) -> ServerConfig {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    #[test]
    fn a_config_without_alpn_gets_h2_and_http1() {
        let tls = TlsConfig::new(config(&[]));
        assert_eq!(
            tls.current().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_config_with_alpn_keeps_it() {
        let tls = TlsConfig::new(config(&[b"http/1.1"]));
        assert_eq!(tls.current().alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn reload_is_seen_by_every_clone() {
        let tls = TlsConfig::new(config(&[b"http/1.1"]));
        let clone = tls.clone();
        tls.reload(config(&[b"h2"]));
        assert_eq!(clone.current().alpn_protocols, [b"h2".to_vec()]);
    }

    #[test]
    fn missing_pem_files_are_errors_naming_the_file() {
        let error =
            TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }
}

//! TLS for the examples that offer it (`axum`, `tonic`): `TLS_CERT` and `TLS_KEY` (read by
//! `env.rs`) make `serve` terminate TLS with those PEM files. The framework servers' TLS is in
//! the examples (`tonic.rs`) or beside them (`axum_server_tls.rs`).

use std::path::PathBuf;

use tower_drain::{BoxError, Serve};

/// With `TLS_CERT` and `TLS_KEY`, `serve` terminates TLS with those files.
#[cfg(feature = "rustls")]
pub fn tls<L, M, K>(
    serve: Serve<L, M, K>,
    files: &Option<(PathBuf, PathBuf)>,
) -> Result<Serve<L, M, K>, BoxError> {
    Ok(match files {
        Some((cert, key)) => serve.tls(tower_drain::serve::tls::TlsConfig::from_pem_files(
            cert, key,
        )?),
        None => serve,
    })
}

#[cfg(not(feature = "rustls"))]
pub fn tls<L, M, K>(
    serve: Serve<L, M, K>,
    files: &Option<(PathBuf, PathBuf)>,
) -> Result<Serve<L, M, K>, BoxError> {
    match files {
        Some(_) => Err("TLS_CERT and TLS_KEY need the feature `rustls`".into()),
        None => Ok(serve),
    }
}

//! What the servers without `Shutdown` (`naive`, `naive_tonic`, `bench_server`) use instead of
//! it: a future for the first SIGTERM or Ctrl-C, and the `NAIVE` setting of the control servers;
//! and how they listen, as the examples do.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Listens on `addr` as the examples do (`tower_drain::serve::bind`: a backlog of 1024) and
/// prints `listening on <bound address>`, the line the scripts wait for.
pub async fn listen(addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = tower_drain::serve::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on {bound}");
    Ok(listener)
}

/// What the control servers do on SIGTERM (or Ctrl-C), from `NAIVE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The server's own graceful shutdown alone (the default).
    Graceful,
    /// Exit at once with code 0, cutting every connection and in-flight request.
    Abrupt,
}

/// `NAIVE`: `graceful` (default) or `abrupt`.
pub fn mode_from_env() -> Result<Mode, String> {
    match std::env::var("NAIVE") {
        Err(std::env::VarError::NotPresent) => Ok(Mode::Graceful),
        Ok(v) if v == "graceful" => Ok(Mode::Graceful),
        Ok(v) if v == "abrupt" => Ok(Mode::Abrupt),
        Ok(v) => Err(format!("NAIVE must be `graceful` or `abrupt`, got {v:?}")),
        Err(e) => Err(format!("NAIVE: {e}")),
    }
}

/// Resolves on the first SIGTERM or Ctrl-C. A listener that cannot be installed is reported
/// on stderr and never fires.
pub async fn terminate_or_interrupt(who: &str) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("{who}: cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                eprintln!("{who}: cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `TLS_CERT` and `TLS_KEY` (PEM files: the certificate chain, the private key), as the
/// examples read them: both or neither.
pub fn tls_files() -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, String> {
    let path = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    match (path("TLS_CERT"), path("TLS_KEY")) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err("TLS_CERT and TLS_KEY go together: set both or neither".into()),
    }
}

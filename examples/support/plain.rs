//! What the servers without `Shutdown` (`naive`, `bench_server`) share: binding with the
//! `listening on` line scripts wait for, and a future for the first SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds `addr` and prints `listening on <bound address>` (flushed) once it accepts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    super::env::announce_listening(bound);
    Ok(listener)
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

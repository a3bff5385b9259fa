//! What the servers without `Shutdown` (`naive`, `bench_server`) use instead of it: a future
//! for the first SIGTERM or Ctrl-C.

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

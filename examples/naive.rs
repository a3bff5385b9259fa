//! The baseline the zero-downtime proof compares against: the demo routes with **no**
//! `DrainLayer` and no notice period, shut down the way most services ship today.
//!
//! Same interface as the `axum` example, so `scripts/rolling-restart.sh` can swap one for the
//! other:
//!
//! - listens on `ADDR` (default `127.0.0.1:3000`, port 0 allowed) and prints
//!   `listening on <bound address>` once it accepts;
//! - `GET /`, `GET /slow?ms=N`, `GET /stream?chunks=N&ms=M` (see `support/routes.rs`);
//! - `GET /readyz` and `GET /livez` answer `200` always, like a typical hand-written health
//!   route that knows nothing about shutdown.
//!
//! `NAIVE` picks what `SIGTERM` (or Ctrl-C) does:
//!
//! - `graceful` (default): `axum::serve(..).with_graceful_shutdown(signal)` alone: stop
//!   accepting, close idle connections, let in-flight requests finish, exit 0. Readiness never
//!   fails, there is no notice period, and keep-alive clients get no `Connection: close`.
//! - `abrupt`: exit at once with code 0, cutting every connection and in-flight request.
//!
//! ```sh
//! NAIVE=graceful ADDR=127.0.0.1:3001 cargo run --example naive
//! ```

#[allow(clippy::result_large_err)] // the shared routes module returns early responses as errors
#[path = "support/routes.rs"]
mod routes;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Graceful,
    Abrupt,
}

fn mode_from_env() -> Result<Mode, String> {
    match std::env::var("NAIVE") {
        Err(std::env::VarError::NotPresent) => Ok(Mode::Graceful),
        Ok(v) if v == "graceful" => Ok(Mode::Graceful),
        Ok(v) if v == "abrupt" => Ok(Mode::Abrupt),
        Ok(v) => Err(format!("NAIVE must be `graceful` or `abrupt`, got {v:?}")),
        Err(e) => Err(format!("NAIVE: {e}")),
    }
}

fn addr_from_env() -> Result<SocketAddr, String> {
    match std::env::var("ADDR") {
        Err(std::env::VarError::NotPresent) => Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
        Ok(v) => v
            .parse()
            .map_err(|e| format!("ADDR must be host:port, got {v:?}: {e}")),
        Err(e) => Err(format!("ADDR: {e}")),
    }
}

/// Resolves on the first SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("naive: cannot listen for Ctrl-C: {e}");
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
                eprintln!("naive: cannot listen for SIGTERM: {e}");
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

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, addr) = match (mode_from_env(), addr_from_env()) {
        (Ok(mode), Ok(addr)) => (mode, addr),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("naive: {e}");
            return ExitCode::from(2);
        }
    };
    let app = routes::routes()
        .route("/readyz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("naive: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on {bound}"),
        Err(e) => {
            eprintln!("naive: {e}");
            return ExitCode::FAILURE;
        }
    }
    let server = axum::serve(listener, app);
    let result = match mode {
        Mode::Graceful => server.with_graceful_shutdown(shutdown_signal()).await,
        Mode::Abrupt => {
            tokio::select! {
                r = server.into_future() => r,
                () = shutdown_signal() => {
                    println!("naive (abrupt): signal received, exiting now");
                    // Exit without dropping the runtime's tasks gracefully: connections are cut.
                    std::process::exit(0);
                }
            }
        }
    };
    match result {
        Ok(()) => {
            println!("naive ({mode:?}): shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("naive: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

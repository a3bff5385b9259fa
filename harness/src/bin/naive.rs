//! The baseline the zero-downtime proof compares against: the demo routes with **no**
//! `DrainLayer` and no notice period, shut down the way most services ship today.
//!
//! Same interface as the `axum` example, so `scripts/rolling-restart.sh` can swap one for the
//! other:
//!
//! - listens on `ADDR` (default `127.0.0.1:3000`, port 0 allowed), or on a Unix domain socket
//!   with `ADDR=unix:/path/to.sock`, and prints `listening on <bound address>` (`listening on
//!   unix:/path/to.sock`) once it accepts;
//! - `GET /`, `GET /slow?ms=N`, `GET /stream?chunks=N&ms=M`, `GET /bytes?n=N` (see
//!   `examples/support/routes.rs`);
//! - `GET /readyz` and `GET /livez` answer `200` always, like a typical hand-written health
//!   route that knows nothing about shutdown.
//!
//! TLS: `TLS_CERT` and `TLS_KEY` (PEM files, as for the examples) make it serve HTTPS (ALPN
//! `h2` and `http/1.1`) with axum-server's rustls acceptor instead of `axum::serve` (TCP only);
//! `graceful` is then axum-server's `Handle::graceful_shutdown(None)`, which likewise stops
//! accepting and lets in-flight requests finish without a deadline.
//!
//! `NAIVE` picks what `SIGTERM` (or Ctrl-C) does:
//!
//! - `graceful` (default): `axum::serve(..).with_graceful_shutdown(signal)` alone: stop
//!   accepting, close idle connections, let in-flight requests finish, exit 0. Readiness never
//!   fails, there is no notice period, and keep-alive clients get no `Connection: close`.
//! - `abrupt`: exit at once with code 0, cutting every connection and in-flight request.
//!
//! ```sh
//! NAIVE=graceful ADDR=127.0.0.1:3001 cargo run -p tower-drain-harness --bin naive
//! ```

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::routing::get;
use axum::serve::Listener;
use axum::Router;
use plain::Mode;
use tokio::net::{TcpListener, UnixListener};

use tower_drain_harness::env::Addr;
use tower_drain_harness::{env, plain, routes};

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, addr, tls) = match (
        plain::mode_from_env(),
        env::listen_addr(SocketAddr::from(([127, 0, 0, 1], 3000))),
        plain::tls_files(),
    ) {
        (Ok(mode), Ok(addr), Ok(tls)) => (mode, addr, tls),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("naive: {e}");
            return ExitCode::from(2);
        }
    };
    let app = routes::routes()
        .route("/readyz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }));
    let result = match (addr, tls) {
        (Addr::Tcp(addr), tls) => match plain::listen(addr).await {
            Ok(listener) => match tls {
                None => serve(listener, app, mode).await,
                Some(files) => serve_tls(listener, app, mode, files).await,
            },
            Err(e) => Err(e),
        },
        (Addr::Unix(_), Some(_)) => Err("TLS_CERT and TLS_KEY: TCP only".into()),
        (Addr::Unix(path), None) => {
            let _ = std::fs::remove_file(&path); // left by a previous run
            match UnixListener::bind(&path) {
                Ok(listener) => {
                    println!("listening on unix:{}", path.display());
                    serve(listener, app, mode).await
                }
                Err(e) => Err(format!("cannot listen on unix:{}: {e}", path.display())),
            }
        }
    };
    match result {
        Ok(()) => {
            println!("naive ({mode:?}): shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("naive: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `app` on `listener` until `SIGTERM` (or Ctrl-C), then as `mode` says.
async fn serve<L>(listener: L, app: Router, mode: Mode) -> Result<(), String>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let server = axum::serve(listener, app);
    let result = match mode {
        Mode::Graceful => {
            server
                .with_graceful_shutdown(plain::terminate_or_interrupt("naive"))
                .await
        }
        Mode::Abrupt => {
            tokio::select! {
                r = server.into_future() => r,
                () = plain::terminate_or_interrupt("naive") => {
                    println!("naive (abrupt): signal received, exiting now");
                    // Exit without dropping the runtime's tasks gracefully: connections are cut.
                    std::process::exit(0);
                }
            }
        }
    };
    result.map_err(|e| format!("server error: {e}"))
}

/// [`serve`] over TLS, on axum-server with its rustls acceptor.
async fn serve_tls(
    listener: TcpListener,
    app: Router,
    mode: Mode,
    (cert, key): (PathBuf, PathBuf),
) -> Result<(), String> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
        .await
        .map_err(|e| {
            format!(
                "TLS_CERT {}, TLS_KEY {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    let listener = listener.into_std().map_err(|e| format!("listener: {e}"))?;
    let handle = axum_server::Handle::new();
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)
        .map_err(|e| format!("listener: {e}"))?
        .handle(handle.clone())
        .serve(app.into_make_service());
    let result = match mode {
        Mode::Graceful => {
            tokio::spawn(async move {
                plain::terminate_or_interrupt("naive").await;
                handle.graceful_shutdown(None);
            });
            server.await
        }
        Mode::Abrupt => {
            tokio::select! {
                r = server => r,
                () = plain::terminate_or_interrupt("naive") => {
                    println!("naive (abrupt): signal received, exiting now");
                    std::process::exit(0);
                }
            }
        }
    };
    result.map_err(|e| format!("server error: {e}"))
}

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
use std::process::ExitCode;

use axum::routing::get;
use axum::serve::Listener;
use axum::Router;
use plain::Mode;
use tokio::net::UnixListener;

use tower_drain_harness::env::Addr;
use tower_drain_harness::{env, plain, routes};

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, addr) = match (
        plain::mode_from_env(),
        env::listen_addr(SocketAddr::from(([127, 0, 0, 1], 3000))),
    ) {
        (Ok(mode), Ok(addr)) => (mode, addr),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("naive: {e}");
            return ExitCode::from(2);
        }
    };
    let app = routes::routes()
        .route("/readyz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }));
    let result = match addr {
        Addr::Tcp(addr) => match plain::listen(addr).await {
            Ok(listener) => serve(listener, app, mode).await,
            Err(e) => Err(e),
        },
        Addr::Unix(path) => {
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

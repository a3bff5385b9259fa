//! The baseline the zero-downtime proof compares against: the demo routes with **no**
//! `DrainLayer` and no notice period, shut down the way most services ship today.
//!
//! Same interface as the `axum` example, so `scripts/rolling-restart.sh` can swap one for the
//! other:
//!
//! - listens on `ADDR` (default `127.0.0.1:3000`, port 0 allowed) and prints
//!   `listening on <bound address>` once it accepts;
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
use plain::Mode;

use tower_drain_harness::{env, plain, routes};

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, addr) = match (
        plain::mode_from_env(),
        env::addr(SocketAddr::from(([127, 0, 0, 1], 3000))),
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
    let listener = match plain::listen(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("naive: {e}");
            return ExitCode::FAILURE;
        }
    };
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

//! The server `scripts/bench-e2e.sh` loads: the shared demo routes, bare or behind
//! `DrainLayer`, so the two differ by the layer alone.
//!
//! - `DRAIN=0`: `routes()` as is; `DRAIN=1` (default): `routes().layer(DrainLayer::new(token))`,
//!   the one-line set-up the README shows.
//! - listens on `ADDR` (default `127.0.0.1:3000`, port 0 allowed) and prints
//!   `listening on <bound address>` once it accepts.
//! - `SIGTERM` or Ctrl-C: cancels the token (the layer refuses new requests), stops
//!   accepting, waits for in-flight requests (at most 5 s), exits 0.
//!
//! ```sh
//! DRAIN=1 ADDR=127.0.0.1:3001 cargo run --release -p tower-drain-harness --bin bench_server
//! ```

// `routes::param` returns `Result<u64, Response>`; clippy finds the error variant large.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower_drain::DrainLayer;

use tower_drain_harness::{env, plain, routes};

fn drain_from_env() -> Result<bool, String> {
    match std::env::var("DRAIN") {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) if v == "0" => Ok(false),
        Ok(v) => Err(format!("DRAIN must be 0 or 1, got {v:?}")),
        Err(e) => Err(format!("DRAIN: {e}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (drain, addr) = match (
        drain_from_env(),
        env::addr(SocketAddr::from(([127, 0, 0, 1], 3000))),
    ) {
        (Ok(drain), Ok(addr)) => (drain, addr),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench_server: {e}");
            return ExitCode::from(2);
        }
    };
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone());
    let app = if drain {
        routes::routes().layer(layer.clone())
    } else {
        routes::routes()
    };
    let listener = match plain::listen(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bench_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = token.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        plain::terminate_or_interrupt("bench_server").await;
        stop.cancel();
    });
    if let Err(e) = server.await {
        eprintln!("bench_server: server error: {e}");
        return ExitCode::FAILURE;
    }
    if drain {
        let tracker = layer.tracker();
        if tokio::time::timeout(Duration::from_secs(5), tracker.drained())
            .await
            .is_err()
        {
            let left = tracker.in_flight();
            eprintln!("bench_server: drain did not finish within 5s: {left} still in flight");
        }
    }
    ExitCode::SUCCESS
}

//! The gRPC control of the zero-downtime proof: the `demo.Echo` service
//! (`examples/support/echo.rs`) on tonic's `Server` with **no** `DrainLayer`, no health service and no
//! notice period, shut down with tonic's own graceful shutdown alone.
//!
//! Same interface as the `tonic` example, so `scripts/rolling-restart.sh` can swap one for the
//! other:
//!
//! - listens on `ADDR` (default `127.0.0.1:50051`, port 0 allowed) and prints
//!   `listening on <bound address>` once it accepts;
//! - serves `/demo.Echo/Unary` and `/demo.Echo/Stream` over HTTP/2 (cleartext);
//! - any other path, `GET /readyz` included, gets tonic's fallback: HTTP `200` with
//!   `grpc-status: 12` (`UNIMPLEMENTED`). An HTTP/2 health check on `/readyz` therefore passes
//!   as long as the server accepts connections, like `naive`'s always-200 readiness route.
//!
//! TLS: `TLS_CERT` and `TLS_KEY` (PEM files, as for the examples) make it serve over TLS with
//! tonic's own `ServerTlsConfig` (ALPN `h2`).
//!
//! `NAIVE` picks what `SIGTERM` (or Ctrl-C) does:
//!
//! - `graceful` (default): `Server::builder().add_service(..).serve_with_incoming_shutdown(..)`
//!   alone: stop accepting, send `GOAWAY`, let open calls finish, exit 0;
//! - `abrupt`: exit at once with code 0, cutting every connection and call.
//!
//! ```sh
//! NAIVE=graceful ADDR=127.0.0.1:50052 cargo run -p tower-drain-harness --bin naive_tonic
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use plain::Mode;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use tower_drain_harness::{echo, env, plain};

#[tokio::main]
async fn main() -> ExitCode {
    let (mode, addr, tls) = match (
        plain::mode_from_env(),
        env::addr(SocketAddr::from(([127, 0, 0, 1], 50051))),
        plain::tls_files(),
    ) {
        (Ok(mode), Ok(addr), Ok(tls)) => (mode, addr, tls),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("naive_tonic: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Server::builder();
    if let Some((cert, key)) = tls {
        let identity = match (std::fs::read(&cert), std::fs::read(&key)) {
            (Ok(cert), Ok(key)) => Identity::from_pem(cert, key),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("naive_tonic: TLS_CERT or TLS_KEY: {e}");
                return ExitCode::from(2);
            }
        };
        builder = match builder.tls_config(ServerTlsConfig::new().identity(identity)) {
            Ok(builder) => builder,
            Err(e) => {
                eprintln!("naive_tonic: TLS: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let listener = match plain::listen(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("naive_tonic: {e}");
            return ExitCode::FAILURE;
        }
    };
    let router = builder.add_service(echo::EchoServer);
    let incoming = TcpIncoming::from(listener);
    let result = match mode {
        Mode::Graceful => {
            let signal = plain::terminate_or_interrupt("naive_tonic");
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
        Mode::Abrupt => {
            tokio::select! {
                r = router.serve_with_incoming(incoming) => r,
                () = plain::terminate_or_interrupt("naive_tonic") => {
                    println!("naive_tonic (abrupt): signal received, exiting now");
                    // Exit without dropping the runtime's tasks gracefully: connections are cut.
                    std::process::exit(0);
                }
            }
        }
    };
    match result {
        Ok(()) => {
            println!("naive_tonic ({mode:?}): shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("naive_tonic: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

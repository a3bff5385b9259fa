//! A gRPC server (tonic + tonic-health) on the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --example tonic        # then Ctrl-C, or `kill -TERM <pid>`
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! - `ADDR` (default `127.0.0.1:50051`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS`
//!   (default 10000); bad values exit with code 2.
//! - The health service answers `SERVING`, then `NOT_SERVING` **as soon as the shutdown
//!   begins** (the `started_token`), so gRPC readiness probes and health-checking load
//!   balancers move traffic away during the notice period, while calls are still served.
//! - `DrainLayer` sits on `Server::builder().layer(..)`: once the drain starts, new calls get
//!   `UNAVAILABLE` (which gRPC clients retry) without reaching the services; the health
//!   service is exempt, so probes keep getting an answer (`NOT_SERVING`) until the exit.
//! - It serves `demo.Echo` (`support/echo.rs`: `/demo.Echo/Unary`, `/demo.Echo/Stream`, raw
//!   bytes, no codegen), **not** exempt: what the gRPC client of `scripts/rolling-restart.sh`
//!   calls. `GET /readyz` is answered by the layer (`200`, `503` from the moment the shutdown
//!   begins) for load balancers that check over plain HTTP/2 rather than gRPC, like HAProxy's
//!   `option httpchk` with `check-proto h2`.
//! - `serve_with_incoming_shutdown` follows the drain token: tonic stops accepting and sends
//!   HTTP/2 `GOAWAY` at the moment the layer starts refusing.

#[allow(dead_code)] // the load generator uses the client half
#[path = "support/echo.rs"]
mod echo;
#[path = "support/env.rs"]
mod env;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower_drain::{DrainLayer, Shutdown};

#[tokio::main]
async fn main() -> ExitCode {
    env::run(
        "tonic example",
        SocketAddr::from(([127, 0, 0, 1], 50051)),
        serve,
    )
    .await
}

async fn serve(settings: env::Settings) -> Result<ExitCode, String> {
    let env::Settings {
        addr,
        notice,
        drain_timeout,
    } = settings;
    let drain = DrainLayer::new(CancellationToken::new())
        // Readiness for HTTP/2 health checks (HAProxy): 503 from the start of the shutdown.
        .readiness_path("/readyz")
        // Probes keep their answer through the drain: NOT_SERVING, not UNAVAILABLE.
        .exempt_path("/grpc.health.v1.Health/Check")
        .exempt_path("/grpc.health.v1.Health/Watch");
    let shutdown = Shutdown::builder(&drain)
        .notice_period(notice)
        .drain_timeout(drain_timeout)
        .overall_timeout(notice + drain_timeout + Duration::from_secs(8))
        .build()
        .map_err(|e| format!("shutdown configuration: {e}"))?;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    // NOT_SERVING the moment the shutdown begins, before the notice period.
    let started = shutdown.started_token();
    tokio::spawn(async move {
        started.cancelled().await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tracing::info!("health: NOT_SERVING");
    });

    let listener = env::bind(addr).await?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("serving gRPC health on {bound}; send SIGTERM or press Ctrl-C to shut down");

    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(drain)
            .add_service(health)
            .add_service(echo::EchoServer)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                shutdown.drain_token().cancelled_owned(),
            ),
    );

    let report = shutdown.run().await;
    println!("{report}");
    // Open Watch streams keep their connections; do not wait for them past a second.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), server).await {
        tracing::warn!("server error: {e}");
    }
    Ok(env::exit_code(report.exit_code()))
}

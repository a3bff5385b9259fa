//! A gRPC server (tonic + tonic-health) on the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --all-features --example tonic   # then Ctrl-C, or `kill -TERM <pid>`
//! grpcurl -plaintext 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! - `ADDR` (default `127.0.0.1:50051`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS`
//!   (default 10000), `SERVER`: `serve` (default) or `tonic` (or `framework`); bad values exit
//!   with code 2 (`support/env.rs`).
//! - The health service answers `SERVING`, then `NOT_SERVING` **as soon as the shutdown
//!   begins** (the `started_token`), so gRPC health checks move traffic away during the notice
//!   period, while calls are still served. `GET /readyz` (answered by the layer) flips at the
//!   same moment, for load balancers that check over plain HTTP/2.
//! - It serves `demo.Echo` (`support/echo.rs`: `/demo.Echo/Unary`, `/demo.Echo/Stream`, raw
//!   bytes, no codegen), counted by the layer; the health service is exempt, so probes keep
//!   their answer (`NOT_SERVING`) to the end.
//! - With `SERVER=serve` (tower-drain's `serve`), every client connection gets a `GOAWAY` at
//!   the start of the notice period: gRPC clients reconnect, and their load balancer, which
//!   sees the health fail, picks another instance. With `SERVER=tonic`, tonic's own server
//!   sends `GOAWAY` only when the drain begins, so a client pinned to this instance (an L4
//!   load balancer) keeps calling it through the notice.
//! - Calls that arrive while a connection says goodbye are served. Once admission has closed,
//!   a call gets `UNAVAILABLE` from the layer; no gRPC client retries that by default (gRPC's
//!   transparent retry covers only streams the server never processed), which is why the
//!   layer closes admission only after the server has closed its connections.
//! - A health `Watch` stream never ends by itself: it keeps its connection open until the drain
//!   deadline, and the report says the server was cut. Kubernetes' gRPC probes use `Check`.
//! - TLS: `TLS_CERT` and `TLS_KEY` (PEM files: the certificate chain, the private key) make
//!   either server serve gRPC over TLS (ALPN `h2`): `serve` with `Serve::tls` (needs the
//!   feature `rustls`, which `--all-features` turns on), tonic's server with its own
//!   `ServerTlsConfig` (tonic's feature `tls-ring`), the control for `serve`'s TLS:
//!   `grpcurl -cacert cert.pem localhost:50051 grpc.health.v1.Health/Check`.

#[path = "support/echo.rs"]
mod echo;
#[path = "support/env.rs"]
mod env;
#[path = "support/tls.rs"]
mod tls;

use std::time::Duration;

use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tower_drain::{BoxError, DrainLayer, Shutdown, ShutdownReport};
use tower_layer::Layer as _;

#[tokio::main]
async fn main() -> Result<ShutdownReport, BoxError> {
    env::init_tracing(); // the shutdown logs its phases and its report
    let settings = env::Settings::from_env(50051);
    let server = env::server("tonic");
    let tls_files = env::tls_files(); // TLS_CERT and TLS_KEY

    let drain = DrainLayer::default()
        // Readiness for HTTP/2 health checks (HAProxy): 503 from the start of the shutdown.
        .readiness_path("/readyz")
        // Probes keep their answer through the drain: NOT_SERVING, not UNAVAILABLE.
        .exempt_path("/grpc.health.v1.Health/Check")
        .exempt_path("/grpc.health.v1.Health/Watch");
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(settings.notice)
        .drain_timeout(settings.drain_timeout)
        .overall_timeout(settings.notice + settings.drain_timeout + Duration::from_secs(8))
        .build()?;

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

    let listener = tower_drain::serve::bind(settings.addr.tcp()).await?; // a backlog of 1024, not 128
    println!("listening on {}", listener.local_addr()?);

    // The server runs in the sequence: the drain ends once every connection has closed.
    match server {
        env::Server::Serve => {
            let routes = Routes::new(health).add_service(echo::EchoServer);
            let service = drain.layer(routes);
            let serve = tls::tls(tower_drain::serve(listener, &drain, service), &tls_files)?;
            shutdown.spawn_server("grpc", serve)
        }
        env::Server::Framework => {
            let drain_begins = drain.token().clone().cancelled_owned();
            let mut builder = tonic::transport::Server::builder();
            if let Some((cert, key)) = &tls_files {
                // tonic's own TLS (feature `tls-ring`): ALPN `h2`, as gRPC clients offer.
                let identity = Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?);
                builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
            }
            let server = builder
                .layer(drain)
                .add_service(health)
                .add_service(echo::EchoServer)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), drain_begins);
            shutdown.spawn_server("grpc", server)
        }
    };

    Ok(shutdown.run().await) // logs the report; main exits with its code
}

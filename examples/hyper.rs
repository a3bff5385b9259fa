//! hyper-util without a framework: the auto (HTTP/1.1 + HTTP/2) connection builder,
//! `GracefulShutdown`, `DrainLayer` and the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --all-features --example hyper   # then Ctrl-C, or `kill -TERM <pid>`
//! curl -i 127.0.0.1:3000/slow?ms=3000
//! ```
//!
//! - `ADDR` (default `127.0.0.1:3000`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS`
//!   (default 10000); bad values exit with code 2 (`support/env.rs`).
//! - Routes: `GET /` (hello), `GET /slow?ms=N` (answers after N ms, at most 60 000),
//!   `GET /readyz` and `GET /livez` (answered by the layer).
//! - The accept loop stops when the drain token is cancelled, and `GracefulShutdown` then
//!   tells every connection to finish: HTTP/1.1 connections close once idle, HTTP/2 ones get
//!   `GOAWAY`. What the connections still deliver during that goodbye is served.
//! - The server runs in the sequence (`spawn_server`): the drain ends once every connection
//!   has closed, every response written, or at the drain deadline, when it is cut.
//!
//! This is the hand-written way, for when you own the accept loop. `tower_drain::serve(listener,
//! &drain, service)` is this loop plus the notice-period goodbye: it keeps accepting through the
//! notice and tells each connection to leave (HTTP/2 `GOAWAY`, HTTP/1.1 `Connection: close`)
//! while still serving it, which moves clients pinned to this instance before the drain.

#[path = "support/env.rs"]
mod env;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_drain::{BoxError, DrainLayer, Shutdown, ShutdownReport};

/// The application, without any framework.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        Ok(response)
    };
    match request.uri().path() {
        "/" => text(StatusCode::OK, "hello\n".into()),
        "/slow" => {
            let ms = request
                .uri()
                .query()
                .unwrap_or("ms=100")
                .split('&')
                .find_map(|pair| pair.strip_prefix("ms="))
                .unwrap_or("100")
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms <= 60_000);
            let Some(ms) = ms else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "ms must be a whole number from 0 to 60000\n".into(),
                );
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

#[tokio::main]
async fn main() -> Result<ShutdownReport, BoxError> {
    env::init_tracing(); // the shutdown logs its phases and its report
    let settings = env::Settings::from_env(3000);

    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(settings.notice)
        .drain_timeout(settings.drain_timeout)
        .overall_timeout(settings.notice + settings.drain_timeout + Duration::from_secs(8))
        .build()?;
    let service = ServiceBuilder::new()
        .layer(drain.clone())
        .service_fn(handle);

    let listener = tower_drain::serve::bind(settings.addr.tcp()).await?; // a backlog of 1024, not 128
    println!("listening on {}", listener.local_addr()?);

    let drain_begins = drain.token().clone();
    let server = async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _peer)) => stream,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(stream),
                            TowerToHyperService::new(service.clone()),
                        )
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("connection ended with an error: {e}");
                        }
                    });
                }
                // The drain began: stop accepting, and tell connections to finish.
                () = drain_begins.cancelled() => break,
            }
        }
        drop(listener);
        // Completes once every connection has closed: every response written.
        graceful.shutdown().await;
        Ok::<(), std::io::Error>(())
    };
    // The server runs in the sequence: the drain ends once it has closed every connection, or
    // at the drain deadline, when it is cut.
    shutdown.spawn_server("http", server);

    Ok(shutdown.run().await) // logs the report; main exits with its code
}

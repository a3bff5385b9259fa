//! The full production pattern: an axum app behind `DrainLayer`, served by tower-drain's
//! `serve`, on the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --all-features --example axum   # then Ctrl-C, or `kill -TERM <pid>`
//! ADDR=0.0.0.0:8080 NOTICE_MS=5000 DRAIN_TIMEOUT_MS=15000 cargo run --all-features --example axum
//! ```
//!
//! What happens on `SIGTERM` (or Ctrl-C):
//!
//! 1. `/readyz` answers `503` at once, so the load balancer stops sending new traffic here;
//! 2. for `NOTICE_MS` (default 1000) the app still serves, and `serve` tells every connection
//!    to leave: HTTP/2 clients get `GOAWAY` (they reconnect, through the load balancer, to
//!    another instance), HTTP/1.1 clients `Connection: close` on their next response;
//! 3. the drain: `serve` stops accepting and the requests in flight finish, to the last byte,
//!    within `DRAIN_TIMEOUT_MS` (default 10000);
//! 4. the background worker stops, then the cleanup hooks run: the pool, registered first,
//!    closes last, after every request and the worker are done with it;
//! 5. the report is printed and the process exits with its code: 0 clean, 1 when a deadline
//!    was hit, 130/143 when a second signal forced the exit.
//!
//! Settings come from the environment, the way a deployment passes them: `ADDR` (default
//! `127.0.0.1:3000`; it prints `listening on <address>` once it accepts), `NOTICE_MS`,
//! `DRAIN_TIMEOUT_MS`, and `SERVER`: `serve` (default) or `axum` (or `framework`), the same app on
//! `axum::serve(..).with_graceful_shutdown(..)` with the layer, which says goodbye to its
//! connections only at the drain. Bad values exit with code 2 and a message.
//!
//! Routes: `GET /`, `GET /slow?ms=N`, `GET /stream?chunks=N&ms=M`, `GET /bytes?n=N` (one
//! in-memory body of N bytes, like a large JSON document), `GET /readyz` and `GET /livez`.

#[path = "support/env.rs"]
mod env;
#[path = "support/routes.rs"]
mod routes;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_drain::{DrainLayer, Shutdown};

/// Stands in for a database pool: a query fails once it is closed.
#[derive(Default)]
struct Pool {
    closed: AtomicBool,
}

impl Pool {
    fn query(&self, by: &str) {
        if self.closed.load(Ordering::Acquire) {
            tracing::error!("{by} queried the pool after it was closed");
        }
    }

    async fn close(&self) {
        tokio::time::sleep(Duration::from_millis(20)).await; // flush, say goodbye to the server
        self.closed.store(true, Ordering::Release);
        tracing::info!("pool closed");
    }
}

/// Every request uses the pool when it starts and when its handler returns.
async fn use_pool(pool: Arc<Pool>, request: Request, next: Next) -> Response {
    pool.query("a request");
    let response = next.run(request).await;
    pool.query("a request");
    response
}

#[tokio::main]
async fn main() -> ExitCode {
    let server = match env::server("axum") {
        Ok(server) => server,
        Err(message) => {
            eprintln!("axum example: {message}");
            return ExitCode::from(2);
        }
    };
    env::run(
        "axum example",
        SocketAddr::from(([127, 0, 0, 1], 3000)),
        |config| serve(config, server),
    )
    .await
}

async fn serve(config: env::Settings, server: env::Server) -> Result<ExitCode, String> {
    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let tasks_timeout = Duration::from_secs(2);
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(config.notice)
        .drain_timeout(config.drain_timeout)
        .tasks_timeout(tasks_timeout)
        // Room for the hooks after the drain and the tasks; keep this total below the
        // orchestrator's kill deadline (terminationGracePeriodSeconds).
        .overall_timeout(
            config.notice + config.drain_timeout + tasks_timeout + Duration::from_secs(5),
        )
        .build()
        .map_err(|e| format!("shutdown configuration: {e}"))?;

    let pool = Arc::new(Pool::default());

    // Registered first, so it closes last: after the drain, the tasks and the other hooks.
    shutdown.on_cleanup("db-pool", Duration::from_secs(3), {
        let pool = Arc::clone(&pool);
        move || async move {
            pool.close().await;
            Ok(())
        }
    });
    shutdown.on_cleanup("flush-metrics", Duration::from_secs(1), {
        let pool = Arc::clone(&pool);
        move || async move {
            pool.query("flush-metrics"); // the pool is still open here
            tracing::info!("metrics flushed");
            Ok(())
        }
    });

    // A background worker: its token is cancelled after the HTTP drain, and it is awaited.
    shutdown.spawn_task("worker", {
        let pool = Arc::clone(&pool);
        |token| async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = ticks.tick() => pool.query("the worker"),
                    () = token.cancelled() => break,
                }
            }
            tracing::info!("worker stopped");
        }
    });

    let app = routes::routes()
        .layer(middleware::from_fn({
            let pool = Arc::clone(&pool);
            move |request, next| use_pool(Arc::clone(&pool), request, next)
        }))
        .layer(drain.clone());

    let listener = env::bind(config.addr).await?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        notice = ?config.notice,
        drain_timeout = ?config.drain_timeout,
        "serving on {bound}; send SIGTERM or press Ctrl-C to shut down"
    );

    // The server runs in the sequence: the drain ends once every connection has closed, every
    // response written, or at the drain deadline.
    match server {
        env::Server::Serve => {
            shutdown.spawn_server("http", tower_drain::serve(listener, &drain, app))
        }
        env::Server::Framework => shutdown.spawn_server(
            "http",
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.drain_token().cancelled_owned()),
        ),
    };

    let report = shutdown.run().await;
    println!("{report}");
    Ok(ExitCode::from(&report))
}

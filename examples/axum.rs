//! The full production pattern: an axum app behind `DrainLayer`, served by tower-drain's
//! `serve`, on the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --all-features --example axum   # then Ctrl-C, or `kill -TERM <pid>`
//! ADDR=0.0.0.0:8080 NOTICE_MS=5000 DRAIN_TIMEOUT_MS=15000 cargo run --all-features --example axum
//! ```
//!
//! On `SIGTERM` (or Ctrl-C): `/readyz` answers `503` at once and `serve` tells every connection
//! to leave (HTTP/2 `GOAWAY`, HTTP/1.1 `Connection: close`); through the notice period the app
//! still serves; then the drain (the requests in flight finish, to the last byte), the worker
//! stops, the cleanup hooks run (the pool, registered first, last), the report is logged and
//! the process exits with its code: 0 clean, 1 after a deadline, 130/143 when a second signal
//! forced the exit.
//!
//! Settings (`support/env.rs`; a bad value exits with code 2): `ADDR` (default
//! `127.0.0.1:3000`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS` (default 10000), `SERVER`:
//! `serve` (default) or `axum` (`framework`), `axum::serve(..).with_graceful_shutdown(..)`,
//! which says goodbye to its connections only at the drain. Routes (`support/routes.rs`):
//! `GET /`, `/slow?ms=N`, `/stream?chunks=N&ms=M`, `/bytes?n=N`; the layer answers `/readyz`
//! and `/livez`.

#[path = "support/env.rs"]
mod env;
#[path = "support/routes.rs"]
mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_drain::{BoxError, DrainLayer, Shutdown, ShutdownReport};

#[tokio::main]
async fn main() -> Result<ShutdownReport, BoxError> {
    env::init_tracing(); // the shutdown logs its phases and its report
    let settings = env::Settings::from_env(3000);
    let server = env::server("axum");

    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let tasks_timeout = Duration::from_secs(2);
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(settings.notice)
        .drain_timeout(settings.drain_timeout)
        .tasks_timeout(tasks_timeout)
        // Room for the hooks too; keep the total below the orchestrator's kill deadline
        // (Kubernetes: terminationGracePeriodSeconds).
        .overall_timeout(
            settings.notice + settings.drain_timeout + tasks_timeout + Duration::from_secs(5),
        )
        .build()?;

    // Registered first, so it closes last: after the drain, the tasks and the other hooks.
    let pool = Arc::new(Pool::default());
    let closing = Arc::clone(&pool);
    shutdown.on_cleanup("db-pool", Duration::from_secs(3), move || async move {
        closing.close().await;
        Ok(())
    });
    let flushing = Arc::clone(&pool);
    shutdown.on_cleanup(
        "flush-metrics",
        Duration::from_secs(1),
        move || async move {
            flushing.query("flush-metrics"); // the pool is still open here
            tracing::info!("metrics flushed");
            Ok(())
        },
    );

    // A background worker: its token is cancelled after the drain, and it is awaited.
    let working = Arc::clone(&pool);
    shutdown.spawn_task("worker", |token| async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticks.tick() => working.query("the worker"),
                () = token.cancelled() => break,
            }
        }
        tracing::info!("worker stopped");
    });

    let app = routes::routes()
        .layer(middleware::from_fn_with_state(pool, use_pool))
        .layer(drain.clone());

    let listener = tower_drain::serve::bind(settings.addr).await?; // a backlog of 1024, not 128
    println!("listening on {}", listener.local_addr()?);

    // The server runs in the sequence: the drain ends once it has closed every connection
    // (every response written), or at the drain deadline.
    match server {
        env::Server::Serve => {
            shutdown.spawn_server("http", tower_drain::serve(listener, &drain, app))
        }
        env::Server::Framework => {
            let drain_begins = drain.token().clone().cancelled_owned();
            let server = axum::serve(listener, app).with_graceful_shutdown(drain_begins);
            shutdown.spawn_server("http", server)
        }
    };

    Ok(shutdown.run().await) // logs the report; main exits with its code
}

/// Stands in for a database pool: a query after `close` is a bug, and is logged.
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
async fn use_pool(State(pool): State<Arc<Pool>>, request: Request, next: Next) -> Response {
    pool.query("a request");
    let response = next.run(request).await;
    pool.query("a request");
    response
}

//! [`Shutdown`]: the shutdown sequence for the whole process, in the right order.
//!
//! Built on a [`DrainLayer`](crate::DrainLayer)'s token and tracker, a `Shutdown` waits for
//! `SIGTERM`/`SIGINT` (or any future you give it), then:
//!
//! 1. fails readiness ([`announce_shutdown`](crate::ConnectionTracker::announce_shutdown))
//!    while still serving, for a **notice period**, so load balancers move traffic away;
//! 2. cancels the layer's [token](crate::DrainLayer::token): the servers given to
//!    [`Shutdown::spawn_server`] stop accepting and say goodbye to their connections; waits,
//!    up to the **drain deadline**, until they have closed every connection (every response
//!    written) and nothing is in flight, then closes admission;
//! 3. cancels the **background tasks** spawned with [`Shutdown::spawn_task`] and waits for
//!    them up to their deadline, aborting the rest;
//! 4. runs the **cleanup hooks** ([`Shutdown::on_cleanup`]) in reverse order of
//!    registration, each under its own timeout: the pool registered first closes last, after
//!    every request and task is done with it;
//! 5. returns a [`ShutdownReport`] with an [exit code](ShutdownReport::exit_code).
//!
//! A second signal skips the rest and exits at once (`130`/`143`), and an **overall deadline**
//! bounds everything: set it below Kubernetes' `terminationGracePeriodSeconds`.
//!
//! # Example
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tower_drain::{DrainLayer, Shutdown};
//!
//! #[tokio::main]
//! async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
//!     let drain = DrainLayer::default()
//!         .readiness_path("/readyz")
//!         .liveness_path("/livez");
//!     // `signals()`: SIGTERM/SIGINT start it; installed by `build()`, so an early one is kept.
//!     let mut shutdown = Shutdown::builder(&drain)
//!         .signals()
//!         .notice_period(Duration::from_secs(5))
//!         .drain_timeout(Duration::from_secs(15))
//!         .tasks_timeout(Duration::from_secs(5))
//!         .overall_timeout(Duration::from_secs(28)) // below terminationGracePeriodSeconds
//!         .build()?;
//!
//!     // A background worker: its token is cancelled after the HTTP drain.
//!     shutdown.spawn_task("worker", |token| async move {
//!         while !token.is_cancelled() {
//!             tokio::select! {
//!                 _ = tokio::time::sleep(Duration::from_secs(1)) => { /* do a unit of work */ }
//!                 _ = token.cancelled() => {}
//!             }
//!         }
//!     });
//!
//!     // Closed after every request and task has finished.
//!     shutdown.on_cleanup("db-pool", Duration::from_secs(3), || async {
//!         // pool.close().await;
//!         Ok(())
//!     });
//!
//!     let app = Router::new().route("/", get(|| async { "hello" })).layer(drain.clone());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // The server is part of the sequence: it stops accepting when the layer's token is
//!     // cancelled, and the drain ends when it has written every response.
//!     shutdown.spawn_server(
//!         "http",
//!         axum::serve(listener, app)
//!             .with_graceful_shutdown(drain.token().clone().cancelled_owned()),
//!     );
//!
//!     let report = shutdown.run().await; // waits for SIGTERM, then runs the sequence
//!     Ok(ExitCode::from(&report)) // 0, 1, 130 or 143
//! }
//! ```

// Each file imports only from the layers below its own, so there are no import circles:
// - `sequence`: `Shutdown::run`, the trigger, then the phases in order, and a cut;
// - `builder`: checks the configuration and makes the plan; `phases`: each phase of the
//   sequence, returning its outcome, with the outcome's log lines beside it;
// - `plan`: the `Shutdown` and what it will end;
// - the parts: `report`, `trigger`, `servers`, `tasks`, `cleanup`, `error` (each importing
//   only parts named after it).
mod builder;
mod cleanup;
mod error;
mod phases;
mod plan;
mod report;
mod sequence;
mod servers;
mod tasks;
mod trigger;

pub use builder::{
    ShutdownBuilder, DEFAULT_DRAIN_TIMEOUT, DEFAULT_NOTICE_PERIOD, DEFAULT_OVERALL_TIMEOUT,
    DEFAULT_TASKS_TIMEOUT,
};
pub use cleanup::{HookOutcome, HookReport};
pub use error::ShutdownConfigError;
pub use plan::Shutdown;
pub use report::{Phase, PhaseTiming, ShutdownReport};
pub use servers::{ServerOutcome, ServerReport};
pub use trigger::{ShutdownHandle, ShutdownTrigger, Signal};

#[cfg(all(test, not(loom)))]
mod tests;

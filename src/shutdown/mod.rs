//! [`Shutdown`]: the shutdown sequence for the whole process, in the right order.
//!
//! Built on a [`DrainLayer`](crate::DrainLayer)'s token and tracker, a `Shutdown` waits for `SIGTERM`/`SIGINT`
//! (or any future you give it), then:
//!
//! 1. fails readiness ([`announce_shutdown`](crate::ConnectionTracker::announce_shutdown))
//!    while still serving, for a **notice period**, so load balancers move traffic away;
//! 2. cancels the drain token: the servers given to [`Shutdown::spawn_server`] stop accepting
//!    and say goodbye to their connections; waits, up to the **drain deadline**, until they
//!    have closed every connection (every response written) and nothing is in flight, then
//!    closes admission;
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
//!     let app = Router::new().route("/", get(|| async { "hello" })).layer(drain);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // The server is part of the sequence: the drain ends when it has written every response.
//!     shutdown.spawn_server(
//!         "http",
//!         axum::serve(listener, app)
//!             .with_graceful_shutdown(shutdown.drain_token().cancelled_owned()),
//!     );
//!
//!     let report = shutdown.run().await; // waits for SIGTERM, then runs the sequence
//!     Ok(ExitCode::from(&report)) // 0, 1, 130 or 143
//! }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod builder;
mod cleanup;
mod error;
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
pub use report::{Phase, PhaseTiming, ShutdownReport};
pub use servers::{ServerOutcome, ServerReport};
pub use trigger::{ShutdownHandle, ShutdownTrigger, Signal};

use crate::tracker::ConnectionTracker;
use crate::BoxError;
use cleanup::Hook;
use sequence::Plan;
use trigger::Triggers;

/// The shutdown sequence for the whole process. See the [module docs](self) for an example.
///
/// Build one with [`Shutdown::builder`] when the process starts, register background tasks
/// and cleanup hooks, give it the server ([`spawn_server`](Self::spawn_server)) wired to the
/// [`drain_token`](Self::drain_token), then await [`run`](Self::run).
pub struct Shutdown {
    plan: Plan,
    triggers: Triggers,
    /// Cancelled when the shutdown is triggered.
    started: CancellationToken,
    overall: Duration,
}

impl Shutdown {
    /// Starts configuring a shutdown for the layer's tracker: pass `&drain_layer` or a
    /// [`ConnectionTracker`].
    pub fn builder(tracker: impl Into<ConnectionTracker>) -> ShutdownBuilder {
        ShutdownBuilder::new(tracker.into())
    }

    /// The layer's token, cancelled when the drain starts (after the notice period). Wire
    /// the server's own graceful shutdown to it, so that it stops accepting and says goodbye to
    /// its connections (HTTP/2 `GOAWAY`) when the drain begins, and give that server to
    /// [`spawn_server`](Self::spawn_server):
    ///
    /// * axum: `axum::serve(..).with_graceful_shutdown(token.cancelled_owned())`
    /// * tonic: `Server::builder()..serve_with_shutdown(addr, token.cancelled_owned())`
    /// * hyper-util: `GracefulShutdown::shutdown()` after `token.cancelled()`
    pub fn drain_token(&self) -> CancellationToken {
        self.plan.tracker.token().clone()
    }

    /// A token cancelled the moment the shutdown is triggered, when readiness starts failing:
    /// before the notice period. Use it for what must happen first, such as setting a gRPC
    /// health service to `NOT_SERVING`.
    pub fn started_token(&self) -> CancellationToken {
        self.started.clone()
    }

    /// A handle that triggers the shutdown from anywhere, such as an admin endpoint.
    pub fn handle(&self) -> ShutdownHandle {
        self.triggers.handle()
    }

    /// The tracker the sequence drains.
    pub fn tracker(&self) -> &ConnectionTracker {
        &self.plan.tracker
    }

    /// Runs a server as part of the sequence: `server` is spawned now, on the runtime `build()`
    /// was called in, and the drain phase waits for it to finish.
    ///
    /// Pass the server's graceful-shutdown future, wired to the [drain token](Self::drain_token):
    ///
    /// * axum: `axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned())`
    /// * tonic: `Server::builder()..serve_with_incoming_shutdown(incoming, token.cancelled_owned())`
    /// * hyper-util: your accept loop, ending with `GracefulShutdown::shutdown().await`
    ///
    /// Such a future completes only once every connection is closed, that is once every
    /// response byte has been handed to the kernel. So the drain phase ends when nothing is in
    /// flight **and** every server has finished, all within the
    /// [drain deadline](ShutdownBuilder::drain_timeout); once the servers have finished,
    /// nothing more can arrive and [admission closes](crate::ConnectionTracker::close) at once.
    /// A server still running at the deadline is aborted, cutting its connections, and the
    /// [report](ShutdownReport::servers) says so (exit code 1). A server that ends before
    /// the shutdown (an error, say) starts it.
    ///
    /// Without a server here, the drain ends when the requests have: their last bytes may
    /// still be in the server's buffers.
    ///
    /// axum's connections run in tasks of their own: aborting `axum::serve`'s future stops
    /// accepting but leaves a connection stuck past the deadline running until the process
    /// exits.
    pub fn spawn_server<F, E>(&mut self, name: impl Into<Cow<'static, str>>, server: F) -> &mut Self
    where
        F: IntoFuture<Output = Result<(), E>>,
        F::IntoFuture: Send + 'static,
        E: Into<BoxError>,
    {
        self.plan.servers.spawn(name.into(), server.into_future());
        self
    }

    /// Spawns a background task that is cancelled after the HTTP drain and awaited.
    ///
    /// `task` receives a token (a child of the coordinator's) that is cancelled when the tasks
    /// phase starts; the task should finish soon after. Tasks still running at the
    /// [tasks deadline](ShutdownBuilder::tasks_timeout) are aborted and named in the report.
    /// The task runs on the runtime `build()` was called in, so this may be called from any
    /// thread.
    pub fn spawn_task<F, Fut>(
        &self,
        name: impl Into<Cow<'static, str>>,
        task: F,
    ) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.plan.tasks.spawn(name.into(), task)
    }

    /// Registers a cleanup hook: `hook` runs after the drain and the background tasks, in
    /// reverse order of registration (register the pool first, so it closes last), in its own
    /// task and under `timeout`. A hook that fails, panics or times out is reported (and makes
    /// the [exit code](ShutdownReport::exit_code) non-zero) but does not stop the others.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    pub fn on_cleanup<F, Fut>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        timeout: Duration,
        hook: F,
    ) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let name = name.into();
        assert!(
            !timeout.is_zero(),
            "tower-drain: the timeout of cleanup hook {name:?} must be greater than zero"
        );
        self.plan.hooks.push(Hook::new(name, timeout, hook));
        self
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("tracker", &self.plan.tracker)
            .field("notice", &self.plan.notice)
            .field("drain", &self.plan.drain)
            .field("tasks_timeout", &self.plan.tasks_timeout)
            .field("overall", &self.overall)
            .field("servers", &self.plan.servers)
            .field("tasks", &self.plan.tasks)
            .field("hooks", &self.plan.hooks)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

//! [`Shutdown`] and its [`Plan`]: what the sequence will end, registered before the trigger
//! (the servers, the background tasks, the cleanup hooks), and the durations of its phases.
//!
//! Built by `builder.rs`, run by `sequence.rs`: both import this module, which imports neither.

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cleanup::{Hook, Hooks};
use super::servers::Servers;
use super::tasks::Tasks;
use super::trigger::{ShutdownHandle, Triggers};
use crate::tracker::ConnectionTracker;
use crate::BoxError;

/// The shutdown sequence for the whole process. See the [module docs](super) for an example.
///
/// Build one with [`Shutdown::builder`] when the process starts, give it the server
/// ([`spawn_server`](Self::spawn_server)) wired to the layer's
/// [token](crate::DrainLayer::token), register background tasks and cleanup hooks, then await
/// [`run`](Self::run).
pub struct Shutdown {
    pub(super) plan: Plan,
    pub(super) triggers: Triggers,
    /// Cancelled when the shutdown is triggered.
    pub(super) started: CancellationToken,
    pub(super) overall: Duration,
}

/// What the phases after the trigger work with.
pub(super) struct Plan {
    pub(super) tracker: ConnectionTracker,
    pub(super) notice: Duration,
    pub(super) drain: Duration,
    pub(super) tasks_timeout: Duration,
    pub(super) servers: Servers,
    pub(super) tasks: Tasks,
    pub(super) hooks: Hooks,
}

impl Shutdown {
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
    /// Pass the server's graceful-shutdown future, wired to the layer's
    /// [token](crate::DrainLayer::token), which the sequence cancels when the drain begins
    /// (`drain` is your [`DrainLayer`](crate::DrainLayer)):
    ///
    /// * axum: `axum::serve(listener, app).with_graceful_shutdown(drain.token().clone().cancelled_owned())`
    /// * tonic: `Server::builder()..serve_with_incoming_shutdown(incoming, drain.token().clone().cancelled_owned())`
    /// * hyper-util: your accept loop, ending with `GracefulShutdown::shutdown().await` once
    ///   `drain.token().cancelled()` has resolved
    /// * [`serve`](crate::serve()) (feature `serve`) takes the layer itself:
    ///   `tower_drain::serve(listener, &drain, app)`
    ///
    /// Such a future completes only once every connection is closed, that is once every
    /// response byte has been handed to the kernel. So the drain phase ends when nothing is in
    /// flight **and** every server has finished, all within the
    /// [drain deadline](super::ShutdownBuilder::drain_timeout); once the servers have finished,
    /// nothing more can arrive and [admission closes](crate::ConnectionTracker::close) at once.
    /// A server still running at the deadline is aborted, cutting its connections, and the
    /// [report](super::ShutdownReport::servers) says so (exit code 1). A server that ends before
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

    /// Runs a background task as part of the sequence: `task` is called now with its token
    /// and the future it returns is spawned, on the runtime `build()` was called in.
    ///
    /// The token (a child of the sequence's) is cancelled when the tasks phase starts, after
    /// the HTTP drain; the task should finish soon after. The phase waits for every task up to
    /// the [tasks deadline](super::ShutdownBuilder::tasks_timeout), then aborts those still
    /// running and names them in the [report](super::ShutdownReport::tasks_aborted).
    pub fn spawn_task<F, Fut>(&mut self, name: impl Into<Cow<'static, str>>, task: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.plan.tasks.spawn(name.into(), task);
        self
    }

    /// Registers a cleanup hook: `hook` runs after the drain and the background tasks, in
    /// reverse order of registration (register the pool first, so it closes last), in its own
    /// task and under `timeout`. A hook that fails, panics or times out is reported (and makes
    /// the [exit code](super::ShutdownReport::exit_code) non-zero) but does not stop the others.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero: the hook could never finish. (Registered after
    /// [`build`](super::ShutdownBuilder::build), a hook has no `build()` to refuse it.)
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

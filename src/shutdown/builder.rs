//! [`ShutdownBuilder`]: the phases' durations and the triggers, checked when built. Every
//! setter takes any value; [`build`](ShutdownBuilder::build) refuses those that cannot work,
//! naming the setter.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::cleanup::Hooks;
use super::error::ShutdownConfigError;
use super::plan::{Plan, Shutdown};
use super::servers::Servers;
use super::tasks::Tasks;
use super::trigger::{BoxTrigger, Triggers};
use crate::tracker::ConnectionTracker;

/// Default notice period: none. On Kubernetes use a few seconds, see
/// [`notice_period`](ShutdownBuilder::notice_period).
pub const DEFAULT_NOTICE_PERIOD: Duration = Duration::ZERO;
/// Default drain deadline: 20 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default deadline for background tasks: 5 s.
pub const DEFAULT_TASKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default overall deadline: 28 s, below Kubernetes' default `terminationGracePeriodSeconds`
/// of 30 s.
pub const DEFAULT_OVERALL_TIMEOUT: Duration = Duration::from_secs(28);

impl Shutdown {
    /// Starts configuring a shutdown for the layer's tracker: pass `&drain_layer` or a
    /// [`ConnectionTracker`].
    pub fn builder(tracker: impl Into<ConnectionTracker>) -> ShutdownBuilder {
        ShutdownBuilder::new(tracker.into())
    }
}

/// Configures a [`Shutdown`]. Get one from [`Shutdown::builder`].
///
/// # Defaults
///
/// | Setting | Default |
/// |---|---|
/// | [`notice_period`](Self::notice_period) | [0](DEFAULT_NOTICE_PERIOD) |
/// | [`drain_timeout`](Self::drain_timeout) | [20 s](DEFAULT_DRAIN_TIMEOUT) |
/// | [`tasks_timeout`](Self::tasks_timeout) | [5 s](DEFAULT_TASKS_TIMEOUT) |
/// | [`overall_timeout`](Self::overall_timeout) | [28 s](DEFAULT_OVERALL_TIMEOUT) |
/// | OS signals | none: call [`signals`](Self::signals) to take `SIGTERM`/`SIGINT` |
#[must_use = "a builder does nothing until `build()` is called"]
pub struct ShutdownBuilder {
    tracker: ConnectionTracker,
    notice: Duration,
    drain: Duration,
    tasks: Duration,
    overall: Duration,
    signals: bool,
    triggers: Vec<BoxTrigger>,
}

impl ShutdownBuilder {
    fn new(tracker: ConnectionTracker) -> Self {
        Self {
            tracker,
            notice: DEFAULT_NOTICE_PERIOD,
            drain: DEFAULT_DRAIN_TIMEOUT,
            tasks: DEFAULT_TASKS_TIMEOUT,
            overall: DEFAULT_OVERALL_TIMEOUT,
            signals: false,
            triggers: Vec::new(),
        }
    }

    /// How long readiness fails while requests are still served, before the drain starts.
    ///
    /// On Kubernetes, endpoint removal runs at the same time as `SIGTERM`: set this to at least
    /// the readiness probe's `periodSeconds × failureThreshold` plus a margin for the endpoint
    /// update to reach every load balancer (about 5 s for a 1 s × 3 probe). Zero skips it.
    /// Must be shorter than the [overall deadline](Self::overall_timeout).
    pub fn notice_period(mut self, notice: Duration) -> Self {
        self.notice = notice;
        self
    }

    /// How long to wait for requests in flight once the drain starts. Must be greater than
    /// zero.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain = timeout;
        self
    }

    /// How long background tasks get to finish once their token is cancelled; those still
    /// running are then aborted. Must be greater than zero.
    pub fn tasks_timeout(mut self, timeout: Duration) -> Self {
        self.tasks = timeout;
        self
    }

    /// Bounds the whole sequence, from the trigger to the report: when it passes, whatever
    /// runs is aborted and the rest skipped. Set it below the orchestrator's kill deadline
    /// (Kubernetes: `terminationGracePeriodSeconds`, minus the `preStop` sleep), so that the
    /// report is written and the exit code chosen before `SIGKILL`. Must be greater than zero,
    /// and leave time for the cleanup hooks after the notice period, the drain deadline and the
    /// tasks deadline.
    pub fn overall_timeout(mut self, timeout: Duration) -> Self {
        self.overall = timeout;
        self
    }

    /// Also starts the shutdown when `trigger` completes: an admin endpoint, a fatal error
    /// elsewhere, a test. May be called several times; the first to complete wins.
    ///
    /// For a token, pass `token.cancelled_owned()`. A [`ShutdownHandle`](super::ShutdownHandle)
    /// ([`Shutdown::handle`]) is another way.
    pub fn trigger<F>(mut self, trigger: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.triggers.push(Box::pin(trigger));
        self
    }

    /// Makes `SIGTERM` and `SIGINT` (Ctrl-C off Unix) start the shutdown, and a second one
    /// force the exit. The handlers are installed by [`build`](Self::build).
    ///
    /// Off unless called: signal handling is process-wide, so it is the application's
    /// decision, never a library's or a feature's. Leave it off when something else owns the
    /// signals, and start the shutdown with [`trigger`](Self::trigger) or a
    /// [`ShutdownHandle`](super::ShutdownHandle) instead.
    pub fn signals(mut self) -> Self {
        self.signals = true;
        self
    }

    /// Checks the configuration and, with [`signals`](Self::signals), installs the signal
    /// handlers, now: a signal arriving before [`Shutdown::run`] is awaited is kept, not lost.
    ///
    /// Once installed, tokio keeps the handlers for the life of the process: `SIGTERM` and
    /// `SIGINT` no longer kill it by default. Await [`Shutdown::run`].
    ///
    /// # Errors
    ///
    /// [`ShutdownConfigError`], naming the setter whose value cannot work: a zero deadline; a
    /// notice period not shorter than the overall deadline; a notice period, drain deadline
    /// and tasks deadline that leave no time for the cleanup hooks within the overall
    /// deadline. Also no Tokio runtime, and, with [`signals`](Self::signals), a signal handler
    /// that cannot be installed (or a platform without signals).
    pub fn build(self) -> Result<Shutdown, ShutdownConfigError> {
        self.check()?;
        let runtime = Handle::try_current().map_err(|_| ShutdownConfigError::NoRuntime)?;
        let triggers =
            Triggers::new(self.signals, self.triggers).map_err(ShutdownConfigError::Signal)?;
        Ok(Shutdown {
            plan: Plan {
                tracker: self.tracker,
                notice: self.notice,
                drain: self.drain,
                tasks_timeout: self.tasks,
                servers: Servers::new(runtime.clone()),
                tasks: Tasks::new(runtime.clone()),
                hooks: Hooks::new(runtime),
            },
            triggers,
            started: CancellationToken::new(),
            overall: self.overall,
        })
    }

    fn check(&self) -> Result<(), ShutdownConfigError> {
        for (name, value) in [
            ("drain_timeout", self.drain),
            ("tasks_timeout", self.tasks),
            ("overall_timeout", self.overall),
        ] {
            if value.is_zero() {
                return Err(ShutdownConfigError::ZeroTimeout { name });
            }
        }
        if self.notice >= self.overall {
            return Err(ShutdownConfigError::NoticeNotBelowOverall {
                notice: self.notice,
                overall: self.overall,
            });
        }
        let phases = self
            .notice
            .saturating_add(self.drain)
            .saturating_add(self.tasks);
        if phases >= self.overall {
            return Err(ShutdownConfigError::NoTimeForCleanup {
                notice: self.notice,
                drain: self.drain,
                tasks: self.tasks,
                overall: self.overall,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for ShutdownBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownBuilder")
            .field("notice", &self.notice)
            .field("drain", &self.drain)
            .field("tasks", &self.tasks)
            .field("overall", &self.overall)
            .field("signals", &self.signals)
            .field("triggers", &self.triggers.len())
            .finish_non_exhaustive()
    }
}

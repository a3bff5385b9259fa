//! Cleanup hooks: named async closures that run after the drain, in reverse order of
//! registration, each in its own task under its own timeout, so that a failing, panicking or
//! hung hook is reported and does not stop the others. [`Hooks`] runs them and knows, after a
//! cut, which ended, which was interrupted and which never ran.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::BoxError;

type HookFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'static>>;
type HookFn = Box<dyn FnOnce() -> HookFuture + Send + 'static>;

/// The cleanup hooks of a [`Shutdown`](super::Shutdown), and what became of those that ran.
pub(crate) struct Hooks {
    /// In order of registration: they run from the last.
    pending: Vec<Hook>,
    /// The hook running, and since when.
    running: Option<(Cow<'static, str>, Instant)>,
    /// The reports of the hooks that ended, in the order they ran.
    ended: Vec<HookReport>,
    runtime: Handle,
}

impl Hooks {
    pub(crate) fn new(runtime: Handle) -> Self {
        Self {
            pending: Vec::new(),
            running: None,
            ended: Vec::new(),
            runtime,
        }
    }

    pub(crate) fn push(&mut self, hook: Hook) {
        self.pending.push(hook);
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Runs the hooks one after the other, the last registered first, and returns their
    /// reports in the order they ran.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts the hook running; [`cut`](Self::cut) then reports it.
    pub(crate) async fn run_all(&mut self) -> Vec<HookReport> {
        while let Some(hook) = self.pending.pop() {
            info!(hook = %hook.name, "shutdown: cleanup {} started", hook.name);
            self.running = Some((hook.name.clone(), Instant::now()));
            let report = hook.run(&self.runtime).await;
            self.running = None;
            report.log();
            self.ended.push(report);
        }
        std::mem::take(&mut self.ended)
    }

    /// After a cut: the hooks that ended, then the one that was running (interrupted: its task
    /// was aborted with the future that waited for it), then the rest, skipped.
    pub(crate) fn cut(&mut self) -> Vec<HookReport> {
        let mut reports = std::mem::take(&mut self.ended);
        if let Some((name, since)) = self.running.take() {
            reports.push(HookReport {
                name: name.into_owned(),
                outcome: HookOutcome::Interrupted,
                duration: since.elapsed(),
            });
        }
        reports.extend(self.pending.drain(..).rev().map(|hook| HookReport {
            name: hook.name.into_owned(),
            outcome: HookOutcome::Skipped,
            duration: Duration::ZERO,
        }));
        reports
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.pending).finish()
    }
}

pub(crate) struct Hook {
    name: Cow<'static, str>,
    timeout: Duration,
    run: HookFn,
}

impl Hook {
    pub(crate) fn new<F, Fut>(name: Cow<'static, str>, timeout: Duration, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name,
            timeout,
            run: Box::new(move || Box::pin(hook())),
        }
    }

    /// Runs the hook in its own task (so a panic is caught, not propagated) under its timeout.
    async fn run(self, runtime: &Handle) -> HookReport {
        let started = Instant::now();
        let run = self.run;
        // The closure is called inside the task too, so a panic while building the future is
        // caught like one while polling it.
        let mut task = AbortOnDrop(runtime.spawn(async move { run().await }));
        let outcome = match tokio::time::timeout(self.timeout, &mut task.0).await {
            Ok(Ok(Ok(()))) => HookOutcome::Ok,
            Ok(Ok(Err(err))) => HookOutcome::Failed(err.to_string()),
            Ok(Err(join)) if join.is_panic() => {
                HookOutcome::Panicked(panic_message(join.into_panic()))
            }
            Ok(Err(_cancelled)) => HookOutcome::Failed("the hook's task was cancelled".into()),
            Err(_elapsed) => HookOutcome::TimedOut(self.timeout),
        };
        HookReport {
            name: self.name.into_owned(),
            outcome,
            duration: started.elapsed(),
        }
    }
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Aborts the hook's task if the wait for it is dropped: a timeout, a forced exit, or the
/// overall deadline must not leave a hook running behind the report's back.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        format!("panicked: {text}")
    } else if let Some(text) = payload.downcast_ref::<String>() {
        format!("panicked: {text}")
    } else {
        "panicked".into()
    }
}

/// How one cleanup hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// Returned `Ok(())` within its timeout.
    Ok,
    /// Returned an error (its message).
    Failed(String),
    /// Panicked (the panic message).
    Panicked(String),
    /// Did not finish within its timeout, and was aborted.
    TimedOut(Duration),
    /// Was running when a second signal or the overall deadline cut the sequence short, and
    /// was aborted.
    Interrupted,
    /// Never ran: a second signal or the overall deadline cut the sequence short first.
    Skipped,
}

impl HookOutcome {
    /// `true` only for [`HookOutcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Failed(err) => write!(f, "failed: {err}"),
            Self::Panicked(msg) => f.write_str(msg),
            Self::TimedOut(timeout) => write!(f, "timed out after {timeout:?}"),
            Self::Interrupted => f.write_str("interrupted"),
            Self::Skipped => f.write_str("skipped"),
        }
    }
}

/// What one cleanup hook did, in the [`ShutdownReport`](super::ShutdownReport).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookReport {
    /// The name given to [`Shutdown::on_cleanup`](super::Shutdown::on_cleanup).
    pub name: String,
    /// How it ended.
    pub outcome: HookOutcome,
    /// How long it ran.
    pub duration: Duration,
}

impl HookReport {
    fn log(&self) {
        let name = &self.name;
        if self.outcome.is_ok() {
            info!(hook = %name, "shutdown: cleanup {name} ok in {:?}", self.duration);
        } else {
            warn!(hook = %name, "shutdown: cleanup {name} {}", self.outcome);
        }
    }
}

//! Background tasks: tracked with tokio-util's [`TaskTracker`], cancelled through child tokens
//! after the HTTP drain, awaited within their deadline, and aborted past it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The background tasks of a [`Shutdown`](super::Shutdown).
pub(crate) struct Tasks {
    tracker: TaskTracker,
    /// Parent of every task's token; cancelled when the tasks phase starts (or at a cut).
    token: CancellationToken,
    /// Names and abort handles of tasks that may still run. Finished entries are pruned on
    /// every spawn, so the list stays as long as the number of live tasks.
    live: Vec<(Cow<'static, str>, AbortHandle)>,
    /// How many were running when their token was cancelled.
    running_at_cancel: Option<usize>,
    runtime: Handle,
}

/// What became of the background tasks.
#[derive(Debug)]
pub(crate) struct TasksEnded {
    /// How many were running when their token was cancelled.
    pub(crate) running: usize,
    /// The names of those aborted because they were still running at the deadline (or at a
    /// cut).
    pub(crate) aborted: Vec<String>,
}

impl Tasks {
    pub(crate) fn new(runtime: Handle) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            live: Vec::new(),
            running_at_cancel: None,
            runtime,
        }
    }

    pub(crate) fn spawn<F, Fut>(&mut self, name: Cow<'static, str>, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let future = task(self.token.child_token());
        let handle = self.tracker.spawn_on(future, &self.runtime);
        self.live.retain(|(_, task)| !task.is_finished());
        self.live.push((name, handle.abort_handle()));
    }

    /// How many tasks have not finished yet.
    pub(crate) fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels every task's token, then waits up to `timeout` for all of them to finish, and
    /// aborts those that did not.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the tasks cancelled: [`abort_all`](Self::abort_all) ends them.
    pub(crate) async fn cancel_and_wait(&mut self, timeout: Duration) -> TasksEnded {
        let running = self.cancel();
        match tokio::time::timeout(timeout, self.tracker.wait()).await {
            Ok(()) => TasksEnded {
                running,
                aborted: Vec::new(),
            },
            Err(_) => self.abort_all(),
        }
    }

    /// Cancels every task's token (if not done yet) and aborts the tasks still running.
    pub(crate) fn abort_all(&mut self) -> TasksEnded {
        let running = self.cancel();
        let mut aborted = Vec::new();
        for (name, task) in self.live.drain(..) {
            if !task.is_finished() {
                task.abort();
                aborted.push(name.into_owned());
            }
        }
        TasksEnded { running, aborted }
    }

    /// Cancels every task's token; returns how many tasks were running the first time.
    fn cancel(&mut self) -> usize {
        let running = *self.running_at_cancel.get_or_insert(self.tracker.len());
        self.token.cancel();
        self.tracker.close();
        running
    }
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.tracker.len())
            .field("cancelled", &self.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

//! Background tasks: tracked with tokio-util's [`TaskTracker`], cancelled through child tokens
//! after the HTTP drain, awaited within their deadline, and aborted past it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Tasks {
    tracker: TaskTracker,
    /// Parent of every task's token; cancelled when the tasks phase starts.
    token: CancellationToken,
    /// Names and abort handles of tasks that may still run. Finished entries are pruned on
    /// every spawn, so the list stays as long as the number of live tasks.
    live: Mutex<Vec<(Cow<'static, str>, AbortHandle)>>,
    runtime: Handle,
}

impl Tasks {
    pub(crate) fn new(runtime: Handle) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            live: Mutex::new(Vec::new()),
            runtime,
        }
    }

    pub(crate) fn spawn<F, Fut>(&self, name: Cow<'static, str>, task: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let future = task(self.token.child_token());
        let handle = self.tracker.spawn_on(future, &self.runtime);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|(_, task)| !task.is_finished());
        live.push((name, handle.abort_handle()));
        handle
    }

    /// How many tasks have not finished yet.
    pub(crate) fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels every task's token, then waits up to `timeout` for all of them to finish.
    /// Returns the names of the tasks aborted because they did not.
    pub(crate) async fn cancel_and_wait(&self, timeout: Duration) -> Vec<String> {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(timeout, self.tracker.wait()).await {
            Ok(()) => Vec::new(),
            Err(_) => self.abort_all(),
        }
    }

    /// Cancels every task's token and aborts the tasks still running; returns their names.
    pub(crate) fn abort_all(&self) -> Vec<String> {
        self.token.cancel();
        self.tracker.close();
        let live = std::mem::take(&mut *self.live.lock().unwrap_or_else(|e| e.into_inner()));
        let mut aborted = Vec::new();
        for (name, task) in live {
            if !task.is_finished() {
                task.abort();
                aborted.push(name.into_owned());
            }
        }
        aborted
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

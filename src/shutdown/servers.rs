//! Servers given to [`Shutdown::spawn_server`](super::Shutdown::spawn_server): run in their own
//! tasks, awaited by the drain phase (a server's graceful shutdown completes once every
//! connection is closed, so every response byte has been handed to the kernel), and aborted at
//! the drain deadline.

use std::borrow::Cow;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::cleanup::panic_message;
use crate::BoxError;

pub(crate) struct Servers {
    entries: Vec<Server>,
    runtime: Handle,
}

struct Server {
    name: Cow<'static, str>,
    task: JoinHandle<Result<(), BoxError>>,
    /// Set once the task has ended (or was aborted).
    ended: Option<(ServerOutcome, Instant)>,
}

impl Servers {
    pub(crate) fn new(runtime: Handle) -> Self {
        Self {
            entries: Vec::new(),
            runtime,
        }
    }

    pub(crate) fn spawn<F, E>(&mut self, name: Cow<'static, str>, server: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let task = self
            .runtime
            .spawn(async move { server.await.map_err(Into::into) });
        self.entries.push(Server {
            name,
            task,
            ended: None,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Polls every server still running; returns the index of one that has just ended.
    pub(crate) fn poll_any_ended(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let mut ended = None;
        for (index, server) in self.entries.iter_mut().enumerate() {
            if server.poll_end(cx).is_ready() && ended.is_none() {
                ended = Some(index);
            }
        }
        ended.map_or(Poll::Pending, Poll::Ready)
    }

    /// Waits until every server has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: outcomes are recorded as they come.
    pub(crate) async fn all_ended(&mut self) {
        poll_fn(|cx| {
            let mut pending = false;
            for server in &mut self.entries {
                pending |= server.poll_end(cx).is_pending();
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Aborts the servers still running: their connections are cut.
    pub(crate) fn abort_all(&mut self) {
        for server in &mut self.entries {
            if server.ended.is_none() {
                server.task.abort();
                server.ended = Some((ServerOutcome::Cut, Instant::now()));
            }
        }
    }

    pub(crate) fn any_running(&self) -> bool {
        self.entries.iter().any(|server| server.ended.is_none())
    }

    fn names_running(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|server| server.ended.is_none())
            .map(|server| &*server.name)
            .collect()
    }

    pub(crate) fn name(&self, index: usize) -> &str {
        &self.entries[index].name
    }

    /// What each server did, `since` the drain began (`None`: it did not).
    pub(crate) fn reports(&self, since: Option<Instant>) -> Vec<ServerReport> {
        self.entries
            .iter()
            .map(|server| {
                let (outcome, at) = server
                    .ended
                    .clone()
                    .unwrap_or((ServerOutcome::Cut, Instant::now()));
                ServerReport {
                    name: server.name.clone().into_owned(),
                    outcome,
                    closed_after: since.map(|since| at.saturating_duration_since(since)),
                }
            })
            .collect()
    }
}

impl Server {
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ended.is_some() {
            return Poll::Ready(());
        }
        let result = std::task::ready!(Pin::new(&mut self.task).poll(cx));
        self.ended = Some((ServerOutcome::from_result(result), Instant::now()));
        Poll::Ready(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        // A `Shutdown` dropped without running still owns its servers' tasks: a server must
        // not outlive the sequence that was meant to bound it.
        for server in &self.entries {
            server.task.abort();
        }
    }
}

impl fmt::Debug for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Servers")
            .field(
                "names",
                &self.entries.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("running", &self.names_running())
            .finish_non_exhaustive()
    }
}

/// How a server given to [`Shutdown::spawn_server`](super::Shutdown::spawn_server) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerOutcome {
    /// Its future returned `Ok(())`: with a graceful shutdown, every connection was closed
    /// and every response written.
    Closed,
    /// Its future returned an error (its message) or panicked.
    Failed(String),
    /// Still running at the drain deadline, or when a second signal or the overall deadline
    /// cut the sequence short: aborted, with its open connections cut and their responses
    /// possibly unfinished.
    Cut,
}

impl ServerOutcome {
    fn from_result(result: Result<Result<(), BoxError>, JoinError>) -> Self {
        match result {
            Ok(Ok(())) => Self::Closed,
            Ok(Err(err)) => Self::Failed(err.to_string()),
            Err(join) if join.is_panic() => Self::Failed(panic_message(join.into_panic())),
            Err(_) => Self::Cut,
        }
    }

    /// `true` only for [`ServerOutcome::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl fmt::Display for ServerOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed every connection"),
            Self::Failed(err) => write!(f, "failed: {err}"),
            Self::Cut => f.write_str("cut: connections still open, responses may be unfinished"),
        }
    }
}

/// What one server did, in the [`ShutdownReport`](super::ShutdownReport).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerReport {
    /// The name given to [`Shutdown::spawn_server`](super::Shutdown::spawn_server).
    pub name: String,
    /// How it ended.
    pub outcome: ServerOutcome,
    /// How long after the drain began it ended; `None` if the drain never began.
    pub closed_after: Option<Duration>,
}

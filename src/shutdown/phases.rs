//! The steps of [`Shutdown::run`](super::Shutdown::run), in order: the trigger, then the
//! notice, drain, tasks and cleanup phases. Each phase is a function of the [`Plan`] returning
//! its outcome, and each outcome is followed by the log lines that tell it.
//!
//! [`Plan::settle_drain`] ends the drain whichever way it ends: drained, at its deadline, or
//! cut short. It is the one place that closes admission and cuts the servers.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::cleanup::HookReport;
use super::plan::Plan;
use super::servers::{ServerOutcome, ServerReport, Servers};
use super::tasks::TasksEnded;
use super::trigger::ShutdownTrigger;
#[cfg(feature = "serve")]
use crate::connections::OpenConnection;
use crate::tracker::ConnectionTracker;

/// Without `serve` the connections belong to the framework's server, and none is known: the
/// list of those cut is always empty.
#[cfg(not(feature = "serve"))]
type OpenConnection = std::convert::Infallible;

/// The moment of the trigger: what started the shutdown, and the tracker's counts then.
#[derive(Debug)]
pub(super) struct Triggered {
    pub(super) trigger: ShutdownTrigger,
    pub(super) at: Instant,
    pub(super) in_flight: usize,
    admitted: u64,
    pub(super) rejected: u64,
}

impl Triggered {
    pub(super) fn now(trigger: ShutdownTrigger, tracker: &ConnectionTracker) -> Self {
        Self {
            trigger,
            at: Instant::now(),
            in_flight: tracker.in_flight(),
            admitted: tracker.admitted_total(),
            rejected: tracker.rejected_total(),
        }
    }

    /// The requests that finished since the trigger, `left` being those still in flight.
    fn completed(&self, tracker: &ConnectionTracker, left: usize) -> u64 {
        let admitted = tracker.admitted_total() - self.admitted;
        (self.in_flight as u64 + admitted).saturating_sub(left as u64)
    }

    pub(super) fn log(&self, servers: &Servers) {
        let trigger = self.trigger;
        if let ShutdownTrigger::Server(index) = trigger {
            let server = servers.name(index);
            warn!(
                server,
                "shutdown: server {server} ended before the shutdown"
            );
        }
        info!(
            %trigger,
            in_flight = self.in_flight,
            "shutdown: triggered by {trigger}, readiness now fails ({} in flight)",
            self.in_flight,
        );
    }
}

impl Plan {
    /// Notice period: readiness fails, requests are still served, until the period has passed
    /// or someone cancels the layer's token. (`&mut self`, as every phase: the future holding
    /// it must be `Send`, and a `&Plan` would need the hooks to be `Sync`.)
    pub(super) async fn notice(&mut self) -> NoticeOutcome {
        let began = Instant::now();
        let end = if self.tracker.is_draining() {
            NoticeEnd::AlreadyDraining
        } else if self.notice.is_zero() {
            NoticeEnd::Passed
        } else {
            info!("shutdown: notice period of {:?} started", self.notice);
            tokio::select! {
                () = tokio::time::sleep(self.notice) => NoticeEnd::Passed,
                () = self.tracker.draining() => NoticeEnd::DrainStarted,
            }
        };
        NoticeOutcome {
            end,
            took: began.elapsed(),
        }
    }
}

pub(super) struct NoticeOutcome {
    end: NoticeEnd,
    pub(super) took: Duration,
}

enum NoticeEnd {
    /// The layer's token was cancelled before the trigger: no notice period.
    AlreadyDraining,
    Passed,
    /// The layer's token was cancelled during the notice period.
    DrainStarted,
}

impl NoticeOutcome {
    pub(super) fn log(&self) {
        match self.end {
            NoticeEnd::AlreadyDraining => {
                info!("shutdown: notice period skipped, already draining");
            }
            NoticeEnd::DrainStarted => {
                info!("shutdown: drain token cancelled during the notice period");
            }
            NoticeEnd::Passed => {}
        }
        info!("shutdown: notice period over after {:?}", self.took);
    }
}

impl Plan {
    /// Drain: the layer's token is cancelled, so the servers stop accepting and say goodbye to
    /// their connections. Waits, up to the drain deadline, for the servers to close every
    /// connection (then nothing more can arrive, and admission closes), then for the requests
    /// in flight.
    pub(super) async fn drain(&mut self, triggered: &Triggered) -> DrainOutcome {
        let began = Instant::now();
        self.tracker.token().cancel();
        let in_flight = self.tracker.in_flight();
        info!(
            in_flight,
            "shutdown: draining ({in_flight} in flight, deadline {:?})", self.drain,
        );
        let deadline = began + self.drain;
        let servers_given = !self.servers.is_empty();
        let servers_closed = !servers_given
            || tokio::time::timeout_at(deadline, self.servers.all_ended())
                .await
                .is_ok();
        if servers_given && servers_closed {
            // Every connection is closed: nothing more can arrive, and no server is left to cut.
            self.close_admission();
        }
        let drained = servers_closed
            && tokio::time::timeout_at(deadline, self.tracker.drained())
                .await
                .is_ok();
        let settled = self.settle_drain(Some(began), triggered);
        DrainOutcome {
            deadline: self.drain,
            servers_given,
            servers_closed,
            drained,
            settled,
            took: began.elapsed(),
        }
    }

    /// Ends the drain, whichever way it ends (drained, its deadline, a cut): counts what is
    /// still in flight, then closes admission and cuts the servers still running. `began` is
    /// when the drain began, if it did.
    pub(super) fn settle_drain(
        &mut self,
        began: Option<Instant>,
        triggered: &Triggered,
    ) -> Settled {
        // Counted before the servers are cut: an aborted connection releases its requests.
        let still_in_flight = self.tracker.in_flight();
        let completed = triggered.completed(&self.tracker, still_in_flight);
        let connections_cut = self.close_admission();
        Settled {
            still_in_flight,
            completed,
            servers: self.servers.reports(began),
            connections_cut,
        }
    }

    /// After a cut that stopped the drain, or came before it: settles it now.
    pub(super) fn cut_drain(&mut self, began: Option<Instant>, triggered: &Triggered) -> Settled {
        let settled = self.settle_drain(began, triggered);
        settled.log_cut();
        settled
    }

    /// Nothing more may arrive: closes admission (every request is refused from now on) and
    /// cuts the servers still running, returning the connections they still had open.
    fn close_admission(&mut self) -> Vec<OpenConnection> {
        self.tracker.close();
        if !self.servers.any_running() {
            return Vec::new();
        }
        #[cfg(feature = "serve")]
        let cut = self.tracker.registry().cut_all();
        #[cfg(not(feature = "serve"))]
        let cut = Vec::new();
        self.servers.abort_all();
        cut
    }
}

pub(super) struct DrainOutcome {
    deadline: Duration,
    servers_given: bool,
    /// Every server ended within the deadline (vacuously, with none).
    servers_closed: bool,
    /// The servers and the requests, all within the deadline.
    drained: bool,
    pub(super) settled: Settled,
    pub(super) took: Duration,
}

/// What the drain left, counted as it ended.
pub(super) struct Settled {
    pub(super) still_in_flight: usize,
    /// The requests that finished between the trigger and the end of the drain.
    pub(super) completed: u64,
    /// Every server, and how it ended.
    pub(super) servers: Vec<ServerReport>,
    /// The connections still open when their servers were cut.
    pub(super) connections_cut: Vec<OpenConnection>,
}

impl DrainOutcome {
    pub(super) fn log(&self) {
        if !self.servers_given {
            info!(
                "shutdown: no server given to spawn_server: the drain ends with the requests, \
                 whose last bytes may still be in the server's buffers"
            );
        } else if self.servers_closed {
            info!("shutdown: servers closed their connections, admission closed");
        }
        let (left, completed) = (self.settled.still_in_flight, self.settled.completed);
        if self.drained {
            info!(
                completed,
                "shutdown: drained in {:?}, {completed} requests completed", self.took
            );
            return;
        }
        let cut: Vec<_> = self
            .settled
            .servers
            .iter()
            .filter(|server| server.outcome == ServerOutcome::Cut)
            .map(|server| server.name.as_str())
            .collect();
        if !cut.is_empty() {
            warn!(
                "shutdown: drain deadline passed with servers still open: {}; cutting them",
                cut.join(", ")
            );
        }
        self.settled.log_cut();
        warn!(
            completed,
            still_in_flight = left,
            "shutdown: drain deadline of {:?} passed with {left} requests still in flight \
             ({completed} completed)",
            self.deadline,
        );
    }
}

impl Settled {
    /// Names the connections cut, each with the last request it delivered.
    pub(super) fn log_cut(&self) {
        for connection in &self.connections_cut {
            warn!("shutdown: cutting {connection}");
        }
    }
}

impl Plan {
    /// Tasks: their tokens are cancelled; waits for them up to the tasks deadline, then aborts
    /// the rest.
    pub(super) async fn tasks(&mut self) -> TasksOutcome {
        let began = Instant::now();
        let running = self.tasks.running();
        info!(
            running,
            "shutdown: cancelling {running} background tasks (deadline {:?})", self.tasks_timeout,
        );
        let ended = self.tasks.cancel_and_wait(self.tasks_timeout).await;
        TasksOutcome {
            deadline: self.tasks_timeout,
            ended,
            took: began.elapsed(),
        }
    }
}

impl Plan {
    /// After a cut that stopped the tasks phase, or came before it: aborts the tasks now.
    pub(super) fn cut_tasks(&mut self) -> TasksEnded {
        let ended = self.tasks.abort_all();
        if !ended.aborted.is_empty() {
            warn!("shutdown: aborted tasks: {}", ended.aborted.join(", "));
        }
        ended
    }
}

pub(super) struct TasksOutcome {
    deadline: Duration,
    pub(super) ended: TasksEnded,
    pub(super) took: Duration,
}

impl TasksOutcome {
    pub(super) fn log(&self) {
        if self.ended.aborted.is_empty() {
            info!("shutdown: background tasks finished in {:?}", self.took);
        } else {
            warn!(
                "shutdown: tasks deadline of {:?} passed, aborted: {}",
                self.deadline,
                self.ended.aborted.join(", ")
            );
        }
    }
}

impl Plan {
    /// Cleanup: the hooks, the last registered first, each under its own timeout.
    pub(super) async fn cleanup(&mut self) -> CleanupOutcome {
        let began = Instant::now();
        info!("shutdown: running {} cleanup hooks", self.hooks.len());
        let hooks = self.hooks.run_all().await;
        CleanupOutcome {
            hooks,
            took: began.elapsed(),
        }
    }
}

pub(super) struct CleanupOutcome {
    pub(super) hooks: Vec<HookReport>,
    pub(super) took: Duration,
}

impl CleanupOutcome {
    pub(super) fn log(&self, triggered: &Triggered) {
        info!(
            "shutdown: cleanup finished in {:?}, {:?} since the trigger",
            self.took,
            triggered.at.elapsed()
        );
    }
}

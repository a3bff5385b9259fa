//! [`Shutdown::run`]: waits for the trigger, then runs the phases in order, bounded by the
//! overall deadline and cut short by a second signal.

use std::pin::pin;
use std::time::Duration;

use tokio::runtime::Handle;
use tracing::{info, warn};

use super::cleanup::Hook;
use super::report::{Phase, Progress, ShutdownReport};
use super::servers::Servers;
use super::tasks::Tasks;
use super::trigger::{ShutdownTrigger, Signal};
use super::Shutdown;
use crate::tracker::ConnectionTracker;

/// What the phases after the trigger work with.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) tracker: ConnectionTracker,
    pub(crate) notice: Duration,
    pub(crate) drain: Duration,
    pub(crate) tasks_timeout: Duration,
    pub(crate) tasks: Tasks,
    pub(crate) servers: Servers,
    pub(crate) hooks: Vec<Hook>,
    pub(crate) runtime: Handle,
}

/// Why the sequence stopped.
enum End {
    Done,
    Forced(Signal),
    OverallDeadline,
}

impl Shutdown {
    /// Waits for the trigger, runs the shutdown sequence and returns its report.
    ///
    /// 1. **Trigger**: a signal, a [trigger future](super::ShutdownBuilder::trigger), the
    ///    [handle](Self::handle), or the drain token cancelled by someone else.
    /// 2. [`announce_shutdown`](crate::ConnectionTracker::announce_shutdown): readiness answers
    ///    `503`, HTTP/1.x responses carry `Connection: close`;
    ///    [`started_token`](Self::started_token) is cancelled.
    /// 3. **Notice period**: requests are still served.
    /// 4. **Drain**: the [drain token](Self::drain_token) is cancelled (the servers stop
    ///    accepting and say goodbye to their connections); waits, up to the drain deadline,
    ///    for the [servers](Self::spawn_server) to close every connection, then closes
    ///    admission and waits for [`drained`](crate::ConnectionTracker::drained). Servers still
    ///    open at the deadline are cut.
    /// 5. **Tasks**: their tokens are cancelled; waits for them up to their deadline, then
    ///    aborts the rest.
    /// 6. **Cleanup**: hooks in reverse order of registration, each under its own timeout.
    ///
    /// Each step is logged with `tracing` at `INFO` (problems at `WARN`), and so is the report.
    ///
    /// The [overall deadline](super::ShutdownBuilder::overall_timeout), counted from the
    /// trigger, bounds the steps after the trigger. A second signal during any of them skips
    /// the rest and returns at once, with [`forced_by`](ShutdownReport::forced_by) set. Only a
    /// signal forces: if a future or the handle started the shutdown, the first signal after it
    /// is only logged (a `preStop` hook that triggers the shutdown is followed by `SIGTERM`),
    /// and the second forces. Either way, what was still running (a task, a hook) is aborted.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the trigger loses nothing but the `Shutdown`; dropping it
    /// during the sequence stops the sequence where it is.
    pub async fn run(self) -> ShutdownReport {
        let Self {
            mut plan,
            mut triggers,
            started,
            overall,
        } = self;
        let trigger = triggers.first(&plan.tracker, &mut plan.servers).await;
        if let ShutdownTrigger::Server(index) = trigger {
            warn!(
                server = plan.servers.name(index),
                "shutdown: server {} ended before the shutdown",
                plan.servers.name(index)
            );
        }
        let hook_names = plan
            .hooks
            .iter()
            .rev()
            .map(|hook| hook.name().to_owned())
            .collect();
        let mut progress = Progress::new(trigger, &plan.tracker, hook_names);
        plan.tracker.announce_shutdown();
        started.cancel();
        info!(
            %trigger,
            in_flight = progress.in_flight_at_trigger(),
            "shutdown: triggered by {trigger}, readiness now fails ({} in flight)",
            progress.in_flight_at_trigger(),
        );

        let mut signals_to_force = match trigger {
            ShutdownTrigger::Signal(_) => 1,
            _ => 2,
        };
        let deadline = tokio::time::Instant::now() + overall;
        let end = {
            let mut sequence = pin!(plan.sequence(&mut progress));
            loop {
                tokio::select! {
                    biased;
                    signal = triggers.next_signal() => {
                        signals_to_force -= 1;
                        if signals_to_force == 0 {
                            break End::Forced(signal);
                        }
                        warn!(%signal, "shutdown: {signal} received while already shutting down; \
                            another signal forces an immediate exit");
                    }
                    () = tokio::time::sleep_until(deadline) => break End::OverallDeadline,
                    () = &mut sequence => break End::Done,
                }
            }
        };
        // The sequence's future is dropped: a hook that was running has been aborted.

        let (forced_by, overall_deadline_hit) = match end {
            End::Done => (None, false),
            End::Forced(signal) => {
                warn!(
                    %signal,
                    phase = ?progress.current_phase(),
                    "shutdown: second signal {signal} during the {} phase: skipping the rest, \
                     exiting with code {}",
                    phase_name(progress.current_phase()),
                    signal.exit_code(),
                );
                (Some(signal), false)
            }
            End::OverallDeadline => {
                warn!(
                    phase = ?progress.current_phase(),
                    "shutdown: overall deadline of {:?} passed during the {} phase: skipping the rest",
                    overall,
                    phase_name(progress.current_phase()),
                );
                (None, true)
            }
        };
        if !matches!(end, End::Done) {
            // Counted before the cut: an aborted connection releases its requests.
            progress.settle_drain(&plan.tracker);
            plan.tracker.close();
            plan.cut_servers(&mut progress);
            let aborted = plan.tasks.abort_all();
            if !aborted.is_empty() {
                warn!("shutdown: aborted tasks: {}", aborted.join(", "));
            }
            progress.tasks_aborted.extend(aborted);
        }
        progress.servers = plan.servers.reports(progress.drain_started());
        let report = progress.finish(&plan.tracker, forced_by, overall_deadline_hit);
        if report.is_clean() {
            info!(
                exit_code = report.exit_code(),
                "shutdown: finished\n{report}"
            );
        } else {
            warn!(
                exit_code = report.exit_code(),
                "shutdown: finished\n{report}"
            );
        }
        report
    }
}

impl Plan {
    /// The phases after the trigger. Records into `progress` as it goes, so that a cut (this
    /// future dropped) leaves an accurate partial record.
    async fn sequence(&mut self, progress: &mut Progress) {
        // Notice period: readiness fails, requests are still served.
        progress.begin(Phase::Notice);
        if self.tracker.is_draining() {
            info!("shutdown: notice period skipped, already draining");
        } else if !self.notice.is_zero() {
            info!("shutdown: notice period of {:?} started", self.notice);
            tokio::select! {
                () = tokio::time::sleep(self.notice) => {}
                () = self.tracker.draining() => {
                    info!("shutdown: drain token cancelled during the notice period");
                }
            }
        }
        let took = progress.end();
        info!("shutdown: notice period over after {took:?}");

        // Drain: the servers say goodbye and stop accepting; wait for them and for the
        // requests in flight.
        progress.begin(Phase::Drain);
        self.tracker.token().cancel();
        info!(
            in_flight = self.tracker.in_flight(),
            "shutdown: draining ({} in flight, deadline {:?})",
            self.tracker.in_flight(),
            self.drain,
        );
        let deadline = tokio::time::Instant::now() + self.drain;
        let servers_closed = self.servers.is_empty()
            || tokio::time::timeout_at(deadline, self.servers.all_ended())
                .await
                .is_ok();
        if self.servers.is_empty() {
            info!(
                "shutdown: no server given to spawn_server: the drain ends with the requests, \
                 whose last bytes may still be in the server's buffers"
            );
        } else if servers_closed {
            // Every connection is closed: nothing more can arrive.
            self.tracker.close();
            info!("shutdown: servers closed their connections, admission closed");
        }
        let drained = servers_closed
            && tokio::time::timeout_at(deadline, self.tracker.drained())
                .await
                .is_ok();
        // Read before the servers are cut: an aborted connection releases its requests.
        let left = self.tracker.in_flight();
        let completed = progress.drain_ended(&self.tracker, left);
        if !drained {
            // Past the deadline nothing more is admitted, and what is still open is cut.
            self.tracker.close();
            let open = self.servers.names_running().join(", ");
            if !open.is_empty() {
                warn!(
                    "shutdown: drain deadline passed with servers still open: {open}; cutting them"
                );
            }
            self.cut_servers(progress);
        }
        let took = progress.end();
        if drained {
            info!(
                completed,
                "shutdown: drained in {took:?}, {completed} requests completed"
            );
        } else {
            warn!(
                completed,
                still_in_flight = left,
                "shutdown: drain deadline of {:?} passed with {left} requests still in flight \
                 ({completed} completed)",
                self.drain,
            );
        }

        // Background tasks: cancel, wait, abort the rest.
        progress.begin(Phase::Tasks);
        progress.tasks_running = self.tasks.running();
        info!(
            running = progress.tasks_running,
            "shutdown: cancelling {} background tasks (deadline {:?})",
            progress.tasks_running,
            self.tasks_timeout,
        );
        let aborted = self.tasks.cancel_and_wait(self.tasks_timeout).await;
        let took = progress.end();
        if aborted.is_empty() {
            info!("shutdown: background tasks finished in {took:?}");
        } else {
            warn!(
                "shutdown: tasks deadline of {:?} passed, aborted: {}",
                self.tasks_timeout,
                aborted.join(", ")
            );
        }
        progress.tasks_aborted = aborted;

        // Cleanup hooks, last registered first.
        progress.begin(Phase::Cleanup);
        info!("shutdown: running {} cleanup hooks", self.hooks.len());
        while let Some(hook) = self.hooks.pop() {
            let name = hook.name().to_owned();
            info!(hook = %name, "shutdown: cleanup {name} started");
            progress.hook_started();
            let report = hook.run(&self.runtime).await;
            if report.outcome.is_ok() {
                info!(hook = %name, "shutdown: cleanup {name} ok in {:?}", report.duration);
            } else {
                warn!(hook = %name, "shutdown: cleanup {name} {}", report.outcome);
            }
            progress.hook_ended(report);
        }
        let took = progress.end();
        info!(
            "shutdown: cleanup finished in {took:?}, {:?} since the trigger",
            progress.elapsed()
        );
    }
}

impl Plan {
    /// Aborts the servers still running, and records the connections they still had open.
    #[cfg_attr(not(feature = "serve"), allow(unused_variables))]
    fn cut_servers(&mut self, progress: &mut Progress) {
        if self.servers.names_running().is_empty() {
            return;
        }
        #[cfg(feature = "serve")]
        {
            let cut = self.tracker.registry().cut_all();
            for connection in &cut {
                warn!("shutdown: cutting {connection}");
            }
            progress.connections_cut.extend(cut);
        }
        self.servers.abort_all();
    }
}

fn phase_name(phase: Option<Phase>) -> String {
    match phase {
        Some(phase) => phase.to_string(),
        None => "final".into(),
    }
}

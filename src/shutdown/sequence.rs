//! [`Shutdown::run`]: waits for the trigger, then runs the phases in order, bounded by the
//! overall deadline and cut short by a second signal; the report is assembled from the phases'
//! outcomes.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::phases::{CleanupOutcome, DrainOutcome, NoticeOutcome, TasksOutcome, Triggered};
use super::plan::{Plan, Shutdown};
use super::report::{Phase, PhaseTiming, ShutdownReport};
use super::trigger::{ShutdownTrigger, Signal, Triggers};

impl Shutdown {
    /// Waits for the trigger, runs the shutdown sequence and returns its report.
    ///
    /// 1. **Trigger**: a signal, a [trigger future](super::ShutdownBuilder::trigger), the
    ///    [handle](Self::handle), the layer's [token](crate::DrainLayer::token) cancelled by
    ///    someone else, or a [server](Self::spawn_server) that ends.
    /// 2. [`announce_shutdown`](crate::ConnectionTracker::announce_shutdown): readiness answers
    ///    `503`, HTTP/1.x responses carry `Connection: close`;
    ///    [`started_token`](Self::started_token) is cancelled.
    /// 3. **Notice period**: requests are still served.
    /// 4. **Drain**: the layer's token is cancelled (the servers stop accepting and say goodbye
    ///    to their connections); waits, up to the drain deadline, for the
    ///    [servers](Self::spawn_server) to close every connection, then closes admission and
    ///    waits for [`drained`](crate::ConnectionTracker::drained). Servers still open at the
    ///    deadline are cut.
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
        let triggered = Triggered::now(trigger, &plan.tracker);
        plan.tracker.announce_shutdown();
        started.cancel();
        triggered.log(&plan.servers);

        let deadline = triggered.at + overall;
        let mut done = Outcomes::new(triggered);
        let end = race(plan.phases(&mut done), &mut triggers, trigger, deadline).await;
        // The phases' future is dropped: a hook that was running has been aborted.
        end.log(done.under_way(), overall);
        let report = plan.finish(done, end);
        report.log();
        report
    }
}

impl Plan {
    /// The phases after the trigger, in order. Each outcome is kept in `done` as soon as its
    /// phase returns it, and then logged: if a cut drops this future, `done` still holds the
    /// outcomes of the phases that finished, and names the one under way.
    async fn phases(&mut self, done: &mut Outcomes) {
        done.begin(Phase::Notice);
        done.notice.insert(self.notice().await).log();
        done.begin(Phase::Drain);
        done.drain.insert(self.drain(&done.triggered).await).log();
        done.begin(Phase::Tasks);
        done.tasks.insert(self.tasks().await).log();
        done.begin(Phase::Cleanup);
        done.cleanup
            .insert(self.cleanup().await)
            .log(&done.triggered);
    }

    /// Ends what the phases left unfinished, and assembles the report from the outcomes.
    ///
    /// After a cut, the phase under way and those after it have no outcome: they end now.
    /// The drain settles (what is in flight is counted, admission closes, the servers still
    /// running are cut), the tasks are aborted, and the hooks are reported interrupted or
    /// skipped. Without a cut every phase has returned, and this only assembles.
    fn finish(&mut self, done: Outcomes, end: End) -> ShutdownReport {
        let phases = done.timings();
        let drain_began = done.began(Phase::Drain);
        let Outcomes {
            triggered,
            drain,
            tasks,
            cleanup,
            ..
        } = done;
        let drain = match drain {
            Some(drain) => drain.settled,
            None => self.cut_drain(drain_began, &triggered),
        };
        let tasks = match tasks {
            Some(tasks) => tasks.ended,
            None => self.cut_tasks(),
        };
        let hooks = match cleanup {
            Some(cleanup) => cleanup.hooks,
            None => self.hooks.cut(),
        };
        ShutdownReport {
            trigger: triggered.trigger,
            in_flight_at_trigger: triggered.in_flight,
            completed: drain.completed,
            rejected: self.tracker.rejected_total() - triggered.rejected,
            still_in_flight: drain.still_in_flight,
            servers: drain.servers,
            #[cfg(feature = "serve")]
            connections: self.tracker.connections(),
            #[cfg(feature = "serve")]
            connections_cut: drain.connections_cut,
            tasks_running: tasks.running,
            tasks_aborted: tasks.aborted,
            hooks,
            phases,
            total: triggered.at.elapsed(),
            forced_by: end.forced_by(),
            overall_deadline_hit: matches!(end, End::OverallDeadline),
        }
    }
}

/// What the phases returned, kept outside their future: when a cut drops it, the outcomes of
/// the phases that finished are still here, each whole, and `begun` names the phase it cut.
struct Outcomes {
    triggered: Triggered,
    /// The phase begun last, and when: the one under way, unless it has returned.
    begun: Option<(Phase, Instant)>,
    notice: Option<NoticeOutcome>,
    drain: Option<DrainOutcome>,
    tasks: Option<TasksOutcome>,
    cleanup: Option<CleanupOutcome>,
}

impl Outcomes {
    fn new(triggered: Triggered) -> Self {
        Self {
            triggered,
            begun: None,
            notice: None,
            drain: None,
            tasks: None,
            cleanup: None,
        }
    }

    fn begin(&mut self, phase: Phase) {
        self.begun = Some((phase, Instant::now()));
    }

    /// The phase begun last (at a cut, the one it stopped); `None` before the first.
    fn under_way(&self) -> Option<Phase> {
        self.begun.map(|(phase, _)| phase)
    }

    /// When `phase` began, if it is the one begun last.
    fn began(&self, phase: Phase) -> Option<Instant> {
        self.begun
            .filter(|(begun, _)| *begun == phase)
            .map(|(_, at)| at)
    }

    /// The phases that began, in order: those that returned, with the duration they measured,
    /// then the one a cut stopped, which lasted until now.
    fn timings(&self) -> Vec<PhaseTiming> {
        let Some((last, since)) = self.begun else {
            return Vec::new();
        };
        let returned = [
            (
                Phase::Notice,
                self.notice.as_ref().map(|notice| notice.took),
            ),
            (Phase::Drain, self.drain.as_ref().map(|drain| drain.took)),
            (Phase::Tasks, self.tasks.as_ref().map(|tasks| tasks.took)),
            (
                Phase::Cleanup,
                self.cleanup.as_ref().map(|cleanup| cleanup.took),
            ),
        ];
        returned
            .into_iter()
            .filter_map(|(phase, took)| match took {
                Some(duration) => Some(PhaseTiming {
                    phase,
                    duration,
                    finished: true,
                }),
                None if phase == last => Some(PhaseTiming {
                    phase,
                    duration: since.elapsed(),
                    finished: false,
                }),
                None => None,
            })
            .collect()
    }
}

/// How the sequence ended.
#[derive(Debug, Clone, Copy)]
enum End {
    Done,
    Forced(Signal),
    OverallDeadline,
}

/// Runs `phases` to the end, unless a second signal forces the exit or the overall `deadline`
/// passes first: then `phases` is dropped where it stands.
async fn race(
    phases: impl Future<Output = ()>,
    triggers: &mut Triggers,
    trigger: ShutdownTrigger,
    deadline: Instant,
) -> End {
    let mut phases = pin!(phases);
    let mut signals_to_force = match trigger {
        ShutdownTrigger::Signal(_) => 1,
        _ => 2,
    };
    loop {
        tokio::select! {
            biased;
            signal = triggers.next_signal() => {
                signals_to_force -= 1;
                if signals_to_force == 0 {
                    return End::Forced(signal);
                }
                warn!(%signal, "shutdown: {signal} received while already shutting down; \
                    another signal forces an immediate exit");
            }
            () = tokio::time::sleep_until(deadline) => return End::OverallDeadline,
            () = &mut phases => return End::Done,
        }
    }
}

impl End {
    fn forced_by(self) -> Option<Signal> {
        match self {
            Self::Forced(signal) => Some(signal),
            Self::Done | Self::OverallDeadline => None,
        }
    }

    /// Logs a cut, naming the phase it stopped.
    fn log(self, phase: Option<Phase>, overall: Duration) {
        let name = phase.map_or_else(|| "final".to_owned(), |phase| phase.to_string());
        match self {
            Self::Done => {}
            Self::Forced(signal) => warn!(
                %signal,
                ?phase,
                "shutdown: second signal {signal} during the {name} phase: skipping the rest, \
                 exiting with code {}",
                signal.exit_code(),
            ),
            Self::OverallDeadline => warn!(
                ?phase,
                "shutdown: overall deadline of {overall:?} passed during the {name} phase: \
                 skipping the rest",
            ),
        }
    }
}

//! [`ShutdownReport`]: what the shutdown did, how long each phase took, and the exit code.

use std::fmt;
use std::process::{ExitCode, Termination};
use std::time::Duration;

use tokio::time::Instant;

use super::cleanup::{HookOutcome, HookReport};
use super::servers::ServerReport;
use super::trigger::{ShutdownTrigger, Signal};
#[cfg(feature = "serve")]
use crate::connections::{ConnectionCounts, OpenConnection};
use crate::tracker::ConnectionTracker;

/// The phases of the shutdown sequence, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Readiness fails, requests are still served.
    Notice,
    /// The token is cancelled; waiting for requests in flight, bounded by the drain deadline.
    Drain,
    /// Background tasks are cancelled and awaited, bounded by their deadline.
    Tasks,
    /// Cleanup hooks run in reverse order of registration.
    Cleanup,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Notice => "notice",
            Self::Drain => "drain",
            Self::Tasks => "tasks",
            Self::Cleanup => "cleanup",
        })
    }
}

/// How long one phase took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhaseTiming {
    /// Which phase.
    pub phase: Phase,
    /// Its duration (up to the cut, if it did not finish).
    pub duration: Duration,
    /// `false` if a second signal or the overall deadline cut it short.
    pub finished: bool,
}

/// What a shutdown did, returned by [`Shutdown::run`](super::Shutdown::run) and logged.
///
/// Counts of requests include [`InFlightGuard`](crate::InFlightGuard)s, and leave out the
/// probes and exempt paths the layer never counts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What started the shutdown.
    pub trigger: ShutdownTrigger,
    /// Requests in flight when the shutdown was triggered.
    pub in_flight_at_trigger: usize,
    /// Requests that finished between the trigger and the end of the drain, including those
    /// admitted during the notice period.
    pub completed: u64,
    /// Requests refused between the trigger and the end of the sequence.
    pub rejected: u64,
    /// Requests still in flight when the drain deadline passed (or the sequence was cut
    /// short); `0` after a complete drain.
    pub still_in_flight: usize,
    /// Every server given to [`Shutdown::spawn_server`](super::Shutdown::spawn_server), in the
    /// order they were added: whether it closed every connection (every response written)
    /// within the drain deadline, failed, or was cut with connections still open.
    pub servers: Vec<ServerReport>,
    /// The connections [`serve`](crate::serve()) owned: accepted, told to leave, closed, cut.
    #[cfg(feature = "serve")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
    pub connections: ConnectionCounts,
    /// The connections still open when the servers were cut (at the drain deadline, or by a
    /// forced exit), each with the last request it delivered: the responses that may be
    /// unfinished.
    #[cfg(feature = "serve")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
    pub connections_cut: Vec<OpenConnection>,
    /// Background tasks still running when they were cancelled.
    pub tasks_running: usize,
    /// Names of the background tasks aborted because they missed their deadline (or the
    /// sequence was cut short).
    pub tasks_aborted: Vec<String>,
    /// Every cleanup hook, in the order they ran (reverse order of registration).
    pub hooks: Vec<HookReport>,
    /// The phases that started, in order.
    pub phases: Vec<PhaseTiming>,
    /// From the trigger to the report.
    pub total: Duration,
    /// The second signal that forced an immediate exit, if one did.
    pub forced_by: Option<Signal>,
    /// `true` if the overall deadline cut the sequence short.
    pub overall_deadline_hit: bool,
}

impl ShutdownReport {
    /// Exit code meaning a deadline was hit or a cleanup hook did not succeed.
    pub const EXIT_INCOMPLETE: u8 = 1;

    /// `true` if everything finished in time: requests drained, every server closed its
    /// connections (every response written), no task aborted, every hook succeeded, no second
    /// signal, within the overall deadline.
    pub fn is_clean(&self) -> bool {
        self.forced_by.is_none()
            && !self.overall_deadline_hit
            && self.still_in_flight == 0
            && self.servers.iter().all(|server| server.outcome.is_closed())
            && self.tasks_aborted.is_empty()
            && self.hooks.iter().all(|hook| hook.outcome.is_ok())
    }

    /// The process exit code a supervisor understands:
    ///
    /// * `0`: [clean](Self::is_clean).
    /// * `130` (`SIGINT`) or `143` (`SIGTERM`): a second signal forced the exit; the code is
    ///   that of the second signal, `128 + signo` as a shell reports a process it killed.
    /// * `1` ([`EXIT_INCOMPLETE`](Self::EXIT_INCOMPLETE)): otherwise, when a deadline was hit
    ///   (requests still in flight or a server still open at the drain deadline, tasks
    ///   aborted, a hook timed out, the overall deadline) or a server or a hook failed. The
    ///   report says which.
    ///
    /// `main` can return the report itself (it implements [`Termination`]), or
    /// `ExitCode::from(&report)`.
    pub fn exit_code(&self) -> u8 {
        match self.forced_by {
            Some(signal) => signal.exit_code(),
            None if self.is_clean() => 0,
            None => Self::EXIT_INCOMPLETE,
        }
    }

    /// The hooks that did not succeed.
    pub fn hooks_failed(&self) -> impl Iterator<Item = &HookReport> + '_ {
        self.hooks.iter().filter(|hook| !hook.outcome.is_ok())
    }

    /// How long `phase` took, or `None` if it never started.
    pub fn phase(&self, phase: Phase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|timing| timing.phase == phase)
            .map(|timing| timing.duration)
    }
}

/// `main` may return the report: the process exits with its [exit code](ShutdownReport::exit_code).
///
/// ```no_run
/// # use tower_drain::{DrainLayer, Shutdown, ShutdownReport};
/// #[tokio::main]
/// async fn main() -> ShutdownReport {
///     let drain = DrainLayer::default();
///     let shutdown = Shutdown::builder(&drain).build().expect("valid timings");
///     // ... serve ...
///     shutdown.run().await
/// }
/// ```
impl Termination for ShutdownReport {
    fn report(self) -> ExitCode {
        ExitCode::from(&self)
    }
}

impl From<&ShutdownReport> for ExitCode {
    fn from(report: &ShutdownReport) -> Self {
        ExitCode::from(report.exit_code())
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shutdown report: trigger {}, total {:?}, exit code {}",
            self.trigger,
            self.total,
            self.exit_code()
        )?;
        writeln!(
            f,
            "  requests: {} in flight at trigger, {} completed, {} rejected, {} still in flight",
            self.in_flight_at_trigger, self.completed, self.rejected, self.still_in_flight
        )?;
        for server in &self.servers {
            write!(f, "  server {}: {}", server.name, server.outcome)?;
            match server.closed_after {
                Some(after) if server.outcome.is_closed() => {
                    writeln!(f, ", {after:?} after the drain began")?
                }
                _ => writeln!(f)?,
            }
        }
        #[cfg(feature = "serve")]
        {
            let c = &self.connections;
            if c.accepted > 0 {
                writeln!(
                    f,
                    "  connections: {} accepted, {} told to leave, {} closed, {} cut",
                    c.accepted, c.told_to_leave, c.closed, c.cut
                )?;
            }
            for connection in &self.connections_cut {
                writeln!(f, "  cut: {connection}")?;
            }
        }
        write!(f, "  tasks: {} running at cancel", self.tasks_running)?;
        if self.tasks_aborted.is_empty() {
            writeln!(f, ", none aborted")?;
        } else {
            writeln!(f, ", aborted: {}", self.tasks_aborted.join(", "))?;
        }
        f.write_str("  phases:")?;
        for timing in &self.phases {
            let cut = if timing.finished { "" } else { " (cut short)" };
            write!(f, " {} {:?}{cut};", timing.phase, timing.duration)?;
        }
        writeln!(f)?;
        for hook in &self.hooks {
            writeln!(
                f,
                "  cleanup {}: {} ({:?})",
                hook.name, hook.outcome, hook.duration
            )?;
        }
        if let Some(signal) = self.forced_by {
            writeln!(f, "  forced: a second signal ({signal}) skipped the rest")?;
        }
        if self.overall_deadline_hit {
            writeln!(f, "  the overall deadline passed and skipped the rest")?;
        }
        Ok(())
    }
}

/// The report as the sequence fills it in. Kept outside the sequence's future so that what
/// happened before a cut is still there after the future is dropped.
#[derive(Debug)]
pub(crate) struct Progress {
    trigger: ShutdownTrigger,
    started: Instant,
    in_flight_at_trigger: usize,
    admitted_at_trigger: u64,
    rejected_at_trigger: u64,
    current: Option<(Phase, Instant)>,
    phases: Vec<PhaseTiming>,
    /// Set when the drain phase ends: requests left and requests completed.
    drain_result: Option<(usize, u64)>,
    /// When the drain phase began.
    drain_started: Option<Instant>,
    pub(crate) servers: Vec<ServerReport>,
    #[cfg(feature = "serve")]
    pub(crate) connections_cut: Vec<OpenConnection>,
    pub(crate) tasks_running: usize,
    pub(crate) tasks_aborted: Vec<String>,
    /// Names of the hooks in the order they run.
    hook_names: Vec<String>,
    hooks: Vec<HookReport>,
    hook_started: Option<Instant>,
}

impl Progress {
    pub(crate) fn new(
        trigger: ShutdownTrigger,
        tracker: &ConnectionTracker,
        hook_names: Vec<String>,
    ) -> Self {
        Self {
            trigger,
            started: Instant::now(),
            in_flight_at_trigger: tracker.in_flight(),
            admitted_at_trigger: tracker.admitted_total(),
            rejected_at_trigger: tracker.rejected_total(),
            current: None,
            phases: Vec::new(),
            drain_result: None,
            drain_started: None,
            servers: Vec::new(),
            #[cfg(feature = "serve")]
            connections_cut: Vec::new(),
            tasks_running: 0,
            tasks_aborted: Vec::new(),
            hook_names,
            hooks: Vec::new(),
            hook_started: None,
        }
    }

    pub(crate) fn in_flight_at_trigger(&self) -> usize {
        self.in_flight_at_trigger
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn begin(&mut self, phase: Phase) {
        let now = Instant::now();
        if phase == Phase::Drain {
            self.drain_started = Some(now);
        }
        self.current = Some((phase, now));
    }

    pub(crate) fn drain_started(&self) -> Option<Instant> {
        self.drain_started
    }

    /// Ends the current phase and returns its duration.
    pub(crate) fn end(&mut self) -> Duration {
        let Some((phase, started)) = self.current.take() else {
            return Duration::ZERO;
        };
        let duration = started.elapsed();
        self.phases.push(PhaseTiming {
            phase,
            duration,
            finished: true,
        });
        duration
    }

    pub(crate) fn current_phase(&self) -> Option<Phase> {
        self.current.map(|(phase, _)| phase)
    }

    /// Records the end of the drain; returns how many requests completed since the trigger.
    pub(crate) fn drain_ended(&mut self, tracker: &ConnectionTracker, left: usize) -> u64 {
        let admitted = tracker.admitted_total() - self.admitted_at_trigger;
        let completed = (self.in_flight_at_trigger as u64 + admitted).saturating_sub(left as u64);
        self.drain_result = Some((left, completed));
        completed
    }

    /// Cut short before the drain ended: records what is in flight now.
    pub(crate) fn settle_drain(&mut self, tracker: &ConnectionTracker) {
        if self.drain_result.is_none() {
            self.drain_ended(tracker, tracker.in_flight());
        }
    }

    pub(crate) fn hook_started(&mut self) {
        self.hook_started = Some(Instant::now());
    }

    pub(crate) fn hook_ended(&mut self, report: HookReport) {
        self.hook_started = None;
        self.hooks.push(report);
    }

    pub(crate) fn finish(
        mut self,
        tracker: &ConnectionTracker,
        forced_by: Option<Signal>,
        overall_deadline_hit: bool,
    ) -> ShutdownReport {
        if let Some((phase, started)) = self.current.take() {
            self.phases.push(PhaseTiming {
                phase,
                duration: started.elapsed(),
                finished: false,
            });
        }
        self.settle_drain(tracker);
        let (still_in_flight, completed) = self.drain_result.unwrap_or_default();
        let mut hooks = self.hooks;
        for name in self.hook_names.into_iter().skip(hooks.len()) {
            let (outcome, duration) = match self.hook_started.take() {
                Some(started) => (HookOutcome::Interrupted, started.elapsed()),
                None => (HookOutcome::Skipped, Duration::ZERO),
            };
            hooks.push(HookReport {
                name,
                outcome,
                duration,
            });
        }
        ShutdownReport {
            trigger: self.trigger,
            in_flight_at_trigger: self.in_flight_at_trigger,
            completed,
            rejected: tracker.rejected_total() - self.rejected_at_trigger,
            still_in_flight,
            tasks_running: self.tasks_running,
            tasks_aborted: self.tasks_aborted,
            servers: self.servers,
            #[cfg(feature = "serve")]
            connections: tracker.connections(),
            #[cfg(feature = "serve")]
            connections_cut: self.connections_cut,
            hooks,
            phases: self.phases,
            total: self.started.elapsed(),
            forced_by,
            overall_deadline_hit,
        }
    }
}

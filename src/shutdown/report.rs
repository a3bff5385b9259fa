//! [`ShutdownReport`]: what the shutdown did, how long each phase took, and the exit code.

use std::fmt;
use std::process::{ExitCode, Termination};
use std::time::Duration;

use tracing::{info, warn};

use super::cleanup::HookReport;
use super::servers::ServerReport;
use super::trigger::{ShutdownTrigger, Signal};
#[cfg(feature = "serve")]
use crate::connections::{ConnectionCounts, OpenConnection};

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

    /// Logs the whole report, at `WARN` unless it is [clean](Self::is_clean).
    pub(super) fn log(&self) {
        let exit_code = self.exit_code();
        if self.is_clean() {
            info!(exit_code, "shutdown: finished\n{self}");
        } else {
            warn!(exit_code, "shutdown: finished\n{self}");
        }
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

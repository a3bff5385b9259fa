//! [`ShutdownConfigError`]: a configuration that cannot work, refused by
//! [`ShutdownBuilder::build`](super::ShutdownBuilder::build).

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

/// Why [`ShutdownBuilder::build`](super::ShutdownBuilder::build) refused to build a
/// [`Shutdown`](super::Shutdown).
///
/// Every check runs at start-up, so a bad configuration fails the first deploy of the code
/// rather than surprising you at the first shutdown. The message names the builder methods
/// whose values cannot work.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShutdownConfigError {
    /// A deadline was zero: that phase could never finish.
    ZeroTimeout {
        /// The builder method that set it, such as `"drain_timeout"`.
        name: &'static str,
    },
    /// The notice period is not shorter than the overall deadline, so the drain would never
    /// start.
    NoticeNotBelowOverall {
        /// The notice period.
        notice: Duration,
        /// The overall deadline.
        overall: Duration,
    },
    /// The notice period, the drain deadline and the tasks' deadline add up to the overall
    /// deadline or more: a drain or tasks phase that runs to its deadline would leave no time
    /// for the cleanup hooks, and the pool would never be closed.
    NoTimeForCleanup {
        /// The notice period.
        notice: Duration,
        /// The drain deadline.
        drain: Duration,
        /// The tasks' deadline.
        tasks: Duration,
        /// The overall deadline.
        overall: Duration,
    },
    /// `build()` was called outside a Tokio runtime: the signal handlers and the tasks need one.
    NoRuntime,
    /// [`signals`](super::ShutdownBuilder::signals) was asked for, and installing a signal
    /// handler failed (or the platform has no signals: [`io::ErrorKind::Unsupported`]).
    Signal(io::Error),
}

impl fmt::Display for ShutdownConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroTimeout { name } => write!(f, "{name} must be greater than zero"),
            Self::NoticeNotBelowOverall { notice, overall } => write!(
                f,
                "notice_period ({notice:?}) must be shorter than overall_timeout ({overall:?}): \
                 the overall deadline would pass before the notice period ends"
            ),
            Self::NoTimeForCleanup {
                notice,
                drain,
                tasks,
                overall,
            } => write!(
                f,
                "notice_period ({notice:?}) + drain_timeout ({drain:?}) + tasks_timeout \
                 ({tasks:?}) must be shorter than overall_timeout ({overall:?}), leaving time \
                 for the cleanup hooks"
            ),
            Self::NoRuntime => f.write_str(
                "ShutdownBuilder::build must be called from within a Tokio runtime \
                 (it installs signal handlers and spawns tasks)",
            ),
            Self::Signal(err) => write!(f, "could not install a signal handler: {err}"),
        }
    }
}

impl Error for ShutdownConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Signal(err) => Some(err),
            _ => None,
        }
    }
}

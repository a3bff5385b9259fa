//! What starts a shutdown: OS signals, user futures, a [`ShutdownHandle`], the layer's token, or
//! a server that ends.
//! And what forces one: a second signal.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::servers::Servers;
use crate::tracker::ConnectionTracker;

pub(crate) type BoxTrigger = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A termination signal, as delivered by the OS or sent through [`ShutdownHandle::signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT` (Ctrl-C; on Windows, the Ctrl-C event).
    Interrupt,
    /// `SIGTERM`, what Kubernetes, systemd and Docker send first.
    Terminate,
}

impl Signal {
    /// The conventional exit status of a process killed by this signal: `128 + signo`, so
    /// `130` for `SIGINT` and `143` for `SIGTERM`.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        })
    }
}

/// What started a shutdown, as recorded in the [`ShutdownReport`](super::ShutdownReport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownTrigger {
    /// A signal from the OS or from [`ShutdownHandle::signal`].
    Signal(Signal),
    /// A future given to [`ShutdownBuilder::trigger`](super::ShutdownBuilder::trigger)
    /// completed; the index is the order in which it was added, from 0.
    Future(usize),
    /// [`ShutdownHandle::trigger`] was called.
    Handle,
    /// Someone cancelled the layer's [token](crate::DrainLayer::token) directly. The notice
    /// period is skipped: the drain has already begun.
    DrainToken,
    /// A server given to [`Shutdown::spawn_server`](super::Shutdown::spawn_server) ended
    /// before anything else started the shutdown; the index is the order in which it was
    /// added, from 0. The [report](super::ShutdownReport::servers) says how it ended.
    Server(usize),
}

impl fmt::Display for ShutdownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(signal) => write!(f, "{signal}"),
            Self::Future(index) => write!(f, "trigger future #{index}"),
            Self::Handle => f.write_str("ShutdownHandle::trigger"),
            Self::DrainToken => f.write_str("the drain token was cancelled"),
            Self::Server(index) => write!(f, "server #{index} ended"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Trigger,
    Signal(Signal),
}

/// Starts a shutdown from anywhere: an admin endpoint, a test, a fatal error in a task.
///
/// Get one from [`Shutdown::handle`](super::Shutdown::handle). Cheap to clone. Calls made
/// before [`Shutdown::run`](super::Shutdown::run) is awaited are kept, not lost.
#[derive(Clone)]
pub struct ShutdownHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl ShutdownHandle {
    /// Starts the shutdown sequence. Does nothing if it has already started.
    pub fn trigger(&self) {
        // An error means the `Shutdown` is gone: nothing is left to trigger.
        let _ = self.tx.send(Event::Trigger);
    }

    /// Behaves exactly as if the OS had delivered `signal`: starts the shutdown, or, if a
    /// signal already started it, forces the immediate exit with `signal`'s code.
    pub fn signal(&self, signal: Signal) {
        let _ = self.tx.send(Event::Signal(signal));
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").finish_non_exhaustive()
    }
}

/// Everything that can start or force a shutdown, polled by [`Shutdown::run`](super::Shutdown::run).
pub(crate) struct Triggers {
    os: Option<OsSignals>,
    futures: Vec<Option<BoxTrigger>>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Triggers {
    /// Installs the OS signal handlers now (when `signals`), so that a signal arriving before
    /// `run()` is awaited is kept rather than killing the process or being lost.
    pub(crate) fn new(signals: bool, futures: Vec<BoxTrigger>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let os = if signals {
            Some(OsSignals::install()?)
        } else {
            None
        };
        Ok(Self {
            os,
            futures: futures.into_iter().map(Some).collect(),
            tx,
            rx,
        })
    }

    pub(crate) fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            tx: self.tx.clone(),
        }
    }

    /// Waits for whatever starts the shutdown.
    pub(crate) async fn first(
        &mut self,
        tracker: &ConnectionTracker,
        servers: &mut Servers,
    ) -> ShutdownTrigger {
        let mut draining = pin!(tracker.draining());
        poll_fn(|cx| {
            if let Poll::Ready(event) = self.poll_event(cx) {
                return Poll::Ready(match event {
                    Event::Trigger => ShutdownTrigger::Handle,
                    Event::Signal(signal) => ShutdownTrigger::Signal(signal),
                });
            }
            for (index, slot) in self.futures.iter_mut().enumerate() {
                if let Some(future) = slot {
                    if future.as_mut().poll(cx).is_ready() {
                        *slot = None;
                        return Poll::Ready(ShutdownTrigger::Future(index));
                    }
                }
            }
            if draining.as_mut().poll(cx).is_ready() {
                return Poll::Ready(ShutdownTrigger::DrainToken);
            }
            servers.poll_any_ended(cx).map(ShutdownTrigger::Server)
        })
        .await
    }

    /// Waits for the next signal (OS or handle). Other triggers are ignored from now on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal is only taken from its stream when it is returned.
    pub(crate) async fn next_signal(&mut self) -> Signal {
        poll_fn(|cx| loop {
            match self.poll_event(cx) {
                Poll::Ready(Event::Signal(signal)) => return Poll::Ready(signal),
                Poll::Ready(Event::Trigger) => {
                    tracing::debug!("shutdown: already shutting down, trigger ignored");
                }
                Poll::Pending => return Poll::Pending,
            }
        })
        .await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        // We hold a sender ourselves, so the channel never reports closed.
        if let Poll::Ready(Some(event)) = self.rx.poll_recv(cx) {
            return Poll::Ready(event);
        }
        match &mut self.os {
            Some(os) => os.poll_recv(cx).map(Event::Signal),
            None => Poll::Pending,
        }
    }
}

impl fmt::Debug for Triggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triggers")
            .field("os_signals", &self.os.is_some())
            .field("futures", &self.futures.len())
            .finish_non_exhaustive()
    }
}

/// The OS signal streams. Registered when created: deliveries before the first poll are kept.
/// (Not under `cfg(loom)`, where tokio has no signal support; loom models only the tracker.)
struct OsSignals {
    #[cfg(all(unix, not(loom)))]
    terminate: tokio::signal::unix::Signal,
    #[cfg(all(unix, not(loom)))]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(all(windows, not(loom)))]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl OsSignals {
    #[cfg(all(unix, not(loom)))]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(all(windows, not(loom)))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            ctrl_c: tokio::signal::windows::ctrl_c()?,
        })
    }

    /// No signals here: `signals()` is refused by `build()` rather than silently ignored.
    #[cfg(not(all(any(unix, windows), not(loom))))]
    fn install() -> std::io::Result<Self> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this platform has no SIGTERM/SIGINT for tokio to listen to",
        ))
    }

    #[allow(unused_variables)]
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        #[cfg(all(unix, not(loom)))]
        {
            // A closed stream (`None`) only happens when the runtime shuts down: ignore it.
            if let Poll::Ready(Some(())) = self.terminate.poll_recv(cx) {
                return Poll::Ready(Signal::Terminate);
            }
            if let Poll::Ready(Some(())) = self.interrupt.poll_recv(cx) {
                return Poll::Ready(Signal::Interrupt);
            }
        }
        #[cfg(all(windows, not(loom)))]
        if let Poll::Ready(Some(())) = self.ctrl_c.poll_recv(cx) {
            return Poll::Ready(Signal::Interrupt);
        }
        Poll::Pending
    }
}

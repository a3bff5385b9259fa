//! [`Drained`] and [`Draining`]: futures that wait for the tracker to reach a state.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::loom::sync::Notified;
use crate::loom::time::{sleep_until, Sleep};
use crate::tracker::state::{DrainStage, Shared};

/// The state a [`WaitFor`] waits for.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// The drain has begun.
    Draining,
    /// Readiness fails: shutdown announced, or draining.
    #[cfg(feature = "serve")]
    Announced,
    /// Admission has closed and nothing is in flight.
    Drained,
}

impl Until {
    /// Where the wait stands: done, waiting for a wake-up, or (the handoff grace) waiting for
    /// a wake-up or an instant, whichever comes first.
    fn stage(self, shared: &Shared) -> DrainStage {
        let done = match self {
            Self::Draining => shared.is_draining(),
            #[cfg(feature = "serve")]
            Self::Announced => !shared.is_ready(),
            Self::Drained => return shared.stage(),
        };
        if done {
            DrainStage::Drained
        } else {
            DrainStage::Waiting
        }
    }
}

pin_project! {
    /// The one wait loop. The `Notified` is always created before the state is checked, and a
    /// `Notified` receives every `notify_waiters` issued after its creation, so the wake-up
    /// that brings the state cannot fall between the check and the wait.
    struct WaitFor<'a> {
        #[pin]
        notified: Notified<'a>,
        shared: &'a Shared,
        until: Until,
        // The end of the handoff grace, armed only while nothing is in flight and admission
        // is still open: the one moment no wake-up would come by itself.
        grace: Option<Pin<Box<Sleep>>>,
    }
}

impl<'a> WaitFor<'a> {
    fn new(shared: &'a Shared, until: Until) -> Self {
        Self {
            notified: shared.notified(),
            shared,
            until,
            grace: None,
        }
    }

    fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut me = self.project();
        loop {
            match me.until.stage(me.shared) {
                DrainStage::Drained => return Poll::Ready(()),
                DrainStage::Grace(end) => {
                    let sleep = me.grace.get_or_insert_with(|| Box::pin(sleep_until(end)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        me.shared.grace_ended();
                        continue;
                    }
                }
                DrainStage::Waiting => {}
            }
            ready!(me.notified.as_mut().poll(cx));
            // Woken, but the state may not be the one we wait for (draining started while
            // requests were in flight): register again before checking again.
            me.notified.set(me.shared.notified());
        }
    }
}

pin_project! {
    /// Future returned by [`ConnectionTracker::drained`](crate::ConnectionTracker::drained)
    /// and [`DrainLayer::drained`](crate::DrainLayer::drained).
    ///
    /// Resolves once admission has closed and nothing is in flight.
    #[must_use = "futures do nothing unless polled"]
    pub struct Drained<'a> {
        #[pin]
        wait: WaitFor<'a>,
    }
}

impl<'a> Drained<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        Self {
            wait: WaitFor::new(shared, Until::Drained),
        }
    }
}

impl Future for Drained<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().wait.poll_wait(cx)
    }
}

impl fmt::Debug for Drained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained").finish_non_exhaustive()
    }
}

pin_project! {
    /// Future returned by [`ConnectionTracker::draining`](crate::ConnectionTracker::draining).
    ///
    /// Resolves once draining has started (the token was cancelled).
    #[must_use = "futures do nothing unless polled"]
    pub struct Draining<'a> {
        #[pin]
        wait: WaitFor<'a>,
    }
}

impl<'a> Draining<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        Self {
            wait: WaitFor::new(shared, Until::Draining),
        }
    }

    /// Resolves once readiness fails instead: shutdown announced, or draining.
    #[cfg(feature = "serve")]
    pub(crate) fn announced(shared: &'a Shared) -> Self {
        Self {
            wait: WaitFor::new(shared, Until::Announced),
        }
    }
}

impl Future for Draining<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().wait.poll_wait(cx)
    }
}

impl fmt::Debug for Draining<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Draining").finish_non_exhaustive()
    }
}

//! [`Drained`] and [`Draining`]: futures that wait for the tracker to reach a state.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::loom::sync::Notified;
use crate::loom::time::{sleep_until, Sleep};
use crate::tracker::{Progress, Shared};

pin_project! {
    /// Waits until `done` holds. The `Notified` is always created before `done` is checked,
    /// and a `Notified` receives every `notify_waiters` issued after its creation, so the
    /// wake-up that makes `done` true cannot fall between the check and the wait.
    struct WaitFor<'a> {
        #[pin]
        notified: Notified<'a>,
        shared: &'a Shared,
        done: fn(&Shared) -> bool,
    }
}

impl<'a> WaitFor<'a> {
    fn new(shared: &'a Shared, done: fn(&Shared) -> bool) -> Self {
        Self {
            notified: shared.notified(),
            shared,
            done,
        }
    }

    fn poll_wait(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut me = self.project();
        loop {
            if (me.done)(me.shared) {
                return Poll::Ready(());
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
        notified: Notified<'a>,
        shared: &'a Shared,
        // The end of the handoff grace, armed only while nothing is in flight and admission
        // is still open: the one moment no wake-up would come by itself.
        grace: Option<Pin<Box<Sleep>>>,
    }
}

impl<'a> Drained<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Self {
        Self {
            // Created before the state is first checked: see `WaitFor`.
            notified: shared.notified(),
            shared,
            grace: None,
        }
    }
}

impl Future for Drained<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut me = self.project();
        loop {
            match me.shared.progress() {
                Progress::Drained => return Poll::Ready(()),
                Progress::Grace(end) => {
                    let sleep = me.grace.get_or_insert_with(|| Box::pin(sleep_until(end)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        me.shared.grace_ended();
                        continue;
                    }
                }
                Progress::Waiting => {}
            }
            ready!(me.notified.as_mut().poll(cx));
            // Woken, but the state may not be the one we wait for (draining started while
            // requests were in flight): register again before checking again.
            me.notified.set(me.shared.notified());
        }
    }
}

impl fmt::Debug for Drained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained").finish_non_exhaustive()
    }
}

pin_project! {
    /// Future returned by [`ConnectionTracker::draining`](crate::ConnectionTracker::draining)
    /// and [`DrainWatch::draining`](crate::DrainWatch::draining).
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
            wait: WaitFor::new(shared, Shared::is_draining),
        }
    }

    /// Resolves once readiness fails instead: shutdown announced, or draining.
    #[cfg(feature = "serve")]
    pub(crate) fn announced(shared: &'a Shared) -> Self {
        Self {
            wait: WaitFor::new(shared, |shared| !shared.is_ready()),
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

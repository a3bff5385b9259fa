//! Mirrors a [`CancellationToken`] into the tracker's atomic state.
//!
//! `CancellationToken::is_cancelled` takes a `std::sync::Mutex` (tokio-util 0.7), which must not
//! sit on the per-request path. Instead, the tracker registers a waker on the token once, and
//! the token's `cancel()` calls that waker before it returns: the wake sets the tracker's
//! `DRAINING` bit on the cancelling thread. No task is spawned and no runtime is needed, and a
//! cancel cannot be missed: tokio-util guarantees the registered future completes once the
//! token is cancelled, whenever that happens relative to the registration.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// What the watch tells when the token is cancelled (the tracker's state).
pub(crate) trait OnCancel: Send + Sync + 'static {
    /// The token was cancelled: called once, on the cancelling thread.
    fn cancelled(&self);
}

pub(crate) struct TokenWatch<T> {
    /// Weak: the state owns the watch, not the other way round.
    shared: Weak<T>,
    /// `None` once the token fired or the tracker was dropped.
    future: Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

impl<T: OnCancel> TokenWatch<T> {
    pub(crate) fn new(token: CancellationToken, shared: Weak<T>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            future: Mutex::new(Some(Box::pin(token.cancelled_owned()))),
        })
    }

    /// Polls the token's future with this watch as the waker. Called once at creation and
    /// then by every wake-up. `cancel()` wakes us after it has released the token's lock, so
    /// polling (which takes that lock) cannot deadlock.
    pub(crate) fn poll_token(self: &Arc<Self>) {
        let fired = {
            let mut slot = self.future.lock().unwrap_or_else(|e| e.into_inner());
            let Some(future) = slot.as_mut() else { return };
            let waker = Waker::from(Arc::clone(self));
            let fired = future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            if fired {
                *slot = None;
            }
            fired
        };
        if fired {
            if let Some(shared) = self.shared.upgrade() {
                shared.cancelled();
            }
        }
    }

    /// Drops the registration on the token (and with it the waker that points back here).
    pub(crate) fn cancel(&self) {
        let future = self.future.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(future);
    }
}

impl<T: OnCancel> Wake for TokenWatch<T> {
    fn wake(self: Arc<Self>) {
        self.poll_token();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll_token();
    }
}

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

use crate::tracker::state::Shared;

pub(crate) struct TokenWatch {
    shared: Weak<Shared>,
    /// `None` once the token fired or the tracker was dropped.
    future: Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

impl TokenWatch {
    pub(crate) fn new(token: CancellationToken, shared: Weak<Shared>) -> Arc<Self> {
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
                shared.start_draining();
            }
        }
    }

    /// Drops the registration on the token (and with it the waker that points back here).
    pub(crate) fn cancel(&self) {
        let future = self.future.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(future);
    }
}

impl Wake for TokenWatch {
    fn wake(self: Arc<Self>) {
        self.poll_token();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll_token();
    }
}

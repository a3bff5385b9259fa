//! Abstracts over `loom` and `std`/`tokio` synchronisation types.
//!
//! Every atomic and every wake-up of the tracker goes through this module, so that
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom` explores all interleavings of
//! the real tracker code. This mirrors tokio-util's `src/loom.rs`.

/// The grace timer of `Drained`. loom does not model time: under loom the timer never fires,
/// and the models end the grace with `ConnectionTracker::close`, which wakes waiters itself.
#[cfg(not(loom))]
pub(crate) mod time {
    pub(crate) use tokio::time::{sleep_until, Sleep};
}

#[cfg(loom)]
pub(crate) mod time {
    /// A timer that never fires.
    #[derive(Debug)]
    pub(crate) struct Sleep(());

    pub(crate) fn sleep_until(_deadline: tokio::time::Instant) -> Sleep {
        Sleep(())
    }

    impl std::future::Future for Sleep {
        type Output = ();

        fn poll(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            std::task::Poll::Pending
        }
    }
}

#[cfg(not(loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use tokio::sync::futures::Notified;
    pub(crate) use tokio::sync::Notify;
}

#[cfg(loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use notify::{Notified, Notify};

    /// A loom model of the part of `tokio::sync::Notify` the tracker relies on:
    /// `notify_waiters` wakes every `Notified` created before the call, whether or not it
    /// was polled yet (tokio documents exactly this guarantee). The state lives in loom's
    /// `Mutex`, so loom explores every interleaving of registration and notification.
    mod notify {
        use loom::sync::Mutex;
        use std::future::Future;
        use std::pin::Pin;
        use std::task::{Context, Poll, Waker};

        #[derive(Debug, Default)]
        pub(crate) struct Notify {
            // (number of `notify_waiters` calls so far, wakers of pending `Notified`s)
            state: Mutex<(usize, Vec<Waker>)>,
        }

        impl Notify {
            pub(crate) fn new() -> Self {
                Self::default()
            }

            pub(crate) fn notified(&self) -> Notified<'_> {
                let generation = self.state.lock().unwrap().0;
                Notified {
                    notify: self,
                    generation,
                }
            }

            pub(crate) fn notify_waiters(&self) {
                let wakers = {
                    let mut state = self.state.lock().unwrap();
                    state.0 += 1;
                    std::mem::take(&mut state.1)
                };
                for waker in wakers {
                    waker.wake();
                }
            }
        }

        #[derive(Debug)]
        pub(crate) struct Notified<'a> {
            notify: &'a Notify,
            generation: usize,
        }

        impl Future for Notified<'_> {
            type Output = ();

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                let mut state = self.notify.state.lock().unwrap();
                if state.0 != self.generation {
                    return Poll::Ready(());
                }
                state.1.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

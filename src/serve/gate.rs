//! [`Gated`]: a future polled only after it woke its task. A connection's task waits for the
//! drain and the announce on the tracker's one `Notify`, shared by every connection, and tokio
//! polls every branch of a `select!` each time the task wakes: for every request, each
//! connection would poll its `Notified`s again, and a `Notified` that is already waiting takes
//! the `Notify`'s lock to check its waker. Behind a gate, a wake-up that is not its own costs
//! the task one atomic swap and a waker comparison.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use pin_project_lite::pin_project;

pin_project! {
    /// `inner`, polled only on the first poll, after it woke, or when the task's waker changed.
    pub(super) struct Gated<F> {
        #[pin]
        inner: F,
        gate: Arc<Gate>,
        // The gate as a waker: what `inner` registers.
        waker: Waker,
        // The task's waker the gate wakes; compared, not locked, on each poll.
        task: Option<Waker>,
    }
}

/// Set by `inner`'s wake-up; wakes the task.
pub(super) struct Gate {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl<F: Future> Gated<F> {
    pub(super) fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Self {
            inner,
            waker: Waker::from(Arc::clone(&gate)),
            gate,
            task: None,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let me = self.project();
        let same_task = me.task.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if same_task {
            // Acquire: pairs with the wake's release store; what woke `inner` is visible to
            // its poll below.
            if !me.gate.woken.swap(false, Ordering::Acquire) {
                return Poll::Pending;
            }
        } else {
            // First poll, or the task moved: the gate wakes this waker from now on. Locked only
            // here and on a wake-up, never on the per-request path.
            *lock(&me.gate.task) = Some(cx.waker().clone());
            *me.task = Some(cx.waker().clone());
            me.gate.woken.store(false, Ordering::Relaxed);
        }
        // A wake-up from here on sets `woken` again, and wakes the task.
        me.inner.poll(&mut Context::from_waker(me.waker))
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: pairs with the acquire swap in `poll`.
        self.woken.store(true, Ordering::Release);
        if let Some(task) = lock(&self.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Holds a waker: consistent whatever panicked.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `ready` is set and it was woken.
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Counted {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn inner_is_polled_only_after_its_own_wake_up() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(Mutex::new(None));
        let gated = Gated::new(Counted {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&inner_waker),
        });
        let mut gated = std::pin::pin!(gated);
        let woken = Arc::new(AtomicUsize::new(0));
        struct CountWakes(Arc<AtomicUsize>);
        impl Wake for CountWakes {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let task = Waker::from(Arc::new(CountWakes(Arc::clone(&woken))));
        let mut cx = Context::from_waker(&task);
        for _ in 0..100 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled on the first poll only"
        );
        ready.store(true, Ordering::Relaxed);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "its wake-up wakes the task"
        );
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}

//! [`Gate`]: the one waker behind which a connection's task waits for everything but its
//! connection (the drain, the announce, its timers). The task is woken for each request, and
//! would poll every one of those futures each time (a tracker's `Notified` that is already
//! waiting takes the `Notify`'s lock, shared by every connection, to check its waker; a timer
//! touches its entry). Behind the gate, a wake-up that is not theirs costs the task one relaxed
//! load and a waker comparison; they are polled only once one of them woke.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

/// The events' side of the gate: set by their wake-ups, it wakes the task.
pub(super) struct Gate {
    shared: Arc<Shared>,
    /// The gate as a waker: what the events behind it register.
    waker: Waker,
    /// The task's waker the gate wakes; compared, not locked, on each poll.
    task: Option<Waker>,
}

struct Shared {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Gate {
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Self {
            waker: Waker::from(Arc::clone(&shared)),
            shared,
            task: None,
        }
    }

    /// Whether the events behind the gate must be polled (with [`Gate::context`]): on the
    /// first poll, when the task's waker changed, or once one of them woke. Otherwise nothing
    /// behind the gate can be ready.
    pub(super) fn open(&mut self, cx: &Context<'_>) -> bool {
        let same_task = self
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()));
        if same_task {
            // A plain load first: the gate is shut on nearly every poll. Acquire on the swap:
            // pairs with the wake's release store, so what woke an event is visible to its poll.
            return self.shared.woken.load(Ordering::Relaxed)
                && self.shared.woken.swap(false, Ordering::Acquire);
        }
        // First poll, or the task moved: the gate wakes this waker from now on. Locked only
        // here and on a wake-up, never on the per-request path.
        *lock(&self.shared.task) = Some(cx.waker().clone());
        self.task = Some(cx.waker().clone());
        self.shared.woken.store(false, Ordering::Relaxed);
        true
    }

    /// The context to poll the events behind the gate with: their wake-ups open it.
    pub(super) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    /// Keeps the gate open for the next poll: one event was ready before the others behind it
    /// were polled.
    pub(super) fn reopen(&self) {
        self.shared.woken.store(true, Ordering::Relaxed);
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: pairs with the acquire swap in `open`.
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
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

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

    struct CountWakes(Arc<AtomicUsize>);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Polls `event` behind `gate` as the connection's task does.
    fn poll_behind(gate: &mut Gate, event: Pin<&mut Counted>, cx: &Context<'_>) -> Poll<()> {
        if !gate.open(cx) {
            return Poll::Pending;
        }
        event.poll(&mut gate.context())
    }

    #[test]
    fn events_are_polled_only_after_their_own_wake_up_which_wakes_the_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let event_waker = Arc::new(Mutex::new(None));
        let mut event = std::pin::pin!(Counted {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&event_waker),
        });
        let mut gate = Gate::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let task = Waker::from(Arc::new(CountWakes(Arc::clone(&woken))));
        let cx = Context::from_waker(&task);
        for _ in 0..100 {
            assert!(poll_behind(&mut gate, event.as_mut(), &cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled on the first poll only"
        );

        ready.store(true, Ordering::Relaxed);
        event_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "its wake-up wakes the task"
        );
        assert!(poll_behind(&mut gate, event.as_mut(), &cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_new_task_waker_opens_the_gate_and_is_the_one_woken() {
        let mut gate = Gate::new();
        let first = Arc::new(AtomicUsize::new(0));
        let second = Arc::new(AtomicUsize::new(0));
        let first_waker = Waker::from(Arc::new(CountWakes(Arc::clone(&first))));
        let second_waker = Waker::from(Arc::new(CountWakes(Arc::clone(&second))));
        assert!(gate.open(&Context::from_waker(&first_waker)));
        assert!(!gate.open(&Context::from_waker(&first_waker)));
        assert!(gate.open(&Context::from_waker(&second_waker)));
        gate.context().waker().wake_by_ref();
        assert_eq!(
            (
                first.load(Ordering::Relaxed),
                second.load(Ordering::Relaxed)
            ),
            (0, 1)
        );
        assert!(gate.open(&Context::from_waker(&second_waker)));
    }

    #[test]
    fn a_reopened_gate_is_open_once() {
        let mut gate = Gate::new();
        let task = Waker::from(Arc::new(CountWakes(Arc::new(AtomicUsize::new(0)))));
        let cx = Context::from_waker(&task);
        assert!(gate.open(&cx));
        gate.reopen();
        assert!(gate.open(&cx));
        assert!(!gate.open(&cx));
    }
}

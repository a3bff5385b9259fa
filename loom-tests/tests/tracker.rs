//! Model checks of the tracker's admission and wake-up protocol with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=5 cargo test --release --manifest-path
//! loom-tests/Cargo.toml` (CI does). Unbounded exploration of the three-thread models takes hours. Under `cfg(loom)` the
//! tracker's atomics and its `Notify` are loom's (see `src/loom.rs`), so loom explores every
//! interleaving of the real code; a lost wake-up shows up as a deadlock, a miscount as a
//! failed assertion.
#![cfg(loom)]

use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use tokio_util::sync::CancellationToken;
use tower_drain::{ConnectionTracker, DrainLayer};

fn tracker() -> (CancellationToken, ConnectionTracker) {
    let token = CancellationToken::new();
    let tracker = DrainLayer::new(token.clone()).tracker();
    (token, tracker)
}

#[test]
fn admission_racing_drain_start_is_never_admitted_after_drained() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let drained = Arc::new(AtomicBool::new(false));

        let admit = thread::spawn({
            let tracker = tracker.clone();
            let drained = drained.clone();
            move || match tracker.guard() {
                Some(guard) => {
                    assert!(!drained.load(SeqCst), "admitted after drained() resolved");
                    drop(guard);
                    true
                }
                None => false,
            }
        });

        token.cancel();
        block_on(tracker.drained());
        drained.store(true, SeqCst);

        let admitted = admit.join().unwrap();
        assert!(tracker.guard().is_none());
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.admitted_total(), u64::from(admitted));
        assert_eq!(tracker.rejected_total(), 2 - u64::from(admitted));
    });
}

#[test]
fn last_release_racing_a_registering_waiter_always_wakes_it() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let guard = tracker.guard().unwrap();
        token.cancel();

        let release = thread::spawn(move || drop(guard));
        // A lost wake-up would leave this blocked forever: loom reports it as a deadlock.
        block_on(tracker.drained());
        assert_eq!(tracker.in_flight(), 0);
        release.join().unwrap();
    });
}

#[test]
fn drain_start_racing_a_waiter_with_nothing_in_flight_wakes_it() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let waiter = thread::spawn({
            let tracker = tracker.clone();
            move || block_on(tracker.drained())
        });
        token.cancel();
        waiter.join().unwrap();
        assert!(tracker.is_drained());
    });
}

#[test]
fn drain_start_racing_the_last_release_wakes_the_waiter() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let guard = tracker.guard().unwrap();

        let cancel = thread::spawn(move || token.cancel());
        let release = thread::spawn(move || drop(guard));
        block_on(tracker.drained());
        cancel.join().unwrap();
        release.join().unwrap();
        assert_eq!(tracker.in_flight(), 0);
    });
}

#[test]
fn several_waiters_all_wake_on_the_last_release() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let guard = tracker.guard().unwrap();
        token.cancel();

        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let tracker = tracker.clone();
                thread::spawn(move || block_on(tracker.drained()))
            })
            .collect();
        drop(guard);
        for waiter in waiters {
            waiter.join().unwrap();
        }
    });
}

#[test]
fn draining_signal_wakes_when_the_token_is_cancelled() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let signal = tracker.signal();
        let waiter = thread::spawn(move || {
            block_on(signal.draining());
            assert!(signal.is_draining());
        });
        token.cancel();
        waiter.join().unwrap();
    });
}

#[test]
fn concurrent_admissions_and_releases_never_lose_count() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let tracker = tracker.clone();
                thread::spawn(move || {
                    if let Some(guard) = tracker.guard() {
                        drop(guard);
                    }
                })
            })
            .collect();
        token.cancel();
        block_on(tracker.drained());
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.admitted_total() + tracker.rejected_total(), 2);
    });
}

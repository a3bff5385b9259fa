//! Model checks of the tracker's admission and wake-up protocol with loom.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=5 cargo test --release --manifest-path
//! loom-tests/Cargo.toml` (CI does). Unbounded exploration of the three-thread models takes hours. Under `cfg(loom)` the
//! tracker's atomics and its `Notify` are loom's (see `src/loom.rs`), so loom explores every
//! interleaving of the real code; a lost wake-up shows up as a deadlock, a miscount as a
//! failed assertion.
#![cfg(loom)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use tokio_util::sync::CancellationToken;
use tower_drain::{ConnectionTracker, Drain, DrainLayer};
use tower_layer::Layer;
use tower_service::Service;

/// A tracker whose admission closes the moment the token is cancelled (no handoff grace):
/// the models of guards, waiters and wake-ups.
fn tracker() -> (CancellationToken, ConnectionTracker) {
    let token = CancellationToken::new();
    let tracker = DrainLayer::new(token.clone())
        .handoff_grace(Duration::ZERO)
        .tracker();
    (token, tracker)
}

/// A layer whose admission stays open after the cancel until `close()`: the models of the
/// protocol handoff. (loom does not model time: the grace never ends by itself here.)
fn handoff() -> (CancellationToken, DrainLayer) {
    let token = CancellationToken::new();
    let layer = DrainLayer::new(token.clone()).handoff_grace(Duration::from_secs(3600));
    (token, layer)
}

/// The inner service: answers at once.
#[derive(Clone)]
struct Hello;

impl Service<Request<String>> for Hello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<String>) -> Self::Future {
        ready(Ok(Response::new("hello".into())))
    }
}

/// Calls the layered service once; `Some(future)` if the request was admitted (its future
/// holds the request's count until dropped), `None` if the layer refused it.
fn call(service: &mut Drain<Hello>, tracker: &ConnectionTracker) -> Option<impl Drop> {
    let admitted = tracker.admitted_total();
    let future = service.call(Request::new(String::new()));
    (tracker.admitted_total() > admitted).then_some(DropFuture(Some(future)))
}

/// Holds a response future for its `Drop`.
struct DropFuture<F>(Option<F>);

impl<F> Drop for DropFuture<F> {
    fn drop(&mut self) {
        drop(self.0.take());
    }
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
fn draining_wakes_when_the_token_is_cancelled() {
    loom::model(|| {
        let (token, tracker) = tracker();
        let watcher = tracker.clone();
        let waiter = thread::spawn(move || {
            block_on(watcher.draining());
            assert!(watcher.is_draining());
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

#[test]
fn handoff_request_racing_close_is_never_admitted_after_drained() {
    loom::model(|| {
        let (token, layer) = handoff();
        let tracker = layer.tracker();
        let mut service = layer.layer(Hello);
        let drained = Arc::new(AtomicBool::new(false));
        token.cancel();

        let request = thread::spawn({
            let tracker = tracker.clone();
            let drained = drained.clone();
            move || match call(&mut service, &tracker) {
                Some(in_flight) => {
                    assert!(!drained.load(SeqCst), "admitted after drained() resolved");
                    drop(in_flight);
                    true
                }
                None => false,
            }
        });

        tracker.close();
        block_on(tracker.drained());
        drained.store(true, SeqCst);

        let admitted = request.join().unwrap();
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.admitted_total(), u64::from(admitted));
        assert_eq!(tracker.rejected_total(), 1 - u64::from(admitted));
    });
}

#[test]
fn close_racing_the_last_handoff_release_wakes_the_waiter() {
    loom::model(|| {
        let (token, layer) = handoff();
        let tracker = layer.tracker();
        let mut service = layer.layer(Hello);
        token.cancel();
        let in_flight = call(&mut service, &tracker).expect("admitted during the handoff");

        let release = thread::spawn(move || drop(in_flight));
        let close = thread::spawn({
            let tracker = tracker.clone();
            move || tracker.close()
        });
        // A lost wake-up (the release saw admission open, the close saw nothing in flight,
        // neither woke the waiter) would leave this blocked forever: loom reports a deadlock.
        block_on(tracker.drained());
        assert!(tracker.is_closed());
        release.join().unwrap();
        close.join().unwrap();
    });
}

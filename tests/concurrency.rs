//! Adversarial timing across threads: many clients (real TCP, HTTP/1.1 and HTTP/2) and many
//! tasks and threads hammer the layer while the token is cancelled and admission closes at
//! random moments.
//!
//! What must hold whatever the interleaving:
//! * every request ends as `200` (admitted) or `503` (refused), never as a connection error;
//! * nothing is refused before admission closes (requests during the handoff are served);
//! * `admitted_total() + rejected_total()` equals the number of requests sent;
//! * `in_flight()` returns to 0 and never underflows;
//! * no request is admitted after `drained()` resolved, and `drained()` always wakes.
//!
//! Admission closes either by `close()` (the server has gone) or when a short handoff grace
//! runs out; where a test is about something else (guards, the last release), its layer has a
//! zero grace, so that `drained()` waits for nothing but the work in flight and no test waits
//! out a grace in a loop.
//!
//! Bounded: a few thousand requests, seconds of run time. The random seed is printed so a
//! failure can be replayed with `TOWER_DRAIN_SEED=<seed>`.

mod support;

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use http_body_util::Full;
use support::*;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service, ServiceExt};
use tower_drain::{ConnectionTracker, DrainLayer};

/// A small xorshift generator: the tests need "random-ish" moments, not cryptography.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Self {
        let seed = match std::env::var("TOWER_DRAIN_SEED") {
            Ok(seed) => seed.parse().expect("TOWER_DRAIN_SEED must be a u64"),
            Err(_) => {
                let mut hasher = RandomState::new().build_hasher();
                hasher.write(name.as_bytes());
                hasher.finish() | 1
            }
        };
        eprintln!("{name}: seed {seed} (replay with TOWER_DRAIN_SEED={seed})");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A logical clock shared by handlers and the drained watcher: comparing stamps orders
/// "this request was admitted" against "drained() resolved".
#[derive(Clone, Default)]
struct Stamps {
    clock: Arc<AtomicU64>,
    /// The latest stamp taken by an admitted request.
    last_admission: Arc<AtomicU64>,
    /// The stamp taken when `drained()` resolved; `u64::MAX` until then.
    drained_at: Arc<AtomicU64>,
    handler_calls: Arc<AtomicUsize>,
}

impl Stamps {
    fn new() -> Self {
        let stamps = Self::default();
        stamps.drained_at.store(u64::MAX, Ordering::SeqCst);
        stamps
    }

    fn admitted(&self) {
        self.handler_calls.fetch_add(1, Ordering::SeqCst);
        let stamp = self.clock.fetch_add(1, Ordering::SeqCst);
        self.last_admission.fetch_max(stamp, Ordering::SeqCst);
        assert_eq!(
            self.drained_at.load(Ordering::SeqCst),
            u64::MAX,
            "a request reached the handler after drained() resolved"
        );
    }

    fn drained(&self) {
        let stamp = self.clock.fetch_add(1, Ordering::SeqCst);
        self.drained_at.store(stamp, Ordering::SeqCst);
    }

    fn check_order(&self) {
        let drained_at = self.drained_at.load(Ordering::SeqCst);
        assert_ne!(drained_at, u64::MAX, "drained() never resolved");
        let last = self.last_admission.load(Ordering::SeqCst);
        assert!(
            self.handler_calls.load(Ordering::SeqCst) == 0 || last < drained_at,
            "admission stamp {last} is after the drained stamp {drained_at}"
        );
    }
}

/// Spawns the task that stamps the moment `drained()` resolves.
fn watch_drained(tracker: &ConnectionTracker, stamps: &Stamps) -> tokio::task::JoinHandle<()> {
    let tracker = tracker.clone();
    let stamps = stamps.clone();
    tokio::spawn(async move {
        tracker.drained().await;
        stamps.drained();
    })
}

#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    unavailable: AtomicU64,
    sent: AtomicU64,
}

impl Outcomes {
    fn record(&self, status: StatusCode) {
        match status {
            StatusCode::OK => self.ok.fetch_add(1, Ordering::SeqCst),
            StatusCode::SERVICE_UNAVAILABLE => self.unavailable.fetch_add(1, Ordering::SeqCst),
            other => panic!("unexpected status {other}"),
        };
    }

    fn done(&self) -> u64 {
        self.ok.load(Ordering::SeqCst) + self.unavailable.load(Ordering::SeqCst)
    }
}

const CLIENTS: u64 = 16;
const REQUESTS_PER_CLIENT: u64 = 120;
const TOTAL: u64 = CLIENTS * REQUESTS_PER_CLIENT;

async fn many_clients_across_a_drain(proto: Proto, name: &str) {
    let mut rng = Rng::new(name);
    let token = CancellationToken::new();
    // Admission closes when the test calls `close()`, never by itself during the test.
    let layer = DrainLayer::new(token.clone()).handoff_grace(Duration::from_secs(3600));
    let tracker = layer.tracker();
    let stamps = Stamps::new();

    let handler_stamps = stamps.clone();
    let inner = tower::service_fn(move |_request: Request<hyper::body::Incoming>| {
        let stamps = handler_stamps.clone();
        async move {
            stamps.admitted();
            // Let other tasks run in the middle of the request.
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let server = serve_hyper(layer.layer(inner), CancellationToken::new()).await;
    let watcher = watch_drained(&tracker, &stamps);

    let outcomes = Arc::new(Outcomes::default());
    // Cancel once a random number of responses (between 10% and 50%) has come back, and close
    // admission (the server has gone) once a random number more (up to 40%) has.
    let cancel_after = TOTAL / 10 + rng.below(TOTAL * 4 / 10);
    let close_after = cancel_after + 1 + rng.below(TOTAL * 4 / 10);
    let canceller = tokio::spawn({
        let outcomes = outcomes.clone();
        let token = token.clone();
        let tracker = tracker.clone();
        async move {
            while outcomes.done() < cancel_after {
                tokio::task::yield_now().await;
            }
            token.cancel();
            while outcomes.done() < close_after {
                tokio::task::yield_now().await;
            }
            tracker.close();
        }
    });

    // HTTP/2 clients share 4 connections; HTTP/1.1 clients each have their own.
    let mut shared = Vec::new();
    if proto == Proto::Http2 {
        for _ in 0..4 {
            shared.push(Client::connect(server.addr, Proto::Http2).await);
        }
    }
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let outcomes = outcomes.clone();
        let addr = server.addr;
        let mut client = match proto {
            Proto::Http1 => Client::connect(addr, Proto::Http1).await,
            Proto::Http2 => shared[i as usize % shared.len()].h2_clone(),
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..REQUESTS_PER_CLIENT {
                if client.is_closed() {
                    client = Client::connect(addr, proto).await;
                }
                let request = client.request(http::Method::GET, "/");
                outcomes.sent.fetch_add(1, Ordering::SeqCst);
                let response = client
                    .try_send(request)
                    .await
                    .expect("a request failed with a connection error");
                let status = response.status();
                let close = header(&response, "connection").as_deref() == Some("close");
                read_body(response.into_body()).await;
                outcomes.record(status);
                if close {
                    // Asked to reconnect (HTTP/1.1 while draining): do so.
                    client = Client::connect(addr, proto).await;
                }
            }
        }));
    }
    for task in tasks {
        within("a client task", task).await.unwrap();
    }
    within("the canceller", canceller).await.unwrap();
    within("the drained watcher", watcher).await.unwrap();

    let ok = outcomes.ok.load(Ordering::SeqCst);
    let unavailable = outcomes.unavailable.load(Ordering::SeqCst);
    eprintln!(
        "{name}: {ok} × 200, {unavailable} × 503, cancel after {cancel_after}, \
         close after {close_after}"
    );
    assert_eq!(outcomes.sent.load(Ordering::SeqCst), TOTAL);
    assert_eq!(ok + unavailable, TOTAL);
    assert_eq!(tracker.admitted_total() + tracker.rejected_total(), TOTAL);
    assert_eq!(
        tracker.admitted_total(),
        ok,
        "every admitted request got its 200"
    );
    assert_eq!(tracker.rejected_total(), unavailable);
    assert_eq!(
        stamps.handler_calls.load(Ordering::SeqCst) as u64,
        ok,
        "the handler ran exactly for the admitted requests"
    );
    // The responses counted before the close were all decided before it.
    assert!(
        ok >= close_after,
        "a request was refused before admission closed (during the handoff)"
    );
    assert_eq!(tracker.in_flight(), 0);
    stamps.check_order();

    // After drained(), nothing more is admitted.
    let mut late = Client::connect(server.addr, proto).await;
    for _ in 0..5 {
        let response = late.get("/").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        read_body(response.into_body()).await;
        if late.is_closed() || proto == Proto::Http1 {
            late = Client::connect(server.addr, proto).await;
        }
    }
    assert_eq!(stamps.handler_calls.load(Ordering::SeqCst) as u64, ok);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http1_clients_racing_a_drain_get_only_200_or_503_and_counts_add_up() {
    many_clients_across_a_drain(
        Proto::Http1,
        "http1_clients_racing_a_drain_get_only_200_or_503_and_counts_add_up",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_clients_racing_a_drain_get_only_200_or_503_and_counts_add_up() {
    many_clients_across_a_drain(
        Proto::Http2,
        "http2_clients_racing_a_drain_get_only_200_or_503_and_counts_add_up",
    )
    .await;
}

/// How admission closes in a round of the service-call race below.
#[derive(Clone, Copy, Debug)]
enum Closing {
    /// `close()` once this many calls have completed (after the cancel).
    Close { after: u64 },
    /// By itself, this long after the cancel.
    Grace(Duration),
}

/// The service called directly from many tasks (no network, so many more requests), the
/// token cancelled from another task at a random moment, and admission closed at another
/// (by `close()` or by the end of a short handoff grace, in alternate rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_calls_racing_a_drain_are_never_admitted_after_drained() {
    let mut rng = Rng::new("service_calls_racing_a_drain_are_never_admitted_after_drained");
    const ROUNDS: u64 = 20;
    const TASKS: u64 = 8;
    const CALLS: u64 = 250;
    for round in 0..ROUNDS {
        let token = CancellationToken::new();
        let cancel_after = rng.below(TASKS * CALLS);
        let closing = if round % 2 == 0 {
            Closing::Close {
                after: cancel_after + rng.below(TASKS * CALLS - cancel_after + 1),
            }
        } else {
            Closing::Grace(Duration::from_micros(rng.below(2_000)))
        };
        let grace = match closing {
            Closing::Close { .. } => Duration::from_secs(3600),
            Closing::Grace(grace) => grace,
        };
        let layer = DrainLayer::new(token.clone()).handoff_grace(grace);
        let tracker = layer.tracker();
        let stamps = Stamps::new();
        let handler_stamps = stamps.clone();
        let service = layer.layer(tower::service_fn(move |_request: Request<Empty<Bytes>>| {
            let stamps = handler_stamps.clone();
            async move {
                stamps.admitted();
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }));
        let watcher = watch_drained(&tracker, &stamps);
        let progress = Arc::new(AtomicU64::new(0));
        let canceller = tokio::spawn({
            let progress = progress.clone();
            let tracker = tracker.clone();
            async move {
                while progress.load(Ordering::SeqCst) < cancel_after {
                    tokio::task::yield_now().await;
                }
                token.cancel();
                if let Closing::Close { after } = closing {
                    while progress.load(Ordering::SeqCst) < after {
                        tokio::task::yield_now().await;
                    }
                    tracker.close();
                }
            }
        });
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let mut service = service.clone();
            let progress = progress.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut refused) = (0u64, 0u64);
                for _ in 0..CALLS {
                    let response = service
                        .ready()
                        .await
                        .unwrap()
                        .call(Request::new(Empty::new()))
                        .await
                        .unwrap();
                    match response.status() {
                        StatusCode::OK => ok += 1,
                        StatusCode::SERVICE_UNAVAILABLE => refused += 1,
                        other => panic!("unexpected status {other}"),
                    }
                    // The body (and with it the guard) is dropped here, at a random point
                    // relative to the other tasks.
                    drop(response);
                    progress.fetch_add(1, Ordering::SeqCst);
                }
                (ok, refused)
            }));
        }
        let (mut ok, mut refused) = (0, 0);
        for task in tasks {
            let (o, r) = within("a calling task", task).await.unwrap();
            ok += o;
            refused += r;
        }
        within("the canceller", canceller).await.unwrap();
        within("drained() to wake", watcher).await.unwrap();
        assert_eq!(ok + refused, TASKS * CALLS, "{closing:?}");
        assert_eq!(tracker.admitted_total(), ok);
        assert_eq!(tracker.rejected_total(), refused);
        assert_eq!(tracker.in_flight(), 0);
        if let Closing::Close { after } = closing {
            // The calls counted before the close were all decided before it.
            assert!(
                ok >= after,
                "a call was refused before admission closed: {ok} served, close after {after}"
            );
        }
        stamps.check_order();
    }
}

/// `tracker.guard()` and drops on plain OS threads while another thread cancels and others
/// wait on `drained()`: the count never underflows (it would wrap to a huge value) nor
/// exceeds the number of holders, every attempt is counted once, and every waiter wakes.
#[test]
fn guards_racing_a_cancel_on_threads_never_underflow_and_drained_always_wakes() {
    const ROUNDS: usize = 100;
    const WORKERS: usize = 4;
    const WAITERS: usize = 2;
    let mut rng =
        Rng::new("guards_racing_a_cancel_on_threads_never_underflow_and_drained_always_wakes");
    for _ in 0..ROUNDS {
        let token = CancellationToken::new();
        // Guards are refused from the cancel whatever the grace; a zero grace makes drained()
        // wait for the guards alone (not for a grace after them), so it is their last release
        // that must wake the waiters.
        let tracker = DrainLayer::new(token.clone())
            .handoff_grace(Duration::ZERO)
            .tracker();
        let start = Arc::new(Barrier::new(WORKERS + WAITERS + 1));
        let spin_before_cancel = rng.below(2_000);

        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let tracker = tracker.clone();
                let start = start.clone();
                // Guards still held when the refusal comes are dropped after a random pause,
                // so the waiters are usually parked when the last one goes.
                let hold_after_refusal = Duration::from_micros(rng.below(300));
                thread::spawn(move || {
                    start.wait();
                    let mut attempts = 0u64;
                    let mut held = Vec::new();
                    loop {
                        attempts += 1;
                        match tracker.guard() {
                            Some(guard) => {
                                let n = tracker.in_flight();
                                assert!((1..=WORKERS * 3).contains(&n), "in_flight() = {n}");
                                held.push(guard);
                                if held.len() == 3 {
                                    held.clear();
                                }
                            }
                            None => break,
                        }
                    }
                    thread::sleep(hold_after_refusal);
                    drop(held);
                    attempts
                })
            })
            .collect();

        let drained = Arc::new(AtomicBool::new(false));
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let tracker = tracker.clone();
                let start = start.clone();
                let drained = drained.clone();
                thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    start.wait();
                    runtime.block_on(async {
                        within("drained() on a waiter thread", tracker.drained()).await;
                    });
                    assert_eq!(tracker.in_flight(), 0);
                    drained.store(true, Ordering::SeqCst);
                })
            })
            .collect();

        start.wait();
        for _ in 0..spin_before_cancel {
            std::hint::spin_loop();
        }
        token.cancel();

        let attempts: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert!(drained.load(Ordering::SeqCst));
        assert_eq!(tracker.in_flight(), 0);
        assert!(tracker.is_drained());
        assert_eq!(
            tracker.admitted_total() + tracker.rejected_total(),
            attempts
        );
        assert_eq!(
            tracker.rejected_total(),
            WORKERS as u64,
            "one refusal per worker"
        );
        assert!(tracker.guard().is_none(), "admitted after drained");
    }
}

/// A waiter that registers at a random moment around the last release still wakes: the
/// lost-wake-up race (check the count, then wait) exercised on real threads.
#[test]
fn last_release_racing_a_new_waiter_never_loses_the_wake_up() {
    const ROUNDS: usize = 300;
    let mut rng = Rng::new("last_release_racing_a_new_waiter_never_loses_the_wake_up");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for _ in 0..ROUNDS {
        let token = CancellationToken::new();
        // Admission closes at the cancel: only the last release can end the wait.
        let tracker = DrainLayer::new(token.clone())
            .handoff_grace(Duration::ZERO)
            .tracker();
        let guard = tracker.guard().unwrap();
        token.cancel();
        let spin = rng.below(500);
        let start = Arc::new(Barrier::new(2));
        let releaser = thread::spawn({
            let start = start.clone();
            move || {
                start.wait();
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                drop(guard);
            }
        });
        let waiter = runtime.spawn({
            let tracker = tracker.clone();
            async move { tracker.drained().await }
        });
        start.wait();
        runtime.block_on(async {
            within("drained() racing the last release", waiter)
                .await
                .unwrap();
        });
        releaser.join().unwrap();
        assert_eq!(tracker.in_flight(), 0);
    }
}

/// `close()` (the server has gone) racing the last release on another thread, with a waiter
/// on `drained()` registering around them: whichever comes second must wake it. The grace is
/// far too long to end the wait by itself, so a lost wake-up fails the test.
#[test]
fn close_racing_the_last_release_never_loses_the_wake_up() {
    const ROUNDS: usize = 300;
    let mut rng = Rng::new("close_racing_the_last_release_never_loses_the_wake_up");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for _ in 0..ROUNDS {
        let token = CancellationToken::new();
        let tracker = DrainLayer::new(token.clone())
            .handoff_grace(Duration::from_secs(3600))
            .tracker();
        let guard = tracker.guard().unwrap();
        token.cancel();
        let (spin_release, spin_close) = (rng.below(500), rng.below(500));
        let start = Arc::new(Barrier::new(2));
        let releaser = thread::spawn({
            let start = start.clone();
            move || {
                start.wait();
                for _ in 0..spin_release {
                    std::hint::spin_loop();
                }
                drop(guard);
            }
        });
        let waiter = runtime.spawn({
            let tracker = tracker.clone();
            async move { tracker.drained().await }
        });
        start.wait();
        for _ in 0..spin_close {
            std::hint::spin_loop();
        }
        tracker.close();
        runtime.block_on(async {
            within("drained() racing the close and the last release", waiter)
                .await
                .unwrap();
        });
        releaser.join().unwrap();
        assert_eq!(tracker.in_flight(), 0);
        assert!(tracker.is_drained());
    }
}

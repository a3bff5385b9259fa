//! What `DrainLayer` costs per request, next to the bare service and the nearest tower layers.
//!
//! ```sh
//! cargo bench --bench drain              # everything, ratios printed at the end
//! cargo bench --bench drain -- --quick   # faster, rougher
//! cargo bench --bench drain -- contended # one group
//! ```
//!
//! Groups (one run, so the ratios printed at the end compare like with like):
//!
//! * `pass_through`: one request at a time on one thread through a trivial
//!   `Service<hello::Req>` answering a small full body: `poll_ready`, `call`, the response
//!   future, the body polled to its end, the drops (what `ServiceExt::oneshot` plus reading
//!   the body does), polled by hand with a no-op waker so no runtime is measured.
//!   Variants: `bare`, `drain` (`DrainLayer`), `concurrency_limit` (tower's
//!   `ConcurrencyLimitLayer`, the nearest tower-native in-flight counter) and `in_flight`
//!   (tower-http's `InFlightRequestsLayer`).
//! * `contended`: the same four, with [`TASKS`] tasks on a [`WORKERS`]-thread tokio runtime
//!   hammering clones of one shared layered service. Time per request = wall time / requests.
//! * `rejection`: `drain` refusing requests (token cancelled, admission closed), next to `drain`
//!   admitting them.
//! * `drained_wake`: from the moment the last guard is dropped on one thread to the task
//!   waiting in `drained()` running on a runtime worker. `tokio_notify` (`Notify::notify_waiters`,
//!   which `drained()` uses) and `tokio_oneshot` are the same hand-off through tokio's own
//!   primitives: the reference for what waking a parked worker costs on this machine.

use std::future::{poll_fn, Future};
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, Criterion};
use http::Response;
use http_body::Body;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceExt};
use tower_drain::DrainLayer;
use tower_http::metrics::InFlightRequestsLayer;

#[path = "support/hello.rs"]
mod hello;
use hello::{noop_waker, Hello};

/// Tasks hammering one shared service in the `contended` group.
const TASKS: u64 = 4;
/// Worker threads of the runtime in the `contended` and `drained_wake` groups.
const WORKERS: usize = 2;

/// One request, by hand: ready, call, response future, body to its end, drops. Every
/// future here completes on its first poll.
#[inline]
fn serve_one<S, B>(service: &mut S, cx: &mut Context<'_>) -> usize
where
    S: Service<hello::Req, Response = Response<B>>,
    B: Body,
{
    let Poll::Ready(Ok(())) = service.poll_ready(cx) else {
        panic!("service not ready")
    };
    let mut future = pin!(service.call(black_box(hello::request())));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(cx) else {
        panic!("response not ready")
    };
    let mut body = pin!(response.into_body());
    let mut frames = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(cx) {
        black_box(frame);
        frames += 1;
    }
    frames
}

/// One request the async way, as a task on a runtime does it.
async fn serve_one_async<S, B>(service: &mut S)
where
    S: Service<hello::Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let service = service.ready().await.expect("service failed");
    let response = service
        .call(black_box(hello::request()))
        .await
        .expect("service failed");
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        black_box(frame.expect("body failed"));
    }
}

fn drain_layer() -> (CancellationToken, DrainLayer) {
    let token = CancellationToken::new();
    (token.clone(), DrainLayer::new(token))
}

fn pass_through(c: &mut Criterion) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let (_token, drain) = drain_layer();
    let mut group = c.benchmark_group("pass_through");

    let mut bare = Hello;
    group.bench_function("bare", |b| b.iter(|| serve_one(&mut bare, &mut cx)));
    let mut drained = drain.layer(Hello);
    group.bench_function("drain", |b| b.iter(|| serve_one(&mut drained, &mut cx)));
    let mut limited = ConcurrencyLimitLayer::new(1 << 20).layer(Hello);
    group.bench_function("concurrency_limit", |b| {
        b.iter(|| serve_one(&mut limited, &mut cx))
    });
    let mut counted = InFlightRequestsLayer::pair().0.layer(Hello);
    group.bench_function("in_flight", |b| b.iter(|| serve_one(&mut counted, &mut cx)));
    group.finish();
    assert_eq!(drain.tracker().in_flight(), 0);
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `iters` requests split over [`TASKS`] tasks, each with its own clone of `service`.
fn hammer<S, B>(runtime: &tokio::runtime::Runtime, service: &S, iters: u64) -> Duration
where
    S: Service<hello::Req, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: Body + Unpin + Send,
    B::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let mut service = service.clone();
                let n = iters / TASKS + u64::from(i < iters % TASKS);
                tokio::spawn(async move {
                    for _ in 0..n {
                        serve_one_async(&mut service).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("bench task panicked");
        }
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let runtime = multi_thread_runtime();
    let (_token, drain) = drain_layer();
    let mut group = c.benchmark_group("contended");

    let bare = Hello;
    group.bench_function("bare", |b| b.iter_custom(|n| hammer(&runtime, &bare, n)));
    let drained = drain.layer(Hello);
    group.bench_function("drain", |b| {
        b.iter_custom(|n| hammer(&runtime, &drained, n))
    });
    let limited = ConcurrencyLimitLayer::new(1 << 20).layer(Hello);
    group.bench_function("concurrency_limit", |b| {
        b.iter_custom(|n| hammer(&runtime, &limited, n))
    });
    let counted = InFlightRequestsLayer::pair().0.layer(Hello);
    group.bench_function("in_flight", |b| {
        b.iter_custom(|n| hammer(&runtime, &counted, n))
    });
    group.finish();
    assert_eq!(drain.tracker().in_flight(), 0);
}

fn rejection(c: &mut Criterion) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut group = c.benchmark_group("rejection");

    let (_token, serving) = drain_layer();
    let mut admitted = serving.layer(Hello);
    group.bench_function("drain_admitted", |b| {
        b.iter(|| serve_one(&mut admitted, &mut cx))
    });
    let (token, draining) = drain_layer();
    // Admission closed: the server has gone, every request is refused (during the handoff
    // grace that follows the cancel, requests are still admitted).
    token.cancel();
    draining.tracker().close();
    let mut refused = draining.layer(Hello);
    group.bench_function("drain_refused", |b| {
        b.iter(|| serve_one(&mut refused, &mut cx))
    });
    group.finish();
    assert_eq!(draining.tracker().admitted_total(), 0);
}

/// Polls `future` once, so that it registers its waker; returns whether it is still pending.
async fn poll_once<F: Future>(future: Pin<&mut F>) -> bool {
    let mut future = Some(future);
    poll_fn(|cx| Poll::Ready(future.take().unwrap().poll(cx).is_pending())).await
}

/// The time from `fire()` on this thread to `wait` running on a runtime worker, summed over
/// `iters` hand-offs. `wait` is polled once (so it is registered) before `fire` is called.
fn wake_latency<W, F>(
    runtime: &tokio::runtime::Runtime,
    iters: u64,
    mut setup: impl FnMut() -> (W, F),
) -> Duration
where
    W: Future<Output = ()> + Send + 'static,
    F: FnOnce(),
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (wait, fire) = setup();
        let (registered_tx, registered_rx) = std::sync::mpsc::channel();
        let waiter = runtime.spawn(async move {
            let mut wait = pin!(wait);
            assert!(poll_once(wait.as_mut()).await, "finished before fire()");
            registered_tx.send(()).expect("bench thread gone");
            wait.await;
            Instant::now()
        });
        registered_rx.recv().expect("waiter task failed");
        let fired = Instant::now();
        fire();
        let woke = runtime.block_on(waiter).expect("waiter task panicked");
        total += woke.duration_since(fired);
    }
    total
}

fn drained_wake(c: &mut Criterion) {
    let runtime = multi_thread_runtime();
    let mut group = c.benchmark_group("drained_wake");
    // The first benchmark on a fresh runtime measured up to 2x slow whatever it was (worker
    // threads not yet warm): the references go first, `drained` last.

    group.bench_function("tokio_notify", |b| {
        b.iter_custom(|iters| {
            wake_latency(&runtime, iters, || {
                let notify = Arc::new(tokio::sync::Notify::new());
                let waiter = Arc::clone(&notify);
                (async move { waiter.notified().await }, move || {
                    notify.notify_waiters()
                })
            })
        })
    });
    group.bench_function("tokio_oneshot", |b| {
        b.iter_custom(|iters| {
            wake_latency(&runtime, iters, || {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                (
                    async move { rx.await.expect("sender dropped") },
                    move || tx.send(()).expect("receiver gone"),
                )
            })
        })
    });
    group.bench_function("drained", |b| {
        b.iter_custom(|iters| {
            wake_latency(&runtime, iters, || {
                let (token, drain) = drain_layer();
                let tracker = drain.tracker();
                let guard = tracker.guard().expect("not draining yet");
                token.cancel();
                // Admission closed (the server has gone): only the guard holds `drained()`,
                // which would otherwise wait for the handoff grace too.
                tracker.close();
                (async move { tracker.drained().await }, move || drop(guard))
            })
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pass_through, contended, rejection, drained_wake
}

/// Where criterion keeps its results: the same order of preference criterion uses.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The median time (ns) of `group/bench` measured by this run, if it was.
fn median_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None; // left over from an earlier run
    }
    let json = std::fs::read_to_string(path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn print_ratios(since: SystemTime) {
    let mut lines = Vec::new();
    let mut ratio = |group: &str, bench: &str, base: &str| {
        if let (Some(t), Some(b)) = (
            median_ns(group, bench, since),
            median_ns(group, base, since),
        ) {
            lines.push(format!(
                "{:<40} {:>10.1} ns  {:>6.2}x {base}  ({:+.1} ns)",
                format!("{group}/{bench}"),
                t,
                t / b,
                t - b
            ));
        }
    };
    for group in ["pass_through", "contended"] {
        ratio(group, "bare", "bare");
        for bench in ["drain", "concurrency_limit", "in_flight"] {
            ratio(group, bench, "bare");
        }
    }
    ratio("rejection", "drain_refused", "drain_admitted");
    ratio("drained_wake", "drained", "tokio_oneshot");
    ratio("drained_wake", "tokio_notify", "tokio_oneshot");
    if !lines.is_empty() {
        println!("\nmedians of this run, and ratios:");
        for line in lines {
            println!("  {line}");
        }
    }
}

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios(started);
}

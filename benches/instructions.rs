//! Runs N requests through one path by hand, for counting instructions with callgrind
//! (`scripts/callgrind.sh`), which is repeatable where wall-clock benchmarks are noisy. Not a
//! timed benchmark: it prints no time, and under `cargo bench` (which passes `--bench`) it
//! only checks that every path serves its requests.
//!
//! ```sh
//! bash scripts/callgrind.sh     # builds this with `cargo bench --no-run --bench instructions`
//! ```
//!
//! Paths: `bare`, `drain`, `drain_refused`, `concurrency_limit`, `in_flight`. Each request is
//! `poll_ready`, `call`, the response future, the body polled to its end, the drops, on a
//! trivial `Service<hello::Req>` answering a small full body, polled with a no-op waker.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::process::ExitCode;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service};
use tower_drain::DrainLayer;
use tower_http::metrics::InFlightRequestsLayer;

#[path = "support/hello.rs"]
mod hello;
use hello::{noop_waker, Hello};

/// Serves `n` requests; returns the number of body frames seen (so nothing is optimised out).
#[inline(never)]
fn serve<S, B>(service: &mut S, n: u64) -> u64
where
    S: Service<hello::Req, Response = Response<B>>,
    B: Body,
{
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut frames = 0;
    for _ in 0..n {
        let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
            panic!("service not ready")
        };
        let mut future = pin!(service.call(black_box(hello::request())));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("response not ready")
        };
        let mut body = pin!(response.into_body());
        while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
            black_box(frame);
            frames += 1;
        }
    }
    frames
}

/// The paths, in the order `cargo bench` runs them.
const PATHS: [&str; 5] = [
    "bare",
    "drain",
    "drain_refused",
    "concurrency_limit",
    "in_flight",
];

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "--bench") {
        // `cargo bench [-- FILTER]`: a smoke run of every path; the counting is the script's.
        for path in PATHS {
            if run(path, 1_000).is_none() {
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!(
            "usage: instructions <bare|drain|drain_refused|concurrency_limit|in_flight> <requests>"
        );
        return ExitCode::from(2);
    };
    match run(&path, n) {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::from(2),
    }
}

/// Serves `n` requests on `path`; `None` for an unknown path.
fn run(path: &str, n: u64) -> Option<u64> {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone());
    let frames = match path {
        "bare" => serve(&mut Hello, n),
        "drain" => serve(&mut drain.layer(Hello), n),
        "drain_refused" => {
            // Admission closed: the server has gone, every request is refused.
            token.cancel();
            drain.tracker().close();
            serve(&mut drain.layer(Hello), n)
        }
        "concurrency_limit" => serve(&mut ConcurrencyLimitLayer::new(1 << 20).layer(Hello), n),
        "in_flight" => serve(&mut InFlightRequestsLayer::pair().0.layer(Hello), n),
        other => {
            eprintln!("unknown path {other:?}");
            return None;
        }
    };
    println!("{path}: {n} requests, {frames} body frames");
    Some(frames)
}

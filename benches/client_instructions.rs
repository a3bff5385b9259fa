//! Runs N unary calls with a small body through one path by hand, for counting instructions
//! with callgrind (`scripts/callgrind.sh`), with and without `TransparentRetryLayer`. Not a
//! timed benchmark: under `cargo bench` (which passes `--bench`) it only checks that every
//! path completes its calls.
//!
//! ```sh
//! BENCH=client_instructions bash scripts/callgrind.sh retry tonic tonic_retry
//! ```
//!
//! Paths:
//! - `bare`: a trivial inner service taking tonic's body, reading the request body to its end
//!   (as hyper would) and answering at once, polled with a no-op waker;
//! - `retry`: the same behind the layer: what the layer itself adds to a call;
//! - `tonic`, `tonic_retry`: tonic-health's `HealthClient` calling a tonic server in memory
//!   (`tokio::io::duplex`, one current-thread runtime), without and with the layer: the
//!   layer's cost next to a whole call's.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::process::ExitCode;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::{Layer, Service, ServiceBuilder};
use tower_drain::client::TransparentRetryLayer;

use futures_util::task::noop_waker;

/// A HealthCheckRequest for service "bench", in a gRPC frame: a small unary body.
const MESSAGE: &[u8] = b"\0\0\0\0\x07\x0a\x05bench";

/// Takes tonic's request body, reads it to its end, answers a small full body.
#[derive(Clone, Copy, Debug)]
struct Unary;

impl Service<Request<tonic::body::Body>> for Unary {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut body = request.into_body();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            black_box(frame.ok());
        }
        ready(Ok(Response::new(Full::new(Bytes::from_static(
            b"\0\0\0\0\x02\x08\x01",
        )))))
    }
}

/// Makes `n` calls by hand; returns how many answered.
#[inline(never)]
fn call_by_hand<S>(service: &mut S, n: u64) -> u64
where
    S: Service<Request<tonic::body::Body>, Response = Response<Full<Bytes>>>,
{
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut answered = 0;
    for _ in 0..n {
        let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
            panic!("service not ready")
        };
        let request = Request::post("http://bench/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(Full::new(Bytes::from_static(
                MESSAGE,
            ))))
            .expect("a valid request");
        let mut future = pin!(service.call(black_box(request)));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("response not ready")
        };
        black_box(response);
        answered += 1;
    }
    answered
}

/// Makes `n` calls with tonic over an in-memory connection; returns how many succeeded.
fn call_tonic(n: u64, retry: bool) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (_reporter, health) = tonic_health::server::health_reporter();
        let incoming = tokio_stream_once(server_io);
        tokio::spawn(
            Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming),
        );
        let mut client_io = Some(client_io);
        let channel = Endpoint::from_static("http://bench")
            .connect_with_connector(tower::service_fn(move |_| {
                let io = client_io.take().map(TokioIo::new);
                async move { io.ok_or_else(|| std::io::Error::other("one connection only")) }
            }))
            .await
            .expect("connected in memory");
        let mut ok = 0;
        if retry {
            let layer = TransparentRetryLayer::default();
            let mut client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));
            for _ in 0..n {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                ok += u64::from(client.check(request).await.is_ok());
            }
        } else {
            let mut client = HealthClient::new(channel);
            for _ in 0..n {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                ok += u64::from(client.check(request).await.is_ok());
            }
        }
        ok
    })
}

/// A stream yielding one connection, then pending forever (the server keeps serving it).
fn tokio_stream_once(
    io: tokio::io::DuplexStream,
) -> impl futures_util::Stream<Item = Result<tokio::io::DuplexStream, std::io::Error>> {
    use futures_util::StreamExt;
    futures_util::stream::once(async move { Ok(io) }).chain(futures_util::stream::pending())
}

const PATHS: [&str; 4] = ["bare", "retry", "tonic", "tonic_retry"];

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "--bench") {
        for path in PATHS {
            if run(path, 200) != Some(200) {
                eprintln!("{path}: not every call succeeded");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: client_instructions <bare|retry|tonic|tonic_retry> <calls>");
        return ExitCode::from(2);
    };
    match run(&path, n) {
        Some(ok) if ok == n => ExitCode::SUCCESS,
        _ => ExitCode::from(2),
    }
}

/// Makes `n` calls on `path`; `None` for an unknown path.
fn run(path: &str, n: u64) -> Option<u64> {
    let ok = match path {
        "bare" => call_by_hand(&mut Unary, n),
        "retry" => call_by_hand(&mut TransparentRetryLayer::default().layer(Unary), n),
        "tonic" => call_tonic(n, false),
        "tonic_retry" => call_tonic(n, true),
        other => {
            eprintln!("unknown path {other:?}");
            return None;
        }
    };
    println!("{path}: {ok} of {n} calls answered");
    Some(ok)
}

//! The drain lasts to the last byte: with the server given to `Shutdown::spawn_server`, the
//! drain phase ends only once the server has written every response and closed its
//! connections, and a server still writing at the drain deadline is cut and reported.
//!
//! The response is one in-memory body (a large JSON document, say): its single frame is
//! handed to the server at once, so the request stops counting long before its bytes are on
//! the wire. Only the server knows when they are.

mod support;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use support::{within, Client, Proto};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_drain::shutdown::{Phase, ServerOutcome, Shutdown, ShutdownReport};
use tower_drain::DrainLayer;

/// Larger than what loopback's socket buffers and HTTP/2's flow-control windows hold, so the
/// server cannot finish writing while the client does not read.
const BODY: usize = 24 * 1024 * 1024;
/// What may still be unread by the client when the server is done: the bytes in the kernel's
/// socket buffers (a few MiB on loopback) or, on HTTP/2, in the client's receive window
/// (hyper: 2 MiB). The server's job ends when it has handed every byte to the kernel.
const IN_BUFFERS: usize = 8 * 1024 * 1024;

struct Running {
    addr: std::net::SocketAddr,
    handle: tower_drain::shutdown::ShutdownHandle,
    run: tokio::task::JoinHandle<ShutdownReport>,
}

/// An axum app serving `GET /bytes` (one `BODY`-byte body) on the `Shutdown` sequence, with
/// the server given to `spawn_server`.
async fn start(drain_timeout: Duration) -> Running {
    let drain = DrainLayer::new(CancellationToken::new());
    let builder = Shutdown::builder(&drain)
        .drain_timeout(drain_timeout)
        .tasks_timeout(Duration::from_secs(1))
        .overall_timeout(drain_timeout + Duration::from_secs(5));
    let mut shutdown = builder.build().unwrap();
    let body = Bytes::from(vec![b'x'; BODY]);
    let app = Router::new()
        .route("/bytes", get(move || async move { body.clone() }))
        .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    shutdown.spawn_server(
        "http",
        axum::serve(listener, app).with_graceful_shutdown(drain.token().clone().cancelled_owned()),
    );
    let handle = shutdown.handle();
    let run = tokio::spawn(shutdown.run());
    Running { addr, handle, run }
}

async fn slow_reader_gets_the_whole_body_and_the_report_waits_for_it(proto: Proto) {
    let server = start(Duration::from_secs(10)).await;
    let mut client = Client::connect(server.addr, proto).await;
    let response = client.get("/bytes").await;
    assert_eq!(response.status(), 200);
    // The body's one frame is in the server's hands: shut down now, while it is unsent.
    server.handle.trigger();
    let mut body = response.into_body();
    let mut received = 0;
    let mut unread_at_report = None;
    while let Some(frame) = within("a body frame", body.frame()).await {
        let frame = frame.expect("the body was cut");
        if let Some(data) = frame.data_ref() {
            received += data.len();
            // About 48 MiB/s: half a second for the whole body.
            tokio::time::sleep(Duration::from_micros(data.len() as u64 / 48)).await;
        }
        if server.run.is_finished() && unread_at_report.is_none() {
            unread_at_report = Some(BODY - received);
        }
    }
    assert_eq!(received, BODY);
    let unread_at_report = unread_at_report.unwrap_or(0);
    assert!(
        unread_at_report <= IN_BUFFERS,
        "the report came with {unread_at_report} bytes still to send"
    );
    let report = within("the report", server.run).await.unwrap();
    assert_eq!(report.servers[0].outcome, ServerOutcome::Closed, "{report}");
    assert_eq!(report.exit_code(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_slow_reader_gets_the_whole_body_and_the_report_waits_for_it() {
    slow_reader_gets_the_whole_body_and_the_report_waits_for_it(Proto::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_slow_reader_gets_the_whole_body_and_the_report_waits_for_it() {
    slow_reader_gets_the_whole_body_and_the_report_waits_for_it(Proto::Http2).await;
}

async fn response_unwritten_at_the_drain_deadline_is_reported_and_exits_one(proto: Proto) {
    let deadline = Duration::from_millis(300);
    let server = start(deadline).await;
    let mut client = Client::connect(server.addr, proto).await;
    let response = client.get("/bytes").await;
    assert_eq!(response.status(), 200);
    let triggered = Instant::now();
    server.handle.trigger();
    // The client never reads the body.
    let report = within("the report", server.run).await.unwrap();
    let took = triggered.elapsed();
    assert_eq!(report.servers[0].outcome, ServerOutcome::Cut, "{report}");
    assert_eq!(report.exit_code(), ShutdownReport::EXIT_INCOMPLETE);
    assert!(
        report.to_string().contains("server http: cut"),
        "the report names the server still writing: {report}"
    );
    let drain = report.phase(Phase::Drain).unwrap();
    assert!(
        drain >= deadline && drain < deadline + Duration::from_millis(100),
        "the drain phase took {drain:?} for a {deadline:?} deadline"
    );
    assert!(took < deadline + Duration::from_millis(200), "{took:?}");
    drop(response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_response_unwritten_at_the_drain_deadline_is_reported_and_exits_one() {
    response_unwritten_at_the_drain_deadline_is_reported_and_exits_one(Proto::Http1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_response_unwritten_at_the_drain_deadline_is_reported_and_exits_one() {
    response_unwritten_at_the_drain_deadline_is_reported_and_exits_one(Proto::Http2).await;
}

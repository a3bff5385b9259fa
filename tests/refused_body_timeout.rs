//! Reading a refused upload is bounded in time: a client that stalls in the middle of its
//! body gets the `503` when the time is up, and cannot hold the server's graceful shutdown
//! open.

mod support;

use std::time::Duration;

use axum::routing::post;
use axum::Router;
use support::{serve_axum, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_drain::DrainLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_refused_upload_is_answered_when_the_time_is_up_and_the_server_shuts_down() {
    let timeout = Duration::from_millis(300);
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone()).refused_body_timeout(timeout);
    let tracker = drain.tracker();
    let app = Router::new()
        .route("/upload", post(|| async { "stored" }))
        .layer(drain);
    let server = serve_axum(app, CancellationToken::new()).await;

    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Admission has closed (the drain began and the grace is over, say).
    token.cancel();
    tracker.close();
    let sent = Instant::now();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    // ... and never sends the rest.
    let mut head = vec![0; 1024];
    let n = within("the refusal", stream.read(&mut head)).await.unwrap();
    let answered_after = sent.elapsed();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        answered_after >= timeout && answered_after < timeout + Duration::from_millis(500),
        "answered after {answered_after:?} for a {timeout:?} limit"
    );

    // The server's graceful shutdown is not held open by the stalled upload.
    let stopped = Instant::now();
    server.stop().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(tracker.in_flight(), 0, "a refused request is never counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upload_that_arrives_in_time_is_read_and_answered_at_once() {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone()).refused_body_timeout(Duration::from_secs(5));
    let tracker = drain.tracker();
    let app = Router::new()
        .route("/upload", post(|| async { "stored" }))
        .layer(drain);
    let server = serve_axum(app, CancellationToken::new()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    token.cancel();
    tracker.close();
    let sent = Instant::now();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut head = vec![0; 1024];
    let n = within("the refusal", stream.read(&mut head)).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 503"));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "the limit is a bound, not a wait"
    );
    server.stop().await;
}

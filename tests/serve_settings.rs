//! `serve`'s settings, each seen taking effect over a real socket: the HTTP/2 `SETTINGS` and
//! window updates a client receives, requests refused for their headers, rapid resets cut
//! short, idle connections told to leave, the connection limit pausing the accept loop, and
//! the hook on each accepted connection.

mod raw;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use raw::{http1_status, Frame, GOAWAY, H2, RST_STREAM, SETTINGS, WINDOW_UPDATE};
use support::{read_body, within, Client, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_drain::serve::Listener;
use tower_drain::{DrainLayer, Serve};

/// The idle timeout of the idle tests: what they wait for, not a margin.
const IDLE: Duration = Duration::from_millis(200);

struct Running {
    addr: SocketAddr,
    /// `GET /held` answers once this is cancelled.
    release: CancellationToken,
    /// Counted by the `tap_io` of the tests that set one; `GET /tapped` answers it.
    tapped: Arc<AtomicUsize>,
}

async fn start<L: Listener>(
    configure: impl FnOnce(Serve<TcpListener, Router>, Arc<AtomicUsize>) -> Serve<L, Router>,
) -> Running {
    let release = CancellationToken::new();
    let tapped = Arc::new(AtomicUsize::new(0));
    let drain = DrainLayer::default();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/held",
            get({
                let release = release.clone();
                move || async move {
                    release.cancelled().await;
                    "held"
                }
            }),
        )
        .route(
            "/tapped",
            get({
                let tapped = Arc::clone(&tapped);
                move || async move { tapped.load(Ordering::SeqCst).to_string() }
            }),
        )
        .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = configure(
        tower_drain::serve(listener, &drain, app),
        Arc::clone(&tapped),
    );
    tokio::spawn(std::future::IntoFuture::into_future(serve));
    Running {
        addr,
        release,
        tapped,
    }
}

/// What a client sees on connecting: the server's `SETTINGS` values, and the frames up to the
/// answer of a second `PING` (the first is read with the handshake).
async fn handshake(
    configure: impl FnOnce(Serve<TcpListener, Router>) -> Serve<TcpListener, Router>,
) -> (std::collections::HashMap<u16, u32>, H2, Vec<Frame>) {
    let server = start(|serve, _| configure(serve)).await;
    let mut h2 = H2::connect(server.addr).await;
    let mut frames = h2.ping().await;
    frames.extend(h2.ping().await);
    let settings = frames
        .iter()
        .find(|f| f.kind == SETTINGS && f.flags & raw::ACK == 0)
        .expect("the server's SETTINGS")
        .settings();
    (settings, h2, frames)
}

fn is_connection_window_update(frame: &Frame) -> bool {
    frame.kind == WINDOW_UPDATE && frame.stream == 0
}

/// The increment of the server's first connection-level `WINDOW_UPDATE`, waited for.
async fn connection_window_update(mut h2: H2, frames: Vec<Frame>) -> u32 {
    match frames.into_iter().find(is_connection_window_update) {
        Some(update) => update.increment(),
        None => h2
            .until(is_connection_window_update)
            .await
            .pop()
            .unwrap()
            .increment(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_stream_window_size_is_announced_in_the_settings_frame() {
    let (settings, ..) = handshake(|serve| serve.initial_stream_window_size(3 << 20)).await;
    assert_eq!(settings[&raw::SETTINGS_INITIAL_WINDOW_SIZE], 3 << 20);
    let (settings, ..) = handshake(|serve| serve).await;
    assert_eq!(
        settings[&raw::SETTINGS_INITIAL_WINDOW_SIZE],
        1 << 20,
        "default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_connection_window_size_is_opened_by_a_connection_window_update() {
    let (_, h2, frames) = handshake(|serve| serve.initial_connection_window_size(5 << 20)).await;
    assert_eq!(
        connection_window_update(h2, frames).await,
        (5 << 20) - 65_535
    );
    let (_, h2, frames) = handshake(|serve| serve).await;
    assert_eq!(
        connection_window_update(h2, frames).await,
        (1 << 20) - 65_535,
        "default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_window_starts_both_windows_at_the_protocols_65535_bytes() {
    let (settings, mut h2, mut frames) = handshake(|serve| {
        serve
            .initial_stream_window_size(3 << 20)
            .initial_connection_window_size(5 << 20)
            .http2_adaptive_window(true)
    })
    .await;
    // The stream window is the protocol's default: announced as such, or not at all.
    let stream_window = settings
        .get(&raw::SETTINGS_INITIAL_WINDOW_SIZE)
        .copied()
        .unwrap_or(65_535);
    assert_eq!(stream_window, 65_535);
    // A whole request and two more round trips: the window update of a window opened at the
    // handshake would have come by then.
    frames.extend(h2.get(1, "/").await);
    frames.extend(h2.ping().await);
    frames.extend(h2.ping().await);
    assert!(
        !frames.iter().any(is_connection_window_update),
        "the connection window is not opened beyond 65 535: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_frame_size_is_announced_in_the_settings_frame() {
    let (settings, ..) = handshake(|serve| serve.max_frame_size(64 * 1024)).await;
    assert_eq!(settings[&raw::SETTINGS_MAX_FRAME_SIZE], 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_request_over_the_max_header_list_size_is_answered_431() {
    let request = |client: &Client| {
        let mut request = client.request(http::Method::GET, "/");
        let value = http::HeaderValue::from_str(&"x".repeat(6 * 1024)).unwrap();
        request.headers_mut().insert("x-large", value);
        request
    };
    let server = start(|serve, _| serve.http2_max_header_list_size(4 * 1024)).await;
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    let refused = client.send(request(&client)).await;
    assert_eq!(refused.status(), 431);
    let (settings, ..) = handshake(|serve| serve.http2_max_header_list_size(4 * 1024)).await;
    assert_eq!(settings[&raw::SETTINGS_MAX_HEADER_LIST_SIZE], 4 * 1024);

    let server = start(|serve, _| serve).await;
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    let served = client.send(request(&client)).await;
    assert_eq!(served.status(), 200, "under the default of 16 KiB");
}

/// Opens `count` streams and resets each at once, in one write: none can have been accepted by
/// the server's service yet. Then pings: the frames the server sent up to the answer.
async fn rapid_reset(server: &Running, count: u32) -> Vec<Frame> {
    let mut h2 = H2::connect(server.addr).await;
    let mut burst = Vec::new();
    for i in 0..count {
        let stream = 1 + 2 * i;
        burst.extend(raw::encode(
            raw::HEADERS,
            raw::END_HEADERS | raw::END_STREAM,
            stream,
            &raw::get("/"),
        ));
        burst.extend(raw::encode(RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
    }
    h2.stream.write_all(&burst).await.unwrap();
    let mut frames = Vec::new();
    h2.send(raw::PING, 0, 0, b"rapidrst").await;
    while let Some(frame) = h2.next().await {
        let done = frame.kind == GOAWAY || (frame.kind == raw::PING && frame.flags & raw::ACK != 0);
        frames.push(frame);
        if done {
            break;
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_before_being_accepted_past_the_limit_close_the_connection() {
    let limited = start(|serve, _| serve.http2_max_pending_accept_reset_streams(2)).await;
    let frames = rapid_reset(&limited, 10).await;
    let goaway = frames
        .iter()
        .find(|f| f.kind == GOAWAY)
        .expect("GOAWAY past 2 pending resets");
    assert_eq!(goaway.error_code(), 0xb, "ENHANCE_YOUR_CALM");

    let default = start(|serve, _| serve).await;
    let frames = rapid_reset(&default, 10).await;
    assert!(
        frames.iter().all(|f| f.kind != GOAWAY),
        "10 resets are within the default of 20: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_with_more_headers_than_the_max_is_answered_431() {
    let request = "GET / HTTP/1.1\r\nhost: x\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\n\r\n";
    let limited = start(|serve, _| serve.http1_max_headers(4)).await;
    assert_eq!(http1_status(limited.addr, request).await, 431);
    let default = start(|serve, _| serve).await;
    assert_eq!(
        http1_status(default.addr, request).await,
        200,
        "default 100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_head_larger_than_the_buffer_is_answered_431() {
    let request = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-large: {}\r\n\r\n",
        "x".repeat(16 * 1024)
    );
    let limited = start(|serve, _| serve.http1_max_buf_size(8 * 1024)).await;
    assert_eq!(http1_status(limited.addr, &request).await, 431);
    let default = start(|serve, _| serve).await;
    assert_eq!(
        http1_status(default.addr, &request).await,
        200,
        "default ~400 KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_is_told_to_leave_after_the_idle_timeout() {
    let server = start(|serve, _| serve.idle_timeout(IDLE)).await;
    let mut h2 = H2::connect(server.addr).await;
    let sent = Instant::now();
    h2.get(1, "/").await;
    let frames = h2.until(|f| f.kind == GOAWAY).await;
    assert!(
        sent.elapsed() >= IDLE,
        "idle from the end of its only stream"
    );
    assert_eq!(frames.last().unwrap().error_code(), 0, "a graceful GOAWAY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_with_a_stream_in_flight_is_not_idle() {
    let server = start(|serve, _| serve.idle_timeout(IDLE)).await;
    let mut h2 = H2::connect(server.addr).await;
    h2.ping().await;
    h2.send(
        raw::HEADERS,
        raw::END_HEADERS | raw::END_STREAM,
        1,
        &raw::get("/held"),
    )
    .await;
    // Three idle timeouts with the stream in flight: no GOAWAY (the handshake's window update
    // may still come).
    let quiet = Instant::now() + IDLE * 3;
    while let Ok(frame) = tokio::time::timeout_at(quiet, h2.next()).await {
        let frame = frame.expect("the connection closed");
        assert_ne!(frame.kind, GOAWAY, "told to leave while serving a stream");
    }
    let released = Instant::now();
    server.release.cancel();
    let frames = h2.until(|f| f.kind == GOAWAY).await;
    assert!(
        frames.iter().any(|f| f.stream == 1 && f.kind == raw::DATA),
        "the stream is answered before the GOAWAY"
    );
    assert!(
        released.elapsed() >= IDLE,
        "idle from the end of the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_connection_is_closed_after_the_idle_timeout() {
    let server = start(|serve, _| serve.idle_timeout(IDLE)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let sent = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut buf = [0; 1024];
    while !read.ends_with(b"hello") {
        let n = within("the response", stream.read(&mut buf)).await.unwrap();
        assert_ne!(n, 0, "closed before the response: {read:?}");
        read.extend_from_slice(&buf[..n]);
    }
    let n = within("the close", stream.read(&mut buf)).await.unwrap();
    assert_eq!(n, 0, "closed, not answered again");
    assert!(sent.elapsed() >= IDLE, "idle from its response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_in_flight_longer_than_the_idle_timeout_is_answered() {
    let server = start(|serve, _| serve.idle_timeout(IDLE)).await;
    let mut client = Client::connect(server.addr, Proto::Http1).await;
    let held = tokio::spawn(async move {
        let response = client.get("/held").await;
        (response.status(), read_body(response.into_body()).await)
    });
    tokio::time::sleep(IDLE * 3).await;
    server.release.cancel();
    let (status, body) = within("the held response", held).await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"held"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_pauses_accepting_until_a_connection_closes_and_resets_none() {
    let server = start(|serve, tapped| {
        serve.max_connections(2).tap_io(move |_: &mut TcpStream| {
            tapped.fetch_add(1, Ordering::SeqCst);
        })
    })
    .await;
    let mut first = Client::connect(server.addr, Proto::Http1).await;
    let mut second = Client::connect(server.addr, Proto::Http1).await;
    for client in [&mut first, &mut second] {
        assert_eq!(client.get("/").await.status(), 200);
    }
    // The third completes its handshake in the kernel's backlog; its request waits there.
    let third = tokio::spawn(http1_status(
        server.addr,
        "GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "answered beyond the limit");
    assert_eq!(
        server.tapped.load(Ordering::SeqCst),
        2,
        "accepted beyond the limit"
    );
    first.disconnect();
    let status = within("the third connection, accepted", third)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(server.tapped.load(Ordering::SeqCst), 3);
    assert_eq!(
        second.get("/").await.status(),
        200,
        "the second still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_io_sees_each_connection_before_it_is_served() {
    let server = start(|serve, tapped| {
        serve.tap_io(move |stream: &mut TcpStream| {
            // The stream is the accepted socket: its peer is the client.
            assert!(stream.peer_addr().is_ok());
            tapped.fetch_add(1, Ordering::SeqCst);
        })
    })
    .await;
    for expected in ["1", "2"] {
        let mut client = Client::connect(server.addr, Proto::Http1).await;
        let body = read_body(client.get("/tapped").await.into_body()).await;
        assert_eq!(&body[..], expected.as_bytes());
    }
}

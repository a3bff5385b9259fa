//! The drain lasts to the last byte: with the server given to `Shutdown::spawn_server`, the
//! drain phase ends only once the server has written every response and closed its
//! connections, and a server still writing at the drain deadline is cut and reported.
//!
//! The response is one in-memory body (a large JSON document, say): its single frame is
//! handed to the server at once, so the request stops counting long before its bytes are on
//! the wire. Only the server knows when they are.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use support::{within, Client, ClientOptions, Proto};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_drain::shutdown::{Phase, ServerOutcome, Shutdown, ShutdownReport};
use tower_drain::DrainLayer;

/// Far larger than what the connection holds between the server and the reader (the sizes
/// below, set by the test), so the server cannot finish writing while the client does not read.
const BODY: usize = 24 * 1024 * 1024;

// What may be between the server and the body's reader is set here, not left to the machine.
// Left to the kernel, loopback's buffers autotune up to `net.ipv4.tcp_rmem`/`tcp_wmem`'s
// maximum (32 MiB on some distributions) and can hold most of the body.
/// `SO_SNDBUF` on the server's sockets (set on the listener, inherited by every accepted
/// socket; setting it turns the kernel's autotuning off).
const SEND_BUFFER: u32 = 128 * 1024;
/// `SO_RCVBUF` on the client's socket (likewise). Without privileges it cannot exceed
/// `net.core.rmem_max` (208 KiB by default).
const RECV_BUFFER: u32 = 128 * 1024;
/// HTTP/1.1: the most the client's hyper connection reads from the socket ahead of the body.
const HTTP1_READ_AHEAD: usize = 64 * 1024;
/// What a socket may queue beyond its send buffer: one segment (loopback: 64 KiB, its
/// `gso_max_size`).
const SEGMENT: usize = 64 * 1024;
/// HTTP/2: the stream's flow-control window (hyper's client default is 2 MiB). Smaller than
/// what the client's socket holds, so the server's socket never has unsent bytes: axum::serve
/// (hyper) closes an HTTP/2 connection as soon as its last frame is written, and a
/// `WINDOW_UPDATE` the client sends as it reads on would then meet a closed socket, which
/// answers with a reset and drops what it had not sent yet (seen once in 100 runs under load
/// with the 2 MiB window and this receive buffer). `tower_drain::serve` lingers for this.
const HTTP2_STREAM_WINDOW: u32 = 64 * 1024;

/// About 48 MiB/s: half a second for the whole body, slower than the server writes.
const READ_RATE: f64 = 48.0 * 1024.0 * 1024.0;

struct Running {
    addr: std::net::SocketAddr,
    handle: tower_drain::shutdown::ShutdownHandle,
    run: tokio::task::JoinHandle<ShutdownReport>,
    /// The `SO_SNDBUF` of the last socket the server accepted, as `getsockopt` reports it.
    send_buffer: Arc<AtomicUsize>,
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
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SEND_BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    // Linux gives accepted sockets the listener's buffer sizes; read back what they got.
    let send_buffer = Arc::new(AtomicUsize::new(0));
    let listener = listener.tap_io({
        let send_buffer = Arc::clone(&send_buffer);
        move |stream| {
            // As `tower_drain::serve` does: with small windows, Nagle's algorithm and the
            // client's delayed acknowledgements would hold each window's last frame 40 ms.
            stream.set_nodelay(true).unwrap();
            let size = socket2::SockRef::from(&*stream).send_buffer_size().unwrap();
            send_buffer.store(size, Ordering::Relaxed);
        }
    });
    shutdown.spawn_server(
        "http",
        axum::serve(listener, app).with_graceful_shutdown(drain.token().clone().cancelled_owned()),
    );
    let handle = shutdown.handle();
    let run = tokio::spawn(shutdown.run());
    Running {
        addr,
        handle,
        run,
        send_buffer,
    }
}

async fn connect(server: &Running, proto: Proto) -> Client {
    let options = ClientOptions {
        recv_buffer: Some(RECV_BUFFER),
        http1_max_buf_size: Some(HTTP1_READ_AHEAD),
        http2_stream_window: Some(HTTP2_STREAM_WINDOW),
    };
    Client::connect_with(server.addr, proto, options).await
}

async fn slow_reader_gets_the_whole_body_and_the_report_waits_for_it(proto: Proto) {
    let server = start(Duration::from_secs(10)).await;
    let mut client = connect(&server, proto).await;
    let response = client.get("/bytes").await;
    assert_eq!(response.status(), 200);
    // What may still be unread by the client once the server is done: the server's job ends
    // when it has handed every byte to the kernel.
    let in_buffers = match proto {
        // The two sockets' buffers (as the kernel reports them: twice the sizes set, room for
        // its bookkeeping too), the one segment a sender may queue beyond its buffer, and what
        // hyper read ahead: its read buffer, and a chunk handed to the body.
        Proto::Http1 => {
            let send_buffer = server.send_buffer.load(Ordering::Relaxed);
            assert!(
                send_buffer >= SEND_BUFFER as usize,
                "SO_SNDBUF {send_buffer}"
            );
            assert!(client.recv_buffer >= RECV_BUFFER as usize);
            send_buffer + client.recv_buffer + SEGMENT + 2 * HTTP1_READ_AHEAD
        }
        // The stream's window: the server may not send more than that beyond what the reader
        // took (hyper gives the window back as the body's frames are taken), so this bound is
        // exact and often reached. The sockets' buffers hold part of it, not more.
        Proto::Http2 => {
            assert!(client.recv_buffer >= 2 * HTTP2_STREAM_WINDOW as usize);
            HTTP2_STREAM_WINDOW as usize
        }
    };
    assert!(
        in_buffers < BODY / 4,
        "the body must dwarf {in_buffers} bytes"
    );
    // The body's one frame is in the server's hands: shut down now, while it is unsent.
    server.handle.trigger();
    let mut body = response.into_body();
    let mut received = 0;
    let mut unread_at_report = None;
    let reading = Instant::now();
    while let Some(frame) = within("a body frame", body.frame()).await {
        let frame = frame.expect("the body was cut");
        if let Some(data) = frame.data_ref() {
            received += data.len();
            // Paced to the rate, whatever the size of the frames.
            let due = Duration::from_secs_f64(received as f64 / READ_RATE);
            tokio::time::sleep_until(reading + due).await;
        }
        if server.run.is_finished() && unread_at_report.is_none() {
            unread_at_report = Some(BODY - received);
        }
    }
    assert_eq!(received, BODY);
    let unread_at_report = unread_at_report.unwrap_or(0);
    assert!(
        unread_at_report <= in_buffers,
        "the report came with {unread_at_report} bytes still to send (at most {in_buffers} \
         can be between the server and the reader)"
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
    let mut client = connect(&server, proto).await;
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
    // The drain phase ends at its deadline, late only by the scheduling of the sequence's
    // task (and the test's, for `took`): a loaded machine can delay those by tens of
    // milliseconds. Half a second leaves room for that and still catches a sequence that
    // waits past the deadline: for the server (whose response is never read), for the
    // tasks' 1 s timeout, for the overall deadline 5 s on.
    let late = Duration::from_millis(500);
    let drain = report.phase(Phase::Drain).unwrap();
    assert!(
        drain >= deadline && drain < deadline + late,
        "the drain phase took {drain:?} for a {deadline:?} deadline"
    );
    assert!(took < deadline + late, "{took:?}");
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

//! `serve` over real TCP: it keeps accepting through the notice period, tells every
//! connection to leave while still serving it (HTTP/2 `GOAWAY` at the announce, HTTP/1.1
//! `Connection: close` on the next response), stops accepting at the drain, and completes once
//! every connection has closed.

mod raw;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use support::{header, read_body, within, Client, Proto};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_drain::{ConnectionTracker, DrainLayer};

struct Running {
    addr: SocketAddr,
    token: CancellationToken,
    /// `GET /held` answers once this is cancelled: a request in flight for as long as the
    /// test needs, whatever the machine's speed.
    release: CancellationToken,
    tracker: ConnectionTracker,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start(
    configure: impl FnOnce(
        tower_drain::Serve<TcpListener, Router>,
    ) -> tower_drain::Serve<TcpListener, Router>,
) -> Running {
    let token = CancellationToken::new();
    let release = CancellationToken::new();
    let drain = DrainLayer::new(token.clone()).readiness_path("/readyz");
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
            "/bytes",
            get(|| async { Bytes::from(vec![b'x'; 32 * 1024 * 1024]) }),
        )
        .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = configure(tower_drain::serve(listener, &drain, app));
    let server = tokio::spawn(std::future::IntoFuture::into_future(serve));
    Running {
        addr,
        token,
        release,
        tracker: drain.tracker(),
        server,
    }
}

async fn ok(client: &mut Client, path: &str) -> http::Response<hyper::body::Incoming> {
    let response = client.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_is_told_to_leave_at_the_announce_and_its_stream_in_flight_is_served() {
    let server = start(|serve| serve).await;
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    read_body(ok(&mut client, "/").await.into_body()).await;
    let mut held = client.h2_clone();
    let in_flight = tokio::spawn(async move { held.get("/held").await });
    support::eventually("the held stream to be in flight", || {
        server.tracker.in_flight() == 1
    })
    .await;

    server.tracker.announce_shutdown();
    // GOAWAY: the client may open no new stream on this connection.
    within("the GOAWAY", async {
        while !client.is_closed()
            && client
                .try_send(client.request(http::Method::GET, "/"))
                .await
                .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // Told while its stream is still in flight (held until released below): at the announce,
    // not once the connection is idle. (Nothing else here sends a GOAWAY: no drain, no
    // maximum age; `within` bounds the wait.)
    assert!(!in_flight.is_finished());
    assert_eq!(server.tracker.in_flight(), 1);
    server.release.cancel();

    // The stream sent before it is served to the end.
    let response = within("the held response", in_flight).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(read_body(response.into_body()).await, "held");

    // Still accepting during the notice: a new connection is served.
    let mut fresh = Client::connect(server.addr, Proto::Http2).await;
    read_body(ok(&mut fresh, "/").await.into_body()).await;
    assert!(server.tracker.connections().told_to_leave >= 1);
    assert!(!server.server.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_gets_connection_close_on_its_next_response_after_the_announce() {
    let server = start(|serve| serve).await;
    let mut client = Client::connect(server.addr, Proto::Http1).await;
    let response = ok(&mut client, "/").await;
    assert_eq!(
        header(&response, "connection"),
        None,
        "keep-alive while serving"
    );
    read_body(response.into_body()).await;

    server.tracker.announce_shutdown();
    let response = ok(&mut client, "/").await;
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    read_body(response.into_body()).await;
    support::eventually("the connection to close", || client.is_closed()).await;

    // A connection accepted during the notice is served; the layer puts `Connection: close`
    // on every HTTP/1.x response once the shutdown is announced, whatever the server (as it
    // does under axum::serve), so it leaves after its response.
    let mut fresh = Client::connect(server.addr, Proto::Http1).await;
    let response = ok(&mut fresh, "/").await;
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    read_body(response.into_body()).await;
    support::eventually("told-to-leave counted", || {
        server.tracker.connections().told_to_leave >= 1
    })
    .await;
}

/// The race the connection's task used to lose: a request served as the shutdown is
/// announced, before the task can have seen it (here the handler announces it, so the task
/// cannot). Without the layer (which says goodbye on its own), only `serve` puts
/// `Connection: close` on the response, and it must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_response_ready_after_the_announce_gets_connection_close_without_the_layer() {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone());
    let tracker = drain.tracker();
    let app = Router::new().route("/", get(|| async { "hello" })).route(
        "/announce",
        get({
            let tracker = tracker.clone();
            move || async move {
                tracker.announce_shutdown();
                "announced"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(std::future::IntoFuture::into_future(tower_drain::serve(
        listener, &drain, app,
    )));
    let mut client = Client::connect(addr, Proto::Http1).await;
    let response = ok(&mut client, "/").await;
    assert_eq!(header(&response, "connection"), None);
    read_body(response.into_body()).await;

    let response = ok(&mut client, "/announce").await;
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    // Counted before the response left.
    assert_eq!(tracker.connections().told_to_leave, 1);
    read_body(response.into_body()).await;
    support::eventually("the connection to close", || client.is_closed()).await;
    token.cancel();
    within("serve to complete", server).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_accepted_during_the_notice_is_served_until_the_drain() {
    let server = start(|serve| serve).await;
    server.tracker.announce_shutdown();
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    // Told to leave after a request, it would come back and have its streams refused: it is
    // served as the framework's server serves it, and told at the drain.
    for _ in 0..3 {
        read_body(ok(&mut client, "/").await.into_body()).await;
    }
    assert!(!client.is_closed(), "no GOAWAY during the notice");
    assert_eq!(server.tracker.connections().told_to_leave, 0);
    server.token.cancel();
    support::eventually("the connection to close after the GOAWAY", || {
        client.is_closed()
    })
    .await;
    assert_eq!(server.tracker.connections().told_to_leave, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_accepting_closes_idle_connections_and_completes_when_all_are_closed() {
    let server = start(|serve| serve).await;
    let mut idle = Client::connect(server.addr, Proto::Http1).await;
    read_body(ok(&mut idle, "/").await.into_body()).await;
    let mut busy = Client::connect(server.addr, Proto::Http2).await;
    let in_flight = tokio::spawn(async move { busy.get("/held").await });
    support::eventually("the held stream to be in flight", || {
        server.tracker.in_flight() == 1
    })
    .await;

    server.token.cancel();
    support::eventually("the idle connection to close", || idle.is_closed()).await;
    // The listener is closed. A probe that connects before it closes may be accepted with
    // the backlog at the drain, and then counts as a connection: keep the count.
    let mut probes_connected = 0;
    support::eventually("the listener to close", || {
        let connected = std::net::TcpStream::connect(server.addr).is_ok();
        probes_connected += u64::from(connected);
        !connected
    })
    .await;
    assert!(!server.server.is_finished(), "a stream is still in flight");
    server.release.cancel();
    let response = within("the held response", in_flight).await.unwrap();
    assert_eq!(read_body(response.into_body()).await, "held");
    within("serve to complete", server.server)
        .await
        .unwrap()
        .unwrap();
    let counts = server.tracker.connections();
    assert_eq!(counts.open, 0);
    assert!(
        (2..=2 + probes_connected).contains(&counts.accepted),
        "accepted {} with {probes_connected} probes connected",
        counts.accepted
    );
    assert_eq!(counts.closed, counts.accepted);
    assert_eq!(counts.cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_older_than_its_maximum_age_is_told_to_leave_while_serving() {
    let server = start(|serve| serve.max_connection_age(Duration::from_millis(200), None)).await;
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    let opened = Instant::now();
    read_body(ok(&mut client, "/").await.into_body()).await;
    support::eventually("the aged connection to close", || client.is_closed()).await;
    let age = opened.elapsed();
    assert!(age >= Duration::from_millis(180), "left after {age:?}");
    assert!(server.tracker.is_ready(), "no shutdown involved");
    let mut fresh = Client::connect(server.addr, Proto::Http2).await;
    read_body(ok(&mut fresh, "/").await.into_body()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_past_its_maximum_age_and_grace_is_closed_with_its_stream_in_flight() {
    let (age, grace) = (Duration::from_millis(100), Duration::from_millis(200));
    let server = start(|serve| serve.max_connection_age(age, Some(grace))).await;
    let mut client = Client::connect(server.addr, Proto::Http2).await;
    let opened = Instant::now();
    // Held until the test ends: only the grace can end this connection.
    let mut held = client.h2_clone();
    let request = held.request(http::Method::GET, "/held");
    let in_flight = tokio::spawn(async move { held.try_send(request).await });
    read_body(ok(&mut client, "/").await.into_body()).await;
    let outcome = within("the connection to be closed at the grace's end", in_flight)
        .await
        .unwrap();
    let closed = opened.elapsed();
    assert!(
        outcome.is_err(),
        "the held stream was answered: {outcome:?}"
    );
    // Not before its age (less 10 %, the jitter) and its grace.
    assert!(
        closed >= age.mul_f64(0.9) + grace,
        "closed after {closed:?}"
    );
    support::eventually("the connection to close", || client.is_closed()).await;
    server.release.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_older_than_its_maximum_age_gets_connection_close() {
    let max_age = Duration::from_millis(100);
    let server = start(|serve| serve.max_connection_age(max_age, None)).await;
    let opened = Instant::now();
    let mut client = Client::connect(server.addr, Proto::Http1).await;
    let response = ok(&mut client, "/").await;
    assert_eq!(header(&response, "connection"), None);
    read_body(response.into_body()).await;
    // Requests until one is told to leave: no sleep to outlast the age (up to 10 % more, at
    // random) on a machine that may run the connection's timer late.
    let told = within("a Connection: close", async {
        loop {
            let response = ok(&mut client, "/").await;
            let close = header(&response, "connection").as_deref() == Some("close");
            read_body(response.into_body()).await;
            if close {
                break opened.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Not before its age (less 10 %, the jitter).
    assert!(told >= max_age.mul_f64(0.9), "told after {told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_header_read_timeout() {
    let server = start(|serve| serve.header_read_timeout(Duration::from_millis(100))).await;
    // Before connecting: the server's timer starts when it accepts, which may be before this
    // task resumes from the connect.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0; 16];
    let n = within(
        "the close",
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
    support::eventually("closed counted", || {
        server.tracker.connections().closed == 1
    })
    .await;
}

#[cfg(feature = "shutdown")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_still_writing_at_the_drain_deadline_is_cut_and_named_in_the_report() {
    use tower_drain::shutdown::{ServerOutcome, Shutdown};
    let drain = DrainLayer::new(CancellationToken::new());
    let builder = Shutdown::builder(&drain)
        .drain_timeout(Duration::from_millis(300))
        .tasks_timeout(Duration::from_secs(1))
        .overall_timeout(Duration::from_secs(5));
    let mut shutdown = builder.build().unwrap();
    let app = Router::new()
        .route(
            "/bytes",
            get(|| async { Bytes::from(vec![b'x'; 32 * 1024 * 1024]) }),
        )
        .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    shutdown.spawn_server("http", tower_drain::serve(listener, &drain, app));
    let handle = shutdown.handle();
    let run = tokio::spawn(shutdown.run());

    let idle = Client::connect(addr, Proto::Http1).await;
    let mut reader = Client::connect(addr, Proto::Http1).await;
    let response = ok(&mut reader, "/bytes?n=32MiB").await; // never read
    handle.trigger();
    let report = within("the report", run).await.unwrap();
    assert_eq!(report.servers[0].outcome, ServerOutcome::Cut, "{report}");
    // The writing connection is named with its request. The idle one, which never sent a
    // byte, was closed at the drain: nothing of it could be on the wire any more.
    let named: Vec<_> = report
        .connections_cut
        .iter()
        .filter_map(|cut| cut.last_request.as_ref())
        .collect();
    assert_eq!(named.len(), 1, "{report}");
    assert_eq!(named[0].method, http::Method::GET);
    assert_eq!(named[0].uri.to_string(), "/bytes?n=32MiB");
    let text = report.to_string();
    assert!(text.contains("last request GET /bytes?n=32MiB"), "{text}");
    assert_eq!(report.connections.cut, 1, "{text}");
    assert_eq!(report.connections.closed, 1, "{text}");
    assert_eq!(report.connections.accepted, 2, "{text}");
    assert_eq!(report.exit_code(), 1);
    support::eventually("the idle connection closed", || idle.is_closed()).await;
    drop((response, idle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_arriving_just_after_the_drain_on_a_new_connection_is_served() {
    let server = start(|serve| serve).await;
    let mut client = Client::connect(server.addr, Proto::Http1).await;
    // The connection was accepted as the drain began; its first request comes just after.
    server.token.cancel();
    let response = ok(&mut client, "/").await;
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    assert_eq!(read_body(response.into_body()).await, "hello");
    within("serve to complete", server.server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_at_the_drain_without_waiting_for_a_first_request() {
    let server = start(|serve| serve).await;
    // A pre-connection, or a balancer's TCP check: connected, nothing sent.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    support::eventually("the connection accepted", || {
        server.tracker.connections().accepted == 1
    })
    .await;
    let drain = Instant::now();
    server.token.cancel();
    let mut buf = [0; 16];
    let n = within(
        "the close",
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .unwrap_or(0);
    assert_eq!(n, 0);
    within("serve to complete", server.server)
        .await
        .unwrap()
        .unwrap();
    // Was a second: the grace for a first request on the wire, which only a connection
    // accepted within the last few tens of milliseconds gets.
    let took = drain.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "closed {took:?} after the drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_that_does_not_read_lets_the_drain_end_at_once() {
    let server = start(|serve| serve).await;
    // A pooled connection (urllib3, HttpURLConnection): one request answered, then idle, and
    // nobody reads it any more, so the server's FIN is never answered.
    let mut pooled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut pooled, b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"hello") {
        let mut buf = [0; 256];
        let n = tokio::io::AsyncReadExt::read(&mut pooled, &mut buf)
            .await
            .unwrap();
        assert_ne!(n, 0, "closed before its response");
        response.extend_from_slice(&buf[..n]);
    }
    let drain = Instant::now();
    server.token.cancel();
    within("serve to complete", server.server)
        .await
        .unwrap()
        .unwrap();
    // Was two seconds: a lingering close waiting for a peer that never reads. Nothing of it
    // was unread, so nothing can be lost by closing at once.
    let took = drain.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "completed {took:?} after the drain"
    );
    drop(pooled);
}

#[cfg(feature = "shutdown")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connection_stays_counted_until_its_stream_ends_and_is_named_when_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower_drain::shutdown::{ServerOutcome, Shutdown};
    let drain = DrainLayer::new(CancellationToken::new());
    let mut shutdown = Shutdown::builder(&drain)
        .drain_timeout(Duration::from_millis(300))
        .tasks_timeout(Duration::from_secs(1))
        .overall_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // A WebSocket-like upgrade: the handler's task keeps the upgraded stream, echoing, until
    // the client closes it.
    let app = tower::service_fn(
        |mut request: http::Request<hyper::body::Incoming>| async move {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let mut buf = [0; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let response = http::Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(String::new())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    shutdown.spawn_server("http", tower_drain::serve(listener, &drain, app));
    let handle = shutdown.handle();
    let tracker = drain.tracker();
    let run = tokio::spawn(shutdown.run());

    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        assert_eq!(
            socket.read(&mut byte).await.unwrap(),
            1,
            "closed before the 101"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket.write_all(b"ping").await.unwrap();
    let mut echo = [0; 4];
    socket.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    // hyper is done with the connection; the upgraded stream is not.
    assert_eq!(tracker.connections().open, 1, "counted while upgraded");
    assert_eq!(tracker.connections().closed, 0);

    handle.trigger();
    let report = within("the report", run).await.unwrap();
    assert_eq!(report.servers[0].outcome, ServerOutcome::Cut, "{report}");
    assert_eq!(report.connections.cut, 1, "{report}");
    let text = report.to_string();
    assert!(text.contains("last request GET /ws"), "{text}");
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_head_sent_too_slowly_is_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(|serve| serve.header_read_timeout(Duration::from_millis(100))).await;
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The start of a head, and no more: a slow-loris client.
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let mut buf = [0; 256];
    let n = within("the close", stream.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
}

/// h2's client (under hyper and tonic) writes a `PING` acknowledgement ahead of the streams it
/// has queued. Taken in that order, the acknowledgement of hyper's shutdown `PING` would close
/// the window before those streams, and they would be refused (above the final `GOAWAY`'s
/// last-stream-id): `serve` lets them in first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_queued_behind_the_shutdown_ping_ack_are_served_not_refused() {
    use raw::{ACK, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, RST_STREAM};
    fn last_stream(goaway: &raw::Frame) -> u32 {
        u32::from_be_bytes(goaway.payload[..4].try_into().unwrap()) & 0x7fff_ffff
    }
    let server = start(|serve| serve).await;
    let mut h2 = raw::H2::connect(server.addr).await;
    // Stream 1 stays in flight: the connection stays open through the goodbye.
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &raw::get("/held"))
        .await;
    support::eventually("stream 1 in flight", || server.tracker.in_flight() == 1).await;

    server.tracker.announce_shutdown();
    let frames = h2.until(|f| f.kind == PING && f.flags & ACK == 0).await;
    let notice = frames.iter().find(|f| f.kind == GOAWAY).expect("a GOAWAY");
    assert_eq!(
        last_stream(notice),
        0x7fff_ffff,
        "the first GOAWAY refuses nothing"
    );
    let ping = frames.last().unwrap();
    // In one write, as h2's client sends them: the acknowledgement, then two queued streams.
    let mut bytes = raw::encode(PING, ACK, 0, &ping.payload);
    for stream in [3, 5] {
        bytes.extend(raw::encode(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &raw::get("/"),
        ));
    }
    tokio::io::AsyncWriteExt::write_all(&mut h2.stream, &bytes)
        .await
        .unwrap();

    let mut ended = Vec::new();
    let mut last = None;
    h2.until(|f| {
        assert_ne!(f.kind, RST_STREAM, "stream {} reset", f.stream);
        if f.kind == GOAWAY {
            let final_last = last_stream(f);
            assert_eq!(
                final_last, 5,
                "the final GOAWAY counts the queued streams in"
            );
            last = Some(final_last);
        }
        if f.kind != GOAWAY && f.flags & END_STREAM != 0 {
            ended.push(f.stream);
        }
        last.is_some() && ended.len() == 2
    })
    .await;
    ended.sort_unstable();
    assert_eq!(ended, [3, 5], "both served");

    server.release.cancel();
    h2.until(|f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
}

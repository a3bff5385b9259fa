//! Process-level tests of the shutdown sequence: start `examples/axum.rs` as a real child
//! process, drive real HTTP/1.1 requests over TCP, send real signals, and check what the
//! outside world sees: readiness, responses, the log, the exit code and the timing.
//!
//! Every wait is bounded, and a `Drop` guard kills the child if a test fails.

#![cfg(unix)]

#[path = "support/examples.rs"]
mod examples;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use examples::example;

const STARTUP: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A request that hangs for a minute after its first chunk.
const HUNG: &str = "/stream?chunks=2&ms=60000";

/// One example process at a time: these tests measure deadlines in milliseconds, and a
/// 64 MB download in a parallel test would steal the CPU they are measured on.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running example; killed on drop, so a failing test leaves no process behind.
struct Server {
    // Released after `drop` has killed the child.
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    /// Where it listens, if on TCP.
    addr: SocketAddr,
    /// What it printed after `listening on `.
    listening: String,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr: done once the process has exited and its
    /// output has been read to the end.
    collectors: [thread::JoinHandle<()>; 2],
}

impl Server {
    /// Starts the `axum` example (on `tower_drain::serve`).
    fn start(notice_ms: u64, drain_timeout_ms: u64) -> Self {
        Self::start_example("axum", notice_ms, drain_timeout_ms)
    }

    /// Starts the `axum` example on `SERVER`: `serve` or `axum` (`axum::serve`).
    fn start_on(server: &str, notice_ms: u64, drain_timeout_ms: u64) -> Self {
        Self::spawn("axum", notice_ms, drain_timeout_ms, &[("SERVER", server)])
    }

    fn start_example(name: &str, notice_ms: u64, drain_timeout_ms: u64) -> Self {
        Self::spawn(name, notice_ms, drain_timeout_ms, &[])
    }

    fn spawn(name: &str, notice_ms: u64, drain_timeout_ms: u64, env: &[(&str, &str)]) -> Self {
        Self::spawn_with(name, notice_ms, drain_timeout_ms, |command| {
            command.envs(env.iter().copied());
        })
    }

    /// Starts example `name`, its command set up by `configure` last (to change `ADDR`, or
    /// start it through a shell).
    fn spawn_with(
        name: &str,
        notice_ms: u64,
        drain_timeout_ms: u64,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let path = example(name);
        // A failed test poisons the lock; the next one may still run.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let mut command = Command::new(path);
        command
            .env("ADDR", "127.0.0.1:0")
            .env("NOTICE_MS", notice_ms.to_string())
            .env("DRAIN_TIMEOUT_MS", drain_timeout_ms.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} example: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr_collector = collect(child.stderr.take().unwrap(), Arc::clone(&stderr), None);
        let (listening_tx, listening_rx) = mpsc::channel();
        let stdout_collector = collect(
            child.stdout.take().unwrap(),
            Arc::clone(&stdout),
            Some(listening_tx),
        );
        let mut server = Self {
            _turn: turn,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listening: String::new(),
            stderr,
            stdout,
            collectors: [stderr_collector, stdout_collector],
        };
        match listening_rx.recv_timeout(STARTUP) {
            Ok(listening) => {
                if let Ok(addr) = listening.parse() {
                    server.addr = addr;
                }
                server.listening = listening;
            }
            Err(_) => panic!(
                "no `listening on` line within {STARTUP:?}; stdout:\n{}\nstderr:\n{}",
                server.stdout(),
                server.stderr()
            ),
        }
        server
    }

    /// Sends `SIG<name>`; returns the instant just before it was sent. The process's
    /// deadlines start after it, so durations measured from it are never too short.
    fn signal(&self, name: &str) -> Instant {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
        sent
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The shutdown report, as `Shutdown::run` logged it. Call after
    /// [`wait_exit`](Self::wait_exit), which reads the output to its end.
    fn report(&self) -> String {
        let log = self.stderr();
        match log.split_once("shutdown: finished") {
            Some((_, report)) => report.to_owned(),
            None => panic!("no report in the log:\n{log}"),
        }
    }

    /// Waits until the log holds `needle`.
    fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log line {needle:?} not seen within {within:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit, then for its output to be read to the end; returns its
    /// status and when the exit was seen.
    ///
    /// The report is the last thing the process prints: the threads copying its output may
    /// not have read it yet when the exit is seen (on a loaded machine they lagged behind
    /// often enough to fail these tests), so `stdout()` and `stderr()` are complete only after
    /// this.
    fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Instant) {
        let started = Instant::now();
        let (status, exited) = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break (status, Instant::now());
            }
            assert!(
                started.elapsed() < within,
                "process did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(5));
        };
        // The pipes closed with the process: the copies end as soon as they are scheduled.
        while !self.collectors.iter().all(thread::JoinHandle::is_finished) {
            assert!(
                exited.elapsed() < IO_TIMEOUT,
                "the output was not read to its end within {IO_TIMEOUT:?} of the exit"
            );
            thread::sleep(Duration::from_millis(1));
        }
        (status, exited)
    }

    fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    /// Starts a request on its own thread and returns once it was sent (or, with `until`,
    /// once the response so far holds `until`); join to get the whole response.
    fn get_in_background(&self, path: &str, until: Option<&str>) -> thread::JoinHandle<Response> {
        let (addr, path) = (self.addr, path.to_owned());
        let until = until.map(str::to_owned);
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut stream = connect(addr).expect("connect");
            send(&mut stream, &path);
            let mut raw = Vec::new();
            if let Some(until) = until {
                let mut buf = [0; 1024];
                while !String::from_utf8_lossy(&raw).contains(&until) {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
            }
            ready_tx.send(()).unwrap();
            read_response(raw, stream)
        });
        ready_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("request under way");
        handle
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a pipe into `sink` until it closes; with `listening`, reports the address of
/// `listening on ADDR`.
fn collect(
    pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    listening: Option<mpsc::Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(addr)) = (&listening, line.strip_prefix("listening on ")) {
                let _ = tx.send(addr.trim().to_owned());
            }
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    })
}

#[derive(Debug)]
enum Response {
    /// Status and body (chunked framing left in; the tests only look for markers).
    Http(u16, String),
    /// Could not connect, or the connection failed before a complete response.
    #[allow(dead_code)] // read through `Debug` in failure messages
    Failed(String),
}

impl Response {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Http(status, _) => Some(*status),
            Self::Failed(_) => None,
        }
    }
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Like [`connect`], with `SO_RCVBUF` set to `size` before connecting (the kernel then does
/// not autotune it). Returns the size the kernel reports: twice the one set, on Linux.
fn connect_with_recv_buffer(addr: SocketAddr, size: usize) -> std::io::Result<(TcpStream, usize)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_recv_buffer_size(size)?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let reported = socket.recv_buffer_size()?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok((stream, reported))
}

/// `net.ipv4.tcp_wmem`'s maximum: what the kernel lets a send buffer grow to by itself.
fn tcp_wmem_max() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").ok()?;
    text.split_whitespace().nth(2)?.parse().ok()
}

fn send(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
}

/// Reads the rest of a response of which `raw` is the start.
fn read_response(mut raw: Vec<u8>, mut stream: TcpStream) -> Response {
    if let Err(e) = stream.read_to_end(&mut raw) {
        return Response::Failed(format!("read: {e}"));
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Response::Failed(format!("incomplete response: {text:?}"));
    };
    match head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
    {
        Some(status) => Response::Http(status, body.to_owned()),
        None => Response::Failed(format!("bad status line: {head:?}")),
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    match connect(addr) {
        Ok(mut stream) => {
            stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("set timeout");
            send(&mut stream, path);
            read_response(Vec::new(), stream)
        }
        Err(e) => Response::Failed(format!("connect: {e}")),
    }
}

/// Positions of `needles` in `log`, panicking with the log if one is missing.
fn positions(log: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|needle| {
            log.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing from the log:\n{log}"))
        })
        .collect()
}

#[test]
fn readiness_flips_before_any_request_is_refused() {
    let mut server = Server::start(1_000, 5_000);
    assert_eq!(server.get("/readyz").status(), Some(200));
    server.signal("TERM");
    // Probe like a load balancer and a client at once, until the server stops answering.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = server.get("/readyz").status();
        let root = server.get("/").status();
        seen.push((ready, root));
        if root != Some(200) || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let first_unready = seen.iter().position(|(ready, _)| *ready != Some(200));
    let first_refused = seen.iter().position(|(_, root)| *root != Some(200));
    let (Some(unready), Some(refused)) = (first_unready, first_refused) else {
        panic!("readiness never flipped or nothing was ever refused: {seen:?}");
    };
    assert!(
        unready < refused,
        "a request was refused before readiness failed: {seen:?}"
    );
    assert!(
        seen[unready..refused]
            .iter()
            .any(|(_, root)| *root == Some(200)),
        "requests are still served during the notice period: {seen:?}"
    );
    let (status, _) = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
}

#[test]
fn requests_in_flight_at_sigterm_complete_with_200() {
    let mut server = Server::start(200, 5_000);
    let slow = server.get_in_background("/slow?ms=1500", None);
    // Wait for the first chunk: the stream is certainly in flight when the signal arrives.
    let stream = server.get_in_background("/stream?chunks=10&ms=100", Some("chunk 1\n"));
    server.signal("TERM");
    match slow.join().unwrap() {
        Response::Http(200, body) => assert!(body.contains("slept 1500 ms"), "{body:?}"),
        other => panic!("slow request: {other:?}"),
    }
    match stream.join().unwrap() {
        Response::Http(200, body) => assert!(body.contains("chunk 10\n"), "{body:?}"),
        other => panic!("stream request: {other:?}"),
    }
    let (status, _) = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let report = server.report();
    assert!(report.contains("0 still in flight"), "{report}");
}

#[test]
fn phases_and_cleanup_hooks_appear_in_order_in_the_log() {
    let mut server = Server::start(100, 5_000);
    server.signal("TERM");
    let (status, _) = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let log = server.stderr();
    let order = positions(
        &log,
        &[
            "shutdown: triggered by SIGTERM",
            "shutdown: notice period of 100ms started",
            "shutdown: notice period over",
            "shutdown: draining",
            "shutdown: drained in",
            "shutdown: cancelling 1 background tasks",
            "worker stopped",
            "shutdown: background tasks finished",
            // Registered last, so run first; the pool, registered first, closes last.
            "shutdown: cleanup flush-metrics started",
            "metrics flushed",
            "shutdown: cleanup db-pool started",
            "pool closed",
            "shutdown: cleanup finished",
            "shutdown: finished",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{log}"
    );
    assert!(!log.contains("after it was closed"), "{log}");
}

/// The servers the `axum` example runs on: every deadline must hold on both.
const SERVERS: [&str; 2] = ["serve", "axum"];

/// How late a process may exit after its drain deadline. The work after the deadline is a
/// few milliseconds (the tasks are cancelled at once, the pool closes in ~20 ms), but on a
/// loaded machine the example's threads, the `kill` process and the test's polling all wait
/// for a core. Half a second leaves room for that and still catches a sequence that waits
/// for anything it should not: the handoff grace or a late first request's grace (1 s), the
/// tasks' timeout (2 s), the lingering of a closed connection (2 s), a hung request (60 s).
const EXIT_AFTER_DEADLINE: Duration = Duration::from_millis(500);

#[test]
fn hung_request_exits_after_the_drain_deadline_with_code_1() {
    for name in SERVERS {
        hung_request_exits_after_the_drain_deadline(name);
    }
}

fn hung_request_exits_after_the_drain_deadline(name: &str) {
    let drain_timeout = Duration::from_millis(500);
    let mut server = Server::start_on(name, 0, drain_timeout.as_millis() as u64);
    // The first chunk comes at once, the second after a minute: certainly in flight, and hung.
    let _hung = server.get_in_background(HUNG, Some("chunk 1\n"));
    let signalled = server.signal("TERM");
    let (status, exited) = server.wait_exit(Duration::from_secs(10));
    let took = exited - signalled;
    assert_eq!(status.code(), Some(1), "stderr:\n{}", server.stderr());
    assert!(
        took >= drain_timeout,
        "exited before the deadline: {took:?}"
    );
    // The deadline, then the tasks (cancelled at once) and the hooks (the pool: ~20 ms).
    assert!(
        took < drain_timeout + EXIT_AFTER_DEADLINE,
        "{name}: took {took:?}"
    );
    let report = server.report();
    assert!(report.contains("1 still in flight"), "{report}");
    assert!(report.contains("exit code 1"), "{report}");
}

fn second_signal_exits_at_once(signal: &str, code: i32) {
    for name in SERVERS {
        second_signal_exits_at_once_on(name, signal, code);
    }
}

fn second_signal_exits_at_once_on(name: &str, signal: &str, code: i32) {
    let mut server = Server::start_on(name, 0, 20_000);
    // The first chunk comes at once, the second after a minute: certainly in flight, and hung.
    let _hung = server.get_in_background(HUNG, Some("chunk 1\n"));
    server.signal("TERM");
    server.wait_for_log("shutdown: draining", Duration::from_secs(10));
    let signalled = server.signal(signal);
    let (status, exited) = server.wait_exit(Duration::from_secs(10));
    let took = exited - signalled;
    assert_eq!(status.code(), Some(code), "stderr:\n{}", server.stderr());
    // At once: not the 20 s drain deadline, not the tasks' 2 s, and nothing waited for after
    // the report (the hooks are skipped: checked below). The bound leaves room for a loaded
    // machine, far below the waits it rules out.
    assert!(took < Duration::from_millis(500), "{name}: took {took:?}");
    let log = server.stderr();
    assert!(
        log.contains(&format!("second signal SIG{signal} during the drain phase")),
        "{log}"
    );
    assert!(server.report().contains("cleanup db-pool: skipped"));
}

#[test]
fn second_sigterm_exits_at_once_with_143() {
    second_signal_exits_at_once("TERM", 143);
}

#[test]
fn second_sigint_exits_at_once_with_130() {
    second_signal_exits_at_once("INT", 130);
}

#[test]
fn bad_environment_exits_with_code_2_and_a_message() {
    for (name, value) in [
        ("ADDR", "not an address"),
        ("NOTICE_MS", "soon"),
        ("DRAIN_TIMEOUT_MS", "0"),
    ] {
        let output = Command::new(example("axum"))
            .env("ADDR", "127.0.0.1:0")
            .env(name, value)
            .stdin(Stdio::null())
            .output()
            .expect("run the example");
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

#[test]
fn sse_stream_ends_itself_when_the_drain_starts() {
    let drain_timeout = Duration::from_secs(20);
    let mut server = Server::start_example("sse", 0, drain_timeout.as_millis() as u64);
    let events = server.get_in_background("/events", Some("event: tick"));
    let signalled = server.signal("TERM");
    match events.join().unwrap() {
        Response::Http(200, body) => assert!(body.contains("event: bye"), "{body:?}"),
        other => panic!("events: {other:?}"),
    }
    let (status, exited) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let took = exited - signalled;
    assert!(
        took < Duration::from_secs(3),
        "the stream should end at the drain, not at the {drain_timeout:?} deadline: {took:?}"
    );
    assert!(server.report().contains("0 still in flight"));
}

#[test]
fn hyper_example_finishes_requests_in_flight_and_exits_zero() {
    let mut server = Server::start_example("hyper", 200, 5_000);
    let slow = server.get_in_background("/slow?ms=1000", None);
    server.signal("TERM");
    match slow.join().unwrap() {
        Response::Http(200, body) => assert!(body.contains("slept 1000 ms"), "{body:?}"),
        other => panic!("slow request: {other:?}"),
    }
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(server.report().contains("0 still in flight"));
}

#[test]
fn tonic_health_turns_not_serving_as_soon_as_the_shutdown_begins() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let notice = Duration::from_secs(3);
    let mut server = Server::start_example("tonic", notice.as_millis() as u64, 5_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = tokio::time::timeout(
            IO_TIMEOUT,
            tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .connect(),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let client = HealthClient::new(channel);
        let check = || {
            let mut client = client.clone();
            async move {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                tokio::time::timeout(IO_TIMEOUT, client.check(request))
                    .await
                    .expect("check in time")
                    .expect("check")
                    .into_inner()
                    .status()
            }
        };
        assert_eq!(check().await, ServingStatus::Serving);
        let signalled = Instant::now();
        server.signal("TERM");
        while check().await != ServingStatus::NotServing {
            assert!(
                signalled.elapsed() < notice / 2,
                "still SERVING {:?} after SIGTERM",
                signalled.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !server.stderr().contains("shutdown: draining"),
            "NOT_SERVING must come at the start of the notice period, before the drain"
        );
        drop(client);
    });
    // The client goes away, as a real one would (an idle runtime would keep its connection
    // open without answering the server's GOAWAY ping, and the server would rightly wait).
    drop(runtime);
    let (status, _) = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
}

/// `GET /bytes?n=N` on its own connection: reads the head and the first bytes, then hands
/// back a reader that reads the rest at about `rate` bytes per second.
struct Download {
    stream: TcpStream,
    /// What was read so far of the body.
    received: usize,
    length: usize,
}

impl Download {
    /// With `recv_buffer`, the connection's `SO_RCVBUF` is set to it.
    fn start(addr: SocketAddr, n: usize, recv_buffer: Option<usize>) -> Self {
        let mut stream = match recv_buffer {
            Some(size) => connect_with_recv_buffer(addr, size).expect("connect").0,
            None => connect(addr).expect("connect"),
        };
        send(&mut stream, &format!("/bytes?n={n}"));
        let mut raw = Vec::new();
        let mut buf = [0; 16 * 1024];
        let head_end = loop {
            let read = stream.read(&mut buf).expect("read the head");
            assert!(read > 0, "closed before the head");
            raw.extend_from_slice(&buf[..read]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        assert_eq!(length, n);
        Self {
            stream,
            received: raw.len() - head_end,
            length,
        }
    }

    /// Reads to the end of the body (or of the connection) at about `rate` bytes per second;
    /// returns how many body bytes arrived.
    fn finish(mut self, rate: usize) -> usize {
        let mut buf = vec![0; 64 * 1024];
        let started = Instant::now();
        let at_start = self.received;
        while self.received < self.length {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.received += n,
            }
            let due = Duration::from_secs_f64((self.received - at_start) as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                thread::sleep(ahead);
            }
        }
        self.received
    }
}

#[test]
fn large_download_to_a_slow_reader_across_sigterm_arrives_whole_and_exits_zero() {
    for name in SERVERS {
        large_download_arrives_whole(name);
    }
}

fn large_download_arrives_whole(name: &str) {
    const N: usize = 24_000_000;
    let mut server = Server::start_on(name, 0, 10_000);
    let download = Download::start(server.addr, N, None);
    // The body's one frame is in the server's hands; most of it is not on the wire yet.
    server.signal("TERM");
    // About 12 MB/s: two seconds of download across the drain.
    let received = download.finish(12_000_000);
    assert_eq!(received, N, "stderr:\n{}", server.stderr());
    let (status, _) = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    let report = server.report();
    assert!(
        report.contains("server http: closed every connection"),
        "{report}"
    );
}

#[test]
fn download_longer_than_the_drain_deadline_exits_one_within_the_deadline_and_is_reported() {
    for name in SERVERS {
        download_longer_than_the_drain_deadline(name);
    }
}

fn download_longer_than_the_drain_deadline(name: &str) {
    const RATE: usize = 4_000_000;
    const RECV_BUFFER: usize = 128 * 1024;
    let drain_timeout = Duration::from_millis(500);
    // The body must outlast the deadline, and the process: more than the reader takes until
    // the exit, plus what the kernel holds between the server and the reader (and still
    // delivers after the exit): the reader's receive buffer, set here (twice that, as Linux
    // counts it), and the server's send buffer, which the example leaves to the kernel's
    // autotuning, up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default, 32 MiB on some
    // machines; 32 MiB assumed where it cannot be read).
    let wmem_max = tcp_wmem_max().unwrap_or(32 << 20);
    let until_exit = (drain_timeout + EXIT_AFTER_DEADLINE).as_secs_f64();
    let could_arrive = (RATE as f64 * until_exit) as usize + 2 * RECV_BUFFER + wmem_max;
    let n = (could_arrive * 3 / 2).max(64_000_000);
    let mut server = Server::start_on(name, 0, drain_timeout.as_millis() as u64);
    let download = Download::start(server.addr, n, Some(RECV_BUFFER));
    let signalled = server.signal("TERM");
    let reader = thread::spawn(move || download.finish(RATE));
    let (status, exited) = server.wait_exit(Duration::from_secs(10));
    let took = exited - signalled;
    assert_eq!(status.code(), Some(1), "stderr:\n{}", server.stderr());
    assert!(
        took >= drain_timeout,
        "exited before the deadline: {took:?}"
    );
    assert!(
        took < drain_timeout + EXIT_AFTER_DEADLINE,
        "{name}: took {took:?} for a {drain_timeout:?} drain deadline"
    );
    let report = server.report();
    assert!(report.contains("exit code 1"), "{report}");
    assert!(
        report.contains("server http: cut: connections still open, responses may be unfinished"),
        "the report names the server still writing: {report}"
    );
    // `serve` owns the connections, so it can name the response still being written;
    // `axum::serve` keeps them to itself.
    if name == "serve" {
        assert!(
            report.contains(&format!("last request GET /bytes?n={n}")),
            "the report names the unfinished response: {report}"
        );
    }
    let received = reader.join().unwrap();
    assert!(
        received < n,
        "the download could not have finished: {received} bytes"
    );
}

// The example's interface as a drop-in for axum::serve (issue 14): the client's address, a
// Unix socket, a socket inherited on fd 3; and idle clients that must not delay the exit.

/// What `GET /whoami` answers on `stream`, the request sent on it.
fn whoami_over(mut stream: impl Read + Write) -> Response {
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .expect("send");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) => {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Response::Http(status, body.to_owned())
        }
        None => Response::Failed(text),
    }
}

#[test]
fn whoami_answers_the_clients_address_on_serve_and_on_axum_serve() {
    for name in ["serve", "axum"] {
        let mut server = Server::start_on(name, 0, 5_000);
        let stream = connect(server.addr).expect("connect");
        let me = stream.local_addr().unwrap();
        let response = whoami_over(stream);
        assert_eq!(response.status(), Some(200), "SERVER={name}: {response:?}");
        let Response::Http(_, body) = response else {
            unreachable!()
        };
        assert_eq!(body.trim(), me.to_string(), "SERVER={name}");
        server.signal("TERM");
        let (status, _) = server.wait_exit(IO_TIMEOUT);
        assert_eq!(status.code(), Some(0), "SERVER={name}");
    }
}

#[test]
fn unix_socket_serves_and_drains_a_request_in_flight_like_tcp() {
    use std::os::unix::net::UnixStream;
    for name in ["serve", "axum"] {
        let dir = std::env::temp_dir().join(format!("tower-drain-uds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sock"));
        let addr = format!("unix:{}", path.display());
        let mut server = Server::spawn_with("axum", 200, 5_000, |command| {
            command.env("SERVER", name).env("ADDR", &addr);
        });
        assert_eq!(server.listening, addr, "SERVER={name}");
        let response = whoami_over(UnixStream::connect(&path).unwrap());
        let Response::Http(200, body) = response else {
            panic!("SERVER={name}: {response:?}")
        };
        assert!(body.starts_with("unix pid="), "SERVER={name}: {body}");
        // A slow request sent before SIGTERM is answered in full (it reaches the server
        // within the notice period, which serves it as any other).
        let mut slow = UnixStream::connect(&path).unwrap();
        slow.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        slow.write_all(b"GET /slow?ms=400 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .unwrap();
        server.signal("TERM");
        let mut raw = Vec::new();
        let _ = slow.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "SERVER={name}: {text}");
        let (status, _) = server.wait_exit(IO_TIMEOUT);
        assert_eq!(status.code(), Some(0), "SERVER={name}");
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn socket_inherited_on_fd_3_is_served_instead_of_addr() {
    for name in ["serve", "axum"] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bound = listener.local_addr().unwrap();
        // The socket reaches the child as its stdin; the shell moves it to fd 3 and sets
        // LISTEN_PID to its own pid, which `exec` keeps (what systemd does after its fork).
        let socket = std::os::fd::OwnedFd::from(listener.try_clone().unwrap());
        let mut server = Server::spawn_with("axum", 0, 5_000, |command| {
            let program = command.get_program().to_owned();
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(r#"exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0""#)
                .arg(program)
                .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .env("SERVER", name)
                .env("ADDR", "127.0.0.1:1") // not bound: the inherited socket is served
                .stdin(Stdio::from(socket))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            *command = shell;
        });
        assert_eq!(server.listening, bound.to_string(), "SERVER={name}");
        let response = server.get("/");
        assert_eq!(response.status(), Some(200), "SERVER={name}: {response:?}");
        server.signal("TERM");
        let (status, _) = server.wait_exit(IO_TIMEOUT);
        assert_eq!(status.code(), Some(0), "SERVER={name}");
        // The socket outlives the generation: a client connecting now waits in its queue for
        // the next one (here, this test), instead of being refused.
        let client = connect(bound).expect("queued, not refused");
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }
}

/// The time from SIGTERM to exit of the axum example on `server` (NOTICE_MS=0), with one
/// client connection held open by `client`, made before the signal.
fn exit_time_with_idle_client(server: &str, client: fn(SocketAddr) -> TcpStream) -> Duration {
    let mut process = Server::start_on(server, 0, 10_000);
    let held = client(process.addr);
    let sent = process.signal("TERM");
    let (status, exited) = process.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "SERVER={server}");
    drop(held);
    exited - sent
}

/// Connected, nothing sent: a browser's pre-connection, a balancer's TCP check.
fn silent_client(addr: SocketAddr) -> TcpStream {
    connect(addr).expect("connect")
}

/// One request answered, then idle and never read again: a pooled keep-alive connection.
fn pooled_client(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .expect("send");
    let mut raw = Vec::new();
    let mut buf = [0; 1024];
    while !String::from_utf8_lossy(&raw).contains("hello") {
        let n = stream.read(&mut buf).expect("read");
        assert_ne!(n, 0, "closed before its response");
        raw.extend_from_slice(&buf[..n]);
    }
    stream
}

#[test]
fn idle_clients_do_not_hold_the_exit_of_serve() {
    // Were 1 028 ms (the grace for a first request) and 2 028 ms (the lingering close), against
    // ~25 ms for axum::serve. The bound is far from both, and far above a loaded machine's
    // noise: `scripts/bench-serve.sh` compares the two servers' exits side by side.
    for (kind, client) in [
        ("silent", silent_client as fn(SocketAddr) -> TcpStream),
        ("pooled", pooled_client),
    ] {
        let serve = exit_time_with_idle_client("serve", client);
        let axum = exit_time_with_idle_client("axum", client);
        eprintln!("{kind} client: serve exits in {serve:?}, axum::serve in {axum:?}");
        assert!(
            serve < Duration::from_millis(600),
            "{kind} client: serve took {serve:?} to exit (axum::serve {axum:?})"
        );
    }
}

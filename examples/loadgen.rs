//! Load generator for `scripts/rolling-restart.sh`: steady HTTP/1.1 keep-alive traffic that
//! records the outcome of **every** request and never retries one.
//!
//! ```sh
//! cargo run --release --example loadgen -- --target 127.0.0.1:8080 --connections 8 < control
//! ```
//!
//! Each of `--connections` workers owns one keep-alive connection and sends requests on it one
//! after the other, `--pause-ms` apart. Every fourth worker sends only fast requests (so the
//! load has a high request rate); the others mix
//!
//! - 60 % `GET /` (body must be `hello\n`),
//! - 25 % `GET /slow?ms=200..500` (body must be `slept N ms\n`),
//! - 15 % `GET /stream?chunks=3..8&ms=50..100` (body must be exactly `chunk 1\n` .. `chunk N\n`:
//!   a stream that ends early is a failure even if the connection closed cleanly).
//!
//! Outcomes: `ok` (2xx and the expected body), `non-2xx` (by status), and errors: `connect`
//! (could not reach the load balancer), `closed` (connection closed or reset before the
//! response), `body` (the response body failed or was truncated), `timeout` (no complete
//! answer within `--timeout-ms`). A request that hyper hands back **unsent** because the
//! connection had already closed (after a `Connection: close` response) never reached the
//! network; it is sent again on a new connection and counted under `unsent` for transparency.
//! Nothing else is ever retried: retrying is the load balancer's job.
//!
//! Control on standard input, one command a line: `phase LABEL` closes the current phase
//! and opens a new one (outcomes are counted in the phase in which they are recorded);
//! `stop` or end of input stops sending, waits for requests in flight, prints the table and
//! exits. The last line of output is machine-readable:
//! `TOTAL sent=.. ok=.. non2xx=.. errors=.. unsent=..`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

struct Options {
    target: String,
    connections: usize,
    pause: Duration,
    timeout: Duration,
    label: String,
}

fn usage() -> String {
    "usage: loadgen --target HOST:PORT [--connections N] [--pause-ms MS] [--timeout-ms MS] [--label TEXT]".into()
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        target: String::new(),
        connections: 12,
        pause: Duration::from_millis(2),
        timeout: Duration::from_secs(10),
        label: "run".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|e| format!("{flag}: {v:?} is not a whole number: {e}"))
        };
        match flag.as_str() {
            "--target" => opts.target = value()?,
            "--connections" => opts.connections = number(value()?)?.clamp(1, 1024) as usize,
            "--pause-ms" => opts.pause = Duration::from_millis(number(value()?)?),
            "--timeout-ms" => opts.timeout = Duration::from_millis(number(value()?)?.max(1)),
            "--label" => opts.label = value()?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if opts.target.is_empty() {
        return Err(usage());
    }
    Ok(opts)
}

/// Why a request failed without a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ErrorKind {
    Connect,
    Closed,
    Body,
    Timeout,
}

impl ErrorKind {
    fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Closed => "closed",
            ErrorKind::Body => "body",
            ErrorKind::Timeout => "timeout",
        }
    }
}

enum Outcome {
    Ok,
    Status(StatusCode),
    Error(ErrorKind, String),
}

#[derive(Default)]
struct Phase {
    label: String,
    sent: u64,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    unsent: u64,
    /// The slowest request recorded in the phase, failed or not.
    max_latency: Duration,
    samples: Vec<String>,
}

impl Phase {
    fn non2xx(&self) -> u64 {
        self.statuses.values().sum()
    }
    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
    fn detail(&self) -> String {
        let mut s = String::new();
        for (code, n) in &self.statuses {
            let _ = write!(s, "{code}:{n} ");
        }
        for (kind, n) in &self.errors {
            let _ = write!(s, "{}:{n} ", kind.name());
        }
        s.trim_end().to_string()
    }
    fn add(&mut self, other: &Phase) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.unsent += other.unsent;
        self.max_latency = self.max_latency.max(other.max_latency);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
    }
}

struct Stats {
    start: Instant,
    phases: Vec<Phase>,
}

impl Stats {
    fn record(&mut self, path: &str, outcome: Outcome, latency: Duration) {
        let at = self.start.elapsed().as_secs_f64();
        let phase = self.phases.last_mut().expect("there is always a phase");
        phase.sent += 1;
        phase.max_latency = phase.max_latency.max(latency);
        let sample = match outcome {
            Outcome::Ok => {
                phase.ok += 1;
                None
            }
            Outcome::Status(code) => {
                *phase.statuses.entry(code.as_u16()).or_default() += 1;
                Some(format!("{at:8.3}s {path}: status {code}"))
            }
            Outcome::Error(kind, message) => {
                *phase.errors.entry(kind).or_default() += 1;
                Some(format!("{at:8.3}s {path}: {}: {message}", kind.name()))
            }
        };
        if let Some(sample) = sample {
            if phase.samples.len() < 8 {
                phase.samples.push(sample);
            }
        }
    }
}

/// A tiny deterministic generator, so runs are reproducible without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// A request to send and the body a correct answer has.
fn pick(rng: &mut XorShift, fast_only: bool) -> (String, String) {
    match if fast_only { 0 } else { rng.next() % 100 } {
        0..=59 => ("/".into(), "hello\n".into()),
        60..=84 => {
            let ms = rng.between(200, 500);
            (format!("/slow?ms={ms}"), format!("slept {ms} ms\n"))
        }
        _ => {
            let chunks = rng.between(3, 8);
            let ms = rng.between(50, 100);
            let body = (1..=chunks).map(|i| format!("chunk {i}\n")).collect();
            (format!("/stream?chunks={chunks}&ms={ms}"), body)
        }
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(target: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // Errors surface on the request that was in flight; nothing to add here.
        let _ = conn.await;
    });
    Ok(sender)
}

fn describe(e: &hyper::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Sends one request on `sender` (reconnecting first if needed), reads the whole body and
/// checks it. Returns `None` if the request was never written because the connection was
/// already closing (the caller reconnects and sends it again).
async fn exchange(
    sender: &mut Option<Sender>,
    target: &str,
    path: &str,
    expected: &str,
) -> Option<Outcome> {
    if !matches!(sender, Some(s) if !s.is_closed()) {
        match connect(target).await {
            Ok(s) => *sender = Some(s),
            Err(e) => return Some(Outcome::Error(ErrorKind::Connect, e)),
        }
    }
    let s = sender.as_mut().expect("connected above");
    if s.ready().await.is_err() {
        *sender = None;
        return None;
    }
    let request = Request::get(path)
        .header(hyper::header::HOST, target)
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = match s.try_send_request(request).await {
        Ok(r) => r,
        Err(mut e) => {
            *sender = None;
            if e.take_message().is_some() {
                return None;
            }
            return Some(Outcome::Error(ErrorKind::Closed, describe(e.error())));
        }
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            *sender = None;
            return Some(Outcome::Error(ErrorKind::Body, describe(&e)));
        }
    };
    if !status.is_success() {
        return Some(Outcome::Status(status));
    }
    if body != expected.as_bytes() {
        return Some(Outcome::Error(
            ErrorKind::Body,
            format!(
                "{status} with {} bytes, expected {} bytes (truncated or wrong body)",
                body.len(),
                expected.len()
            ),
        ));
    }
    Some(Outcome::Ok)
}

async fn worker(id: u64, opts: Arc<Options>, stats: Arc<Mutex<Stats>>, stop: Arc<AtomicBool>) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1000_0000_01B3));
    let mut sender: Option<Sender> = None;
    while !stop.load(Ordering::Relaxed) {
        let (path, expected) = pick(&mut rng, id % 4 == 0);
        let started = Instant::now();
        let outcome = loop {
            let attempt = exchange(&mut sender, &opts.target, &path, &expected);
            match tokio::time::timeout(opts.timeout, attempt).await {
                Ok(Some(outcome)) => break outcome,
                Ok(None) => stats.lock().unwrap().phases.last_mut().unwrap().unsent += 1,
                Err(_) => {
                    sender = None;
                    break Outcome::Error(ErrorKind::Timeout, format!("after {:?}", opts.timeout));
                }
            }
        };
        let failed_to_connect = matches!(outcome, Outcome::Error(ErrorKind::Connect, _));
        stats
            .lock()
            .unwrap()
            .record(&path, outcome, started.elapsed());
        if failed_to_connect {
            // Do not spin on a load balancer that is not there.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(opts.pause).await;
    }
}

fn report(opts: &Options, stats: &Stats) -> (String, Phase) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  detail",
        opts.label, "sent", "2xx", "non-2xx", "errors", "unsent", "max ms"
    );
    let mut total = Phase {
        label: "total".into(),
        ..Phase::default()
    };
    for phase in &stats.phases {
        total.add(phase);
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  {}",
            phase.label,
            phase.sent,
            phase.ok,
            phase.non2xx(),
            phase.errors(),
            phase.unsent,
            phase.max_latency.as_millis(),
            phase.detail()
        );
    }
    let _ = writeln!(
        out,
        "{:<22} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  {}",
        total.label,
        total.sent,
        total.ok,
        total.non2xx(),
        total.errors(),
        total.unsent,
        total.max_latency.as_millis(),
        total.detail()
    );
    (out, total)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let stats = Arc::new(Mutex::new(Stats {
        start: Instant::now(),
        phases: vec![Phase {
            label: "warm-up".into(),
            ..Phase::default()
        }],
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..opts.connections as u64)
        .map(|id| tokio::spawn(worker(id, opts.clone(), stats.clone(), stop.clone())))
        .collect();

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let line = line.trim();
                if let Some(label) = line.strip_prefix("phase ") {
                    stats.lock().unwrap().phases.push(Phase {
                        label: label.trim().to_string(),
                        ..Phase::default()
                    });
                } else if line == "stop" {
                    break;
                } else if !line.is_empty() {
                    eprintln!("loadgen: ignoring unknown command {line:?}");
                }
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("loadgen: reading commands: {e}");
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Every request has its own timeout, so this ends; the extra bound is belt and braces.
    let _ = tokio::time::timeout(opts.timeout * 2, async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await;

    let stats = stats.lock().unwrap();
    for phase in &stats.phases {
        for sample in &phase.samples {
            eprintln!("loadgen [{}] {sample}", phase.label);
        }
    }
    let (table, total) = report(&opts, &stats);
    print!("{table}");
    println!(
        "TOTAL sent={} ok={} non2xx={} errors={} unsent={}",
        total.sent,
        total.ok,
        total.non2xx(),
        total.errors(),
        total.unsent
    );
    std::process::ExitCode::SUCCESS
}

//! Load generator for `scripts/rolling-restart.sh`: steady traffic that records the outcome of
//! **every** request and retries only what the protocol proves was never processed.
//!
//! ```sh
//! cargo run --release -p tower-drain-harness --bin loadgen -- --target 127.0.0.1:8080 --client h2 --load fast < control
//! ```
//!
//! Clients (`--client`, one module each under `harness/src/load/`):
//!
//! - `h1` (default): one HTTP/1.1 keep-alive connection per worker, one request at a time;
//!   resends only a request hyper hands back unsent (the connection had already closed).
//! - `h2`: long-lived HTTP/2 prior-knowledge connections with `--streams` concurrent streams
//!   each; reconnects after `GOAWAY` and retries only `REFUSED_STREAM` and streams above the
//!   `GOAWAY`'s last-stream-id, once, on a new connection, like gRPC's transparent retry.
//! - `grpc`: tonic channels with `--streams` concurrent callers each, calling `demo.Echo`
//!   (`examples/support/echo.rs`) with no retry policy, like a tonic client as shipped.
//!
//! TLS (`--ca PATH`): every client connects over TLS, trusting the PEM certificates in `PATH`
//! and checking the server's certificate for `--server-name` (default `localhost`); ALPN
//! `http/1.1` for `h1`, `h2` for `h2` and `grpc` (`harness/src/load/tls.rs`). The `GOAWAY`
//! timing and the refused streams are read from the decrypted HTTP/2, as over cleartext.
//!
//! Loads (`--load`): `mixed` (default) draws 60 % fast, 25 % slow (200..500 ms) and 15 %
//! streaming (3..8 chunks, 50..100 ms apart) requests, `--pause-ms` apart (default 2); `fast`
//! sends only fast requests (`GET /`, or a unary echo) back to back, on more connections and
//! streams: over 20 times the request rate (the rate is printed). Defaults: h1 12 connections
//! (mixed) or 32 (fast); h2 and grpc 8 × 4 streams (mixed) or 16 × 16 (fast).
//!
//! Every answer is checked (status, and the exact body or messages: a stream that ends early is
//! a failure even if it ended cleanly). Outcomes: `ok`, `non-2xx` by status, and `errors` by
//! kind: `connect`, `closed`, `body`, `timeout` (no complete answer within `--timeout-ms`,
//! retries included), `reset(REASON)`, or a gRPC code and message. `lost` = non-2xx + errors.
//!
//! Control on standard input, one command a line: `phase LABEL` closes the current phase and
//! opens a new one (outcomes are counted in the phase in which they are recorded); `signal
//! EPOCH_US` says that `SIGTERM` was sent at that CLOCK_REALTIME instant in microseconds
//! (bash's `${EPOCHREALTIME/./}`; now, without a number); `stop` or end of input stops
//! sending, waits for requests in flight, prints the table and exits.
//!
//! With `--client h2` or `grpc`, every connection's reads are watched for the server's
//! `GOAWAY` frames (`harness/src/load/goaway.rs`): after the table, one row per `signal`
//! gives how many connections were told to go away and how long after `SIGTERM` (min, median,
//! max), then `GOAWAY told=.. min_ms=.. median_ms=.. max_ms=.. final_median_ms=.. untold=..
//! later=..` for all signals, and `REFUSED streams=.. reset=.. goaway=.. goaway_after_pong=..`:
//! the streams the other side refused over the whole run (`RST_STREAM` with `REFUSED_STREAM`,
//! or opened above a `GOAWAY`'s last-stream-id; of those, the ones the client wrote after its
//! acknowledgement of the server's shutdown `PING`), counted on the wire whether the client
//! retried them or not.
//! The last line of output is machine-readable:
//! `TOTAL sent=.. ok=.. non2xx=.. errors=.. unsent=.. retried=.. lost=.. secs=.. rate=..`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use load::stats::Stats;
use load::{Ctx, Load};

use tower_drain_harness::load;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    H1,
    H2,
    Grpc,
}

struct Options {
    target: String,
    client: ClientKind,
    load: Load,
    connections: Option<usize>,
    streams: Option<usize>,
    pause: Option<Duration>,
    timeout: Duration,
    label: String,
    /// `--client-retry`: gRPC channels behind `TransparentRetryLayer`.
    retry: Option<tower_drain::client::TransparentRetryLayer>,
    /// `--ca`: the certificates to trust; TLS to the target.
    ca: Option<std::path::PathBuf>,
    /// `--server-name`: the name asked for and checked over TLS.
    server_name: String,
}

fn usage() -> String {
    "usage: loadgen --target HOST:PORT [--client h1|h2|grpc] [--load mixed|fast] [--connections N] \
     [--streams N] [--pause-ms MS] [--timeout-ms MS] [--label TEXT] [--client-retry] \
     [--ca PATH] [--server-name NAME]"
        .into()
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        target: String::new(),
        client: ClientKind::H1,
        load: Load::Mixed,
        connections: None,
        streams: None,
        pause: None,
        timeout: Duration::from_secs(10),
        label: "run".into(),
        retry: None,
        ca: None,
        server_name: "localhost".into(),
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
            "--client" => {
                opts.client = match value()?.as_str() {
                    "h1" => ClientKind::H1,
                    "h2" => ClientKind::H2,
                    "grpc" => ClientKind::Grpc,
                    other => return Err(format!("--client must be h1, h2 or grpc, got {other:?}")),
                }
            }
            "--load" => {
                opts.load = match value()?.as_str() {
                    "mixed" => Load::Mixed,
                    "fast" => Load::Fast,
                    other => return Err(format!("--load must be mixed or fast, got {other:?}")),
                }
            }
            "--connections" => opts.connections = Some(number(value()?)?.clamp(1, 1024) as usize),
            "--streams" => opts.streams = Some(number(value()?)?.clamp(1, 256) as usize),
            "--pause-ms" => opts.pause = Some(Duration::from_millis(number(value()?)?)),
            "--timeout-ms" => opts.timeout = Duration::from_millis(number(value()?)?.max(1)),
            "--label" => opts.label = value()?,
            "--client-retry" => {
                opts.retry = Some(tower_drain::client::TransparentRetryLayer::default())
            }
            "--ca" => opts.ca = Some(value()?.into()),
            "--server-name" => opts.server_name = value()?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if opts.target.is_empty() {
        return Err(usage());
    }
    if opts.retry.is_some() && opts.client != ClientKind::Grpc {
        return Err("--client-retry wraps gRPC channels: use it with --client grpc".into());
    }
    if opts.client == ClientKind::H1 && opts.streams.is_some_and(|s| s > 1) {
        return Err("--client h1 sends one request at a time per connection: no --streams".into());
    }
    Ok(opts)
}

/// Connections, streams per connection and pause for the options, defaults filled in.
fn shape(opts: &Options) -> (usize, usize, Duration) {
    let (connections, streams) = match (opts.client, opts.load) {
        (ClientKind::H1, Load::Mixed) => (12, 1),
        (ClientKind::H1, Load::Fast) => (32, 1),
        (_, Load::Mixed) => (8, 4),
        (_, Load::Fast) => (16, 16),
    };
    let pause = match opts.load {
        Load::Mixed => Duration::from_millis(2),
        Load::Fast => Duration::ZERO,
    };
    (
        opts.connections.unwrap_or(connections),
        opts.streams.unwrap_or(streams),
        opts.pause.unwrap_or(pause),
    )
}

/// Starts every worker: `connections` connections (or channels), `streams` workers on each.
fn spawn_workers(
    opts: &Options,
    ctx: &Arc<Ctx>,
    connections: usize,
    streams: usize,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut workers = Vec::new();
    let tls = ctx.tls.as_ref();
    for c in 0..connections {
        let h2_connection = load::http2::Connection::new(&opts.target, tls, &ctx.goaways);
        let channel = match opts.client {
            ClientKind::Grpc => Some(load::grpc::channel(
                &opts.target,
                tls,
                &ctx.goaways,
                opts.retry.as_ref(),
            )?),
            _ => None,
        };
        for s in 0..streams {
            let id = (c * streams + s) as u64;
            let ctx = Arc::clone(ctx);
            workers.push(match opts.client {
                ClientKind::H1 => tokio::spawn(async move {
                    ctx.run(id, &mut load::http1::Http1::default()).await;
                }),
                ClientKind::H2 => {
                    let mut client = load::http2::Http2 {
                        connection: Arc::clone(&h2_connection),
                    };
                    tokio::spawn(async move { ctx.run(id, &mut client).await })
                }
                ClientKind::Grpc => {
                    let mut client = load::grpc::Grpc::new(channel.clone().expect("made above"));
                    tokio::spawn(async move { ctx.run(id, &mut client).await })
                }
            });
        }
    }
    Ok(workers)
}

/// Reads control commands until `stop` or the end of input.
async fn control(ctx: &Ctx) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let line = line.trim();
                if let Some(label) = line.strip_prefix("phase ") {
                    let phase = load::stats::Phase::new(label.trim());
                    ctx.stats.lock().unwrap().phases.push(phase);
                } else if line == "signal" || line.starts_with("signal ") {
                    let at = match line["signal".len()..].trim() {
                        "" => Some(load::goaway::now_us()),
                        at => at.parse().ok(),
                    };
                    let stats = ctx.stats.lock().unwrap();
                    let phase = &stats.phases.last().expect("there is always a phase").label;
                    match at {
                        Some(at) => ctx.goaways.signal(phase, at),
                        None => eprintln!("loadgen: `signal` takes microseconds: {line:?}"),
                    }
                } else if line == "stop" {
                    return;
                } else if !line.is_empty() {
                    eprintln!("loadgen: ignoring unknown command {line:?}");
                }
            }
            Ok(None) => return,
            Err(e) => {
                eprintln!("loadgen: reading commands: {e}");
                return;
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (connections, streams, pause) = shape(&opts);
    let alpn: &[u8] = match opts.client {
        ClientKind::H1 => b"http/1.1",
        ClientKind::H2 | ClientKind::Grpc => b"h2",
    };
    let tls = match &opts.ca {
        None => None,
        Some(ca) => match load::tls::Tls::new(ca, &opts.server_name, alpn) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    let ctx = Arc::new(Ctx {
        target: opts.target.clone(),
        tls,
        load: opts.load,
        pause,
        timeout: opts.timeout,
        stats: Mutex::new(Stats::new()),
        goaways: Arc::default(),
        stop: AtomicBool::new(false),
    });
    let workers = match spawn_workers(&opts, &ctx, connections, streams) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let started = Instant::now();

    control(&ctx).await;
    ctx.stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    // Every request has its own timeout, so this ends; the extra bound is belt and braces.
    let _ = tokio::time::timeout(opts.timeout * 2, async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await;

    let stats = ctx.stats.lock().unwrap();
    let label = format!(
        "{} {:?}/{:?} {connections}x{streams}",
        opts.label, opts.client, opts.load
    );
    let (table, samples, total) = stats.report(&label);
    eprint!("{samples}");
    print!("{table}");
    if opts.client != ClientKind::H1 {
        print!("{}", ctx.goaways.report());
        let refused = ctx.goaways.refused();
        println!(
            "REFUSED streams={} reset={} goaway={} goaway_after_pong={}",
            refused.total(),
            refused.reset,
            refused.goaway,
            refused.goaway_after_pong
        );
    }
    if let Some(layer) = &opts.retry {
        println!("CLIENT-RETRY {:?}", layer.stats());
    }
    println!(
        "TOTAL sent={} ok={} non2xx={} errors={} unsent={} retried={} lost={} secs={secs:.1} rate={:.0}",
        total.sent,
        total.ok,
        total.non2xx(),
        total.errors(),
        total.unsent,
        total.retried(),
        total.lost(),
        total.sent as f64 / secs.max(0.001),
    );
    std::process::ExitCode::SUCCESS
}

//! A supervisor that keeps one listening socket across generations of a server, as systemd
//! does with a `.socket` unit, or a process manager that hands the socket over: the restart
//! proof of `scripts/single-host-restart.sh`.
//!
//! ```sh
//! supervisor [--addr HOST:PORT] [--restarts N] [--interval-ms MS] [--ready-timeout-ms MS] \
//!            [--stop-timeout-ms MS] [--stop-first] [--nonblocking] -- COMMAND [ARG..]
//! ```
//!
//! It binds one TCP socket (`--addr`, default `127.0.0.1:0`; backlog 1024,
//! `tower_drain::serve::bind`), never accepts on it, and keeps it open from the first
//! generation to the last. Each generation of COMMAND gets the socket on fd 3 with
//! `LISTEN_FDS=1`, `LISTEN_FDNAMES=http` and `LISTEN_PID` set to its own pid
//! (`generation.rs`). Like systemd, it clears `O_NONBLOCK` on the socket before each start
//! (`NonBlocking=no`, systemd's default), or sets it with `--nonblocking` (`NonBlocking=yes`);
//! the flag is shared by every process holding the socket, generations still running included.
//! The sequence:
//!
//! 1. start generation 0 and wait for its `listening on` line on standard output;
//! 2. `--restarts` times (default 6), once the newest generation has served alone for
//!    `--interval-ms` (default 2000) and the one before it has exited: start generation k+1 on
//!    the same socket, wait for its `listening on`, send `SIGTERM` to generation k, and record
//!    generation k's exit code and its time from `SIGTERM` to exit (past `--stop-timeout-ms`,
//!    default 30000: `SIGKILL`, as systemd does after `TimeoutStopSec`).
//!    With `--stop-first`, each restart stops generation k before it starts k+1, as
//!    `systemctl restart` does: no overlap, and the socket's queue holds the connections that
//!    arrive in between;
//! 3. print `restarts done`, keep the last generation until standard input ends or reads
//!    `stop`, then stop it the same way.
//!
//! `SIGTERM` or `SIGINT` to the supervisor stops what runs and ends the sequence. A generation
//! that exits by itself, or starts without printing `listening on` within
//! `--ready-timeout-ms` (default 30000), ends it too, as a failure.
//!
//! Standard output, one event a line: `socket ADDR`, `ready gen=K pid=P ms=T addr=A`,
//! `stopping gen=K pid=P` (as the `SIGTERM` goes), `exit gen=K pid=P code=C stop_ms=T` (or `signal=N`, and `killed` after a `SIGKILL`),
//! `restarts done`; then one `GENERATION gen=K pid=P ready_ms=T code=C stop_ms=T` per
//! generation and, last, `SUPERVISOR generations=.. restarts=.. nonzero_exits=.. max_stop_ms=..
//! failure=..`. The generations' own output goes to standard error, prefixed `gen K | `. Exit
//! status: 0 if every generation started and exited with code 0, 1 otherwise, 2 on bad
//! arguments.

#[path = "supervisor/generation.rs"]
mod generation;

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{signal, SignalKind};

use generation::{Exit, Generation};

struct Options {
    addr: String,
    restarts: usize,
    interval: Duration,
    ready_timeout: Duration,
    stop_timeout: Duration,
    stop_first: bool,
    nonblocking: bool,
    command: Vec<String>,
}

fn usage() -> String {
    "usage: supervisor [--addr HOST:PORT] [--restarts N] [--interval-ms MS] \
     [--ready-timeout-ms MS] [--stop-timeout-ms MS] [--stop-first] [--nonblocking] -- COMMAND [ARG..]"
        .into()
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        addr: "127.0.0.1:0".into(),
        restarts: 6,
        interval: Duration::from_millis(2000),
        ready_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(30),
        stop_first: false,
        nonblocking: false,
        command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--" {
            opts.command = args.by_ref().collect();
            break;
        }
        if flag == "--stop-first" {
            opts.stop_first = true;
            continue;
        }
        if flag == "--nonblocking" {
            opts.nonblocking = true;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag}: {value:?} is not a whole number: {e}"))
        };
        match flag.as_str() {
            "--addr" => opts.addr = value.clone(),
            "--restarts" => opts.restarts = number()? as usize,
            "--interval-ms" => opts.interval = Duration::from_millis(number()?),
            "--ready-timeout-ms" => opts.ready_timeout = Duration::from_millis(number()?.max(1)),
            "--stop-timeout-ms" => opts.stop_timeout = Duration::from_millis(number()?.max(1)),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if opts.command.is_empty() {
        return Err(format!("no command after `--`\n{}", usage()));
    }
    Ok(opts)
}

/// A generation that ran: how it started and how it ended.
struct Record {
    number: usize,
    pid: u32,
    ready_after: Duration,
    exit: Exit,
}

impl Record {
    fn new((generation, exit): (Generation, Exit)) -> Record {
        let record = Record {
            number: generation.number,
            pid: generation.pid,
            ready_after: generation.ready_after,
            exit,
        };
        println!(
            "exit gen={} pid={} {} stop_ms={}{}",
            record.number,
            record.pid,
            record.exit.describe(),
            record.exit.after.as_millis(),
            if record.exit.killed { " killed" } else { "" }
        );
        record
    }
}

/// What the sequence did: every generation that ran, and what ended it early, if anything.
struct Run {
    records: Vec<Record>,
    restarts: usize,
    failure: Option<String>,
}

/// Why the sequence stops waiting.
enum Interrupt {
    /// `SIGTERM` or `SIGINT` to the supervisor.
    Signal,
    /// The serving generation exited by itself.
    Exited(Exit),
}

/// The supervisor's own signals.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn ready(generation: &Generation) {
    println!(
        "ready gen={} pid={} ms={} addr={}",
        generation.number,
        generation.pid,
        generation.ready_after.as_millis(),
        generation.address
    );
}

fn stopping_now(generation: &Generation) {
    println!("stopping gen={} pid={}", generation.number, generation.pid);
}

/// Waits `interval` while `current` serves; what cut the wait short, if anything.
async fn serve_for(
    interval: Duration,
    current: &mut Generation,
    signals: &mut Signals,
) -> Option<Interrupt> {
    tokio::select! {
        () = tokio::time::sleep(interval) => None,
        exit = current.exited() => Some(Interrupt::Exited(exit)),
        () = signals.recv() => Some(Interrupt::Signal),
    }
}

/// Waits for `stop` or the end of standard input while `current` serves.
async fn serve_until_stop(current: &mut Generation, signals: &mut Signals) -> Option<Interrupt> {
    let commands = async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "stop" {
                return;
            }
        }
    };
    tokio::select! {
        () = commands => None,
        exit = current.exited() => Some(Interrupt::Exited(exit)),
        () = signals.recv() => Some(Interrupt::Signal),
    }
}

/// The whole sequence: generation 0, the restarts, the last generation's stop.
async fn run(opts: &Options, socket: &std::net::TcpListener, signals: &mut Signals) -> Run {
    let start = |number| {
        Generation::start(
            number,
            &opts.command,
            socket,
            opts.nonblocking,
            opts.ready_timeout,
        )
    };
    let mut records = Vec::new();
    let mut current = match start(0).await {
        Ok(generation) => generation,
        Err(failure) => {
            return Run {
                records,
                restarts: 0,
                failure: Some(failure),
            }
        }
    };
    ready(&current);

    let mut failure = None;
    let mut restarts = 0;
    let mut stopping = None;
    for number in 1..=opts.restarts {
        match serve_for(opts.interval, &mut current, signals).await {
            None => {}
            Some(Interrupt::Signal) => {
                failure = Some("interrupted by a signal".to_string());
                break;
            }
            Some(Interrupt::Exited(exit)) => {
                records.push(Record::new((current, exit)));
                if let Some(stopping) = stopping {
                    records.push(Record::new(stopped(stopping).await));
                }
                return Run {
                    records,
                    restarts,
                    failure: Some("a serving generation exited by itself".into()),
                };
            }
        }
        if opts.stop_first {
            // As `systemctl restart` does: the old generation is gone before the new one
            // starts, and the socket's queue holds what arrives in between.
            stopping_now(&current);
            records.push(Record::new(current.stop(opts.stop_timeout).await));
            current = match start(number).await {
                Ok(generation) => generation,
                Err(failure) => {
                    return Run {
                        records,
                        restarts,
                        failure: Some(failure),
                    }
                }
            };
            ready(&current);
            restarts += 1;
            continue;
        }
        // The generation before must be gone before the next one starts (one stop at a time).
        if let Some(stopping) = stopping.take() {
            records.push(Record::new(stopped(stopping).await));
        }
        let next = match start(number).await {
            Ok(generation) => generation,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        ready(&next);
        let previous = std::mem::replace(&mut current, next);
        stopping_now(&previous);
        stopping = Some(tokio::spawn(previous.stop(opts.stop_timeout)));
        restarts += 1;
    }
    if let Some(stopping) = stopping.take() {
        records.push(Record::new(stopped(stopping).await));
    }
    if failure.is_none() {
        println!("restarts done");
        match serve_until_stop(&mut current, signals).await {
            None | Some(Interrupt::Signal) => {}
            Some(Interrupt::Exited(exit)) => {
                records.push(Record::new((current, exit)));
                return Run {
                    records,
                    restarts,
                    failure: Some("the last generation exited by itself".into()),
                };
            }
        }
    }
    stopping_now(&current);
    records.push(Record::new(current.stop(opts.stop_timeout).await));
    Run {
        records,
        restarts,
        failure,
    }
}

/// The result of a stop spawned earlier.
async fn stopped(task: tokio::task::JoinHandle<(Generation, Exit)>) -> (Generation, Exit) {
    task.await.expect("a stop task does not panic")
}

/// Prints one line per generation and the summary; the exit status.
fn report(run: &Run) -> ExitCode {
    for r in &run.records {
        println!(
            "GENERATION gen={} pid={} ready_ms={} {} stop_ms={}{}",
            r.number,
            r.pid,
            r.ready_after.as_millis(),
            r.exit.describe(),
            r.exit.after.as_millis(),
            if r.exit.killed { " killed" } else { "" }
        );
    }
    let nonzero = run.records.iter().filter(|r| !r.exit.clean()).count();
    let max_stop = run.records.iter().map(|r| r.exit.after).max();
    println!(
        "SUPERVISOR generations={} restarts={} nonzero_exits={nonzero} max_stop_ms={} failure={}",
        run.records.len(),
        run.restarts,
        max_stop.unwrap_or_default().as_millis(),
        run.failure.as_deref().unwrap_or("none").replace(' ', "_"),
    );
    if nonzero == 0 && run.failure.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = match bind(&opts.addr).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("supervisor: binding {}: {e}", opts.addr);
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("supervisor: signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match socket.local_addr() {
        Ok(addr) => println!("socket {addr}"),
        Err(e) => {
            eprintln!("supervisor: local_addr: {e}");
            return ExitCode::FAILURE;
        }
    }
    let run = run(&opts, &socket, &mut signals).await;
    if let Some(failure) = &run.failure {
        eprintln!("supervisor: {failure}");
    }
    report(&run)
}

/// The kept socket: bound once, with the backlog `serve::bind` gives (1024).
async fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    tower_drain::serve::bind(addr).await?.into_std()
}

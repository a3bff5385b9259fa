//! Configuration from the environment and logging, shared by the shutdown examples
//! (`axum`, `tonic`, `hyper`, `sse`). Bad values are reported as errors, never panics.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use tracing_subscriber::EnvFilter;

/// The longest duration accepted from the environment: one hour.
const MAX_MS: u64 = 3_600_000;

/// `ADDR` as `host:port` (port 0 picks a free port), or `default`.
pub fn addr(default: SocketAddr) -> Result<SocketAddr, String> {
    match std::env::var("ADDR") {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("ADDR: {e}")),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("ADDR must be host:port, like {default}, got {v:?}: {e}")),
    }
}

/// The environment variable `name` as whole milliseconds from `min` to one hour, or `default`.
pub fn millis(name: &str, default: u64, min: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(Duration::from_millis(default)),
        Err(e) => Err(format!("{name}: {e}")),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (min..=MAX_MS).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| {
                format!("{name} must be a whole number of milliseconds from {min} to {MAX_MS}, got {v:?}")
            }),
    }
}

/// `NOTICE_MS` (default 1000, may be 0) and `DRAIN_TIMEOUT_MS` (default 10000, at least 1).
pub fn timings() -> Result<(Duration, Duration), String> {
    Ok((
        millis("NOTICE_MS", 1_000, 0)?,
        millis("DRAIN_TIMEOUT_MS", 10_000, 1)?,
    ))
}

/// Logs to stderr, `RUST_LOG` or `info`, with colours only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
}

/// Prints `listening on ADDR` on stdout and flushes it: scripts and tests wait for this line.
pub fn announce_listening(addr: SocketAddr) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}");
    let _ = stdout.flush();
}

/// The listen backlog. tokio's `TcpListener::bind` uses 128: when another instance restarts,
/// the load balancer moves its load here at once, a new connection per request it moves, and
/// past the backlog the kernel drops the `SYN`s (see tower_drain's `serve` docs, "The listen
/// backlog"). nginx listens with 511.
pub const BACKLOG: u32 = 1024;

/// Binds `addr` with a backlog of [`BACKLOG`] and announces the bound address (see
/// [`announce_listening`]).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind` does: a restart can listen on the port again at once.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    let listener = listen().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    announce_listening(bound);
    Ok(listener)
}

/// What every shutdown example reads from the environment.
pub struct Settings {
    /// `ADDR`.
    pub addr: SocketAddr,
    /// `NOTICE_MS`.
    pub notice: Duration,
    /// `DRAIN_TIMEOUT_MS`.
    pub drain_timeout: Duration,
}

/// The `main` of a shutdown example: logging, then the settings (bad ones exit with code 2 and
/// a message), then `serve` (an error exits with code 1 and a message).
pub async fn run<F, Fut>(name: &str, default_addr: SocketAddr, serve: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = Result<ExitCode, String>>,
{
    init_tracing();
    let settings = addr(default_addr).and_then(|addr| {
        let (notice, drain_timeout) = timings()?;
        Ok(Settings {
            addr,
            notice,
            drain_timeout,
        })
    });
    let settings = match settings {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("{name}: {message}");
            return ExitCode::from(2);
        }
    };
    serve(settings).await.unwrap_or_else(|message| {
        eprintln!("{name}: {message}");
        ExitCode::FAILURE
    })
}

/// Which server runs an example's app (`SERVER`).
#[allow(dead_code)] // used by the examples that offer the choice (axum, tonic)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// `tower_drain::serve` (the default): tells connections to leave during the notice.
    Serve,
    /// The framework's own server with the layer: says goodbye at the drain only.
    Framework,
}

/// `SERVER`: `serve` (default), or `framework` / the framework's name (`axum`, `tonic`).
#[allow(dead_code)] // used by the examples that offer the choice (axum, tonic)
pub fn server(framework: &str) -> Result<Server, String> {
    match std::env::var("SERVER") {
        Err(std::env::VarError::NotPresent) => Ok(Server::Serve),
        Ok(v) if v == "serve" => Ok(Server::Serve),
        Ok(v) if v == "framework" || v == framework => Ok(Server::Framework),
        Ok(v) => Err(format!(
            "SERVER must be `serve` or `{framework}` (or `framework`), got {v:?}"
        )),
        Err(e) => Err(format!("SERVER: {e}")),
    }
}

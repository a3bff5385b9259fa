//! Configuration from the environment and logging, shared by the shutdown examples
//! (`axum`, `tonic`, `hyper`, `sse`). Bad values are reported as errors, never panics.

use std::net::SocketAddr;
use std::time::Duration;

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

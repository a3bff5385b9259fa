//! What the tests and scripts start the shutdown examples (`axum`, `tonic`, `hyper`, `sse`)
//! with: settings from the environment, and logging. A bad value exits with code 2 and a
//! message naming the variable, never a panic. The harness's control servers share `addr`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// The longest duration accepted from the environment: one hour.
const MAX_MS: u64 = 3_600_000;

/// What every shutdown example reads from the environment.
pub struct Settings {
    /// `ADDR`: `host:port` (port 0 picks a free port), or `unix:/path/to.sock` where the
    /// example takes a Unix domain socket.
    pub addr: Addr,
    /// `NOTICE_MS`: the notice period, default 1000 ms, may be 0.
    pub notice: Duration,
    /// `DRAIN_TIMEOUT_MS`: the drain deadline, default 10000 ms, at least 1.
    pub drain_timeout: Duration,
    /// `TCP_NODELAY`: `1` (default) or `0`, for every server the example runs, so that
    /// `SERVER=serve` and the framework's server are compared with the same socket options.
    #[allow(dead_code)] // used by the examples that offer the choice (axum)
    pub tcp_nodelay: bool,
}

/// Where an example listens (`ADDR`).
#[derive(Clone, Debug)]
pub enum Addr {
    /// `host:port`.
    Tcp(SocketAddr),
    /// `unix:/path/to.sock`.
    #[allow(dead_code)] // only the axum example takes a Unix socket
    Unix(PathBuf),
}

impl Addr {
    /// The TCP address, for the examples that listen on TCP only; exits with code 2 on a Unix
    /// socket path.
    #[allow(dead_code)] // used by the examples that listen on TCP only
    pub fn tcp(&self) -> SocketAddr {
        match self {
            Addr::Tcp(addr) => *addr,
            Addr::Unix(path) => exit_bad_setting(&format!(
                "ADDR must be host:port for this example, got unix:{}",
                path.display()
            )),
        }
    }
}

impl Settings {
    /// `ADDR` (default `127.0.0.1:<default_port>`), `NOTICE_MS` and `DRAIN_TIMEOUT_MS`; exits
    /// with code 2 and a message on a bad value.
    pub fn from_env(default_port: u16) -> Self {
        let read = || {
            Ok::<_, String>(Self {
                addr: listen_addr(SocketAddr::from(([127, 0, 0, 1], default_port)))?,
                notice: millis("NOTICE_MS", 1_000, 0)?,
                drain_timeout: millis("DRAIN_TIMEOUT_MS", 10_000, 1)?,
                tcp_nodelay: flag("TCP_NODELAY", true)?,
            })
        };
        read().unwrap_or_else(|message| exit_bad_setting(&message))
    }
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

/// `SERVER`: `serve` (default), or `framework` / the framework's name (`axum`, `tonic`); exits
/// with code 2 and a message on another value.
#[allow(dead_code)] // used by the examples that offer the choice (axum, tonic)
pub fn server(framework: &str) -> Server {
    match std::env::var("SERVER") {
        Err(std::env::VarError::NotPresent) => Server::Serve,
        Ok(v) if v == "serve" => Server::Serve,
        Ok(v) if v == "framework" || v == framework => Server::Framework,
        Ok(v) => exit_bad_setting(&format!(
            "SERVER must be `serve` or `{framework}` (or `framework`), got {v:?}"
        )),
        Err(e) => exit_bad_setting(&format!("SERVER: {e}")),
    }
}

/// `TLS_CERT` and `TLS_KEY`: the PEM files (certificate chain, private key) to serve TLS with,
/// both or neither, on whichever server `SERVER` picks; exits with code 2 and a message when
/// only one is set.
#[allow(dead_code)] // used by the examples that serve TLS (axum, tonic)
pub fn tls_files() -> Option<(PathBuf, PathBuf)> {
    let path = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (path("TLS_CERT"), path("TLS_KEY")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => exit_bad_setting("TLS_CERT and TLS_KEY go together: set both or neither"),
    }
}

/// Logs to stderr, `RUST_LOG` or `info`, with colours only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
}

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

/// `ADDR` as `host:port` or `unix:/path`, or `default`.
pub fn listen_addr(default: SocketAddr) -> Result<Addr, String> {
    match std::env::var("ADDR") {
        Ok(v) if v.starts_with("unix:") => {
            let path = &v["unix:".len()..];
            if path.is_empty() {
                return Err("ADDR=unix: needs a path, like unix:/tmp/app.sock".into());
            }
            Ok(Addr::Unix(PathBuf::from(path)))
        }
        _ => addr(default).map(Addr::Tcp),
    }
}

/// The environment variable `name` as `1`/`true` or `0`/`false`, or `default`.
fn flag(name: &str, default: bool) -> Result<bool, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{name}: {e}")),
        Ok(v) => match v.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(format!("{name} must be 1 or 0, got {v:?}")),
        },
    }
}

/// The environment variable `name` as whole milliseconds from `min` to one hour, or `default`.
fn millis(name: &str, default: u64, min: u64) -> Result<Duration, String> {
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

/// Prints `<program>: <message>` on stderr and exits with code 2.
fn exit_bad_setting(message: &str) -> ! {
    let program = std::env::args().next().unwrap_or_default();
    let program = std::path::Path::new(&program)
        .file_stem()
        .map_or("example".into(), |stem| stem.to_string_lossy());
    eprintln!("{program}: {message}");
    std::process::exit(2)
}

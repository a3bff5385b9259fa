//! The full production pattern: an axum app behind `DrainLayer`, served by tower-drain's
//! `serve`, on the `Shutdown` sequence.
//!
//! ```sh
//! cargo run --all-features --example axum   # then Ctrl-C, or `kill -TERM <pid>`
//! ADDR=0.0.0.0:8080 NOTICE_MS=5000 DRAIN_TIMEOUT_MS=15000 cargo run --all-features --example axum
//! ```
//!
//! On `SIGTERM` (or Ctrl-C): `/readyz` answers `503` at once and `serve` tells every connection
//! to leave (HTTP/2 `GOAWAY`, HTTP/1.1 `Connection: close`); through the notice period the app
//! still serves; then the drain (the requests in flight finish, to the last byte), the worker
//! stops, the cleanup hooks run (the pool, registered first, last), the report is logged and
//! the process exits with its code: 0 clean, 1 after a deadline, 130/143 when a second signal
//! forced the exit.
//!
//! Settings (`support/env.rs`; a bad value exits with code 2): `ADDR` (default
//! `127.0.0.1:3000`), `NOTICE_MS` (default 1000), `DRAIN_TIMEOUT_MS` (default 10000), `SERVER`:
//! `serve` (default) or `axum` (`framework`), `axum::serve(..).with_graceful_shutdown(..)`,
//! which says goodbye to its connections only at the drain. Routes (`support/routes.rs`):
//! `GET /`, `/slow?ms=N`, `/stream?chunks=N&ms=M`, `/bytes?n=N`, and `GET /whoami` (the
//! client's `ip:port` as axum's `ConnectInfo<SocketAddr>` sees it); the layer answers
//! `/readyz` and `/livez`.
//!
//! Where it listens: `ADDR=host:port`, or `ADDR=unix:/path/to.sock` (a Unix domain socket,
//! drained like TCP; prints `listening on unix:/path/to.sock`). Given a socket by systemd or
//! a supervisor (`LISTEN_FDS=1`, `LISTEN_PID` its own pid, the socket on fd 3), it serves that
//! socket instead of binding `ADDR`, and at the drain leaves the connections queued on it to
//! the next generation (`docs/single-host.md`). `TCP_NODELAY=1` (default) or `0` sets that
//! option on every connection, for either server.
//!
//! TLS: `TLS_CERT` and `TLS_KEY` (PEM files: the certificate chain, the private key) make
//! either server serve HTTPS, HTTP/2 or HTTP/1.1 as ALPN chooses, on any of the sockets above:
//! `serve` with `Serve::tls` (needs the feature `rustls`, which `--all-features` turns on), and
//! `SERVER=axum`, the control, through axum-server with rustls on `ring` (`axum::serve` has no
//! TLS), said goodbye to with `Handle::graceful_shutdown` when the drain begins
//! (`support/axum_server_tls.rs`):
//!
//! ```sh
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
//!     -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout key.pem -out cert.pem
//! TLS_CERT=cert.pem TLS_KEY=key.pem cargo run --all-features --example axum
//! curl --cacert cert.pem https://localhost:3000/
//! ```

#[path = "support/axum_server_tls.rs"]
mod axum_server_tls;
#[path = "support/env.rs"]
mod env;
#[path = "support/routes.rs"]
mod routes;
#[path = "support/tls.rs"]
mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::connect_info::{ConnectInfo, Connected, IntoMakeServiceWithConnectInfo};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{IncomingStream, ListenerExt as _};
use axum::{Extension, Router};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tower_drain::serve::{Inherited, UnixPeer};
use tower_drain::{BoxError, DrainLayer, Shutdown, ShutdownReport};

#[tokio::main]
async fn main() -> Result<ShutdownReport, BoxError> {
    env::init_tracing(); // the shutdown logs its phases and its report
    let settings = env::Settings::from_env(3000);
    let server = env::server("axum");
    let tls_files = env::tls_files(); // TLS_CERT and TLS_KEY

    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let tasks_timeout = Duration::from_secs(2);
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(settings.notice)
        .drain_timeout(settings.drain_timeout)
        .tasks_timeout(tasks_timeout)
        // Room for the hooks too; keep the total below the orchestrator's kill deadline
        // (Kubernetes: terminationGracePeriodSeconds).
        .overall_timeout(
            settings.notice + settings.drain_timeout + tasks_timeout + Duration::from_secs(5),
        )
        .build()?;

    // Registered first, so it closes last: after the drain, the tasks and the other hooks.
    let pool = Arc::new(Pool::default());
    let closing = Arc::clone(&pool);
    shutdown.on_cleanup("db-pool", Duration::from_secs(3), move || async move {
        closing.close().await;
        Ok(())
    });
    let flushing = Arc::clone(&pool);
    shutdown.on_cleanup(
        "flush-metrics",
        Duration::from_secs(1),
        move || async move {
            flushing.query("flush-metrics"); // the pool is still open here
            tracing::info!("metrics flushed");
            Ok(())
        },
    );

    // A background worker: its token is cancelled after the drain, and it is awaited.
    let working = Arc::clone(&pool);
    shutdown.spawn_task("worker", |token| async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticks.tick() => working.query("the worker"),
                () = token.cancelled() => break,
            }
        }
        tracing::info!("worker stopped");
    });

    let app = routes::routes()
        .route("/whoami", get(whoami))
        .layer(middleware::from_fn_with_state(pool, use_pool))
        .layer(drain.clone());
    let drain_begins = drain.token().clone().cancelled_owned();

    // The socket: passed by systemd or a supervisor (LISTEN_FDS, fd 3), a Unix domain socket
    // (ADDR=unix:/path), or TCP with a backlog of 1024, not 128. The server runs in the
    // sequence: the drain ends once it has closed every connection (every response written),
    // or at the drain deadline.
    let nodelay = settings.tcp_nodelay;
    if let Some(listener) = Inherited::tcp_from_env()? {
        println!("listening on {}", listener.get_ref().local_addr()?);
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        match server {
            // Accepts until the drain, then leaves the queue to the next generation.
            env::Server::Serve => {
                let serve = tower_drain::serve(listener, &drain, app).tcp_nodelay(nodelay);
                shutdown.spawn_server("http", tls::tls(serve, &tls_files)?);
            }
            env::Server::Framework => {
                let listener = listener.into_inner();
                spawn_framework_tcp(
                    &mut shutdown,
                    listener,
                    app,
                    &tls_files,
                    nodelay,
                    drain_begins,
                )
                .await?;
            }
        };
    } else {
        match settings.addr {
            env::Addr::Tcp(addr) => {
                let listener = tower_drain::serve::bind(addr).await?;
                println!("listening on {}", listener.local_addr()?);
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                match server {
                    env::Server::Serve => {
                        let serve = tower_drain::serve(listener, &drain, app).tcp_nodelay(nodelay);
                        shutdown.spawn_server("http", tls::tls(serve, &tls_files)?);
                    }
                    env::Server::Framework => {
                        spawn_framework_tcp(
                            &mut shutdown,
                            listener,
                            app,
                            &tls_files,
                            nodelay,
                            drain_begins,
                        )
                        .await?;
                    }
                };
            }
            env::Addr::Unix(path) => {
                let _ = std::fs::remove_file(&path); // left by a previous run
                let listener = UnixListener::bind(&path)?;
                println!("listening on unix:{}", path.display());
                match (server, &tls_files) {
                    (env::Server::Serve, _) => {
                        let app = app.into_make_service_with_connect_info::<UnixPeerInfo>();
                        let serve = tower_drain::serve(listener, &drain, app);
                        shutdown.spawn_server("http", tls::tls(serve, &tls_files)?);
                    }
                    (env::Server::Framework, None) => {
                        let app = app.into_make_service_with_connect_info::<UnixPeerInfo>();
                        let server =
                            axum::serve(listener, app).with_graceful_shutdown(drain_begins);
                        shutdown.spawn_server("http", server);
                    }
                    (env::Server::Framework, Some(files)) => {
                        let server = axum_server_tls::unix(
                            listener,
                            app,
                            files,
                            UnixPeerInfo::of,
                            drain_begins,
                        );
                        shutdown.spawn_server("http", server.await?);
                    }
                };
            }
        }
    }

    Ok(shutdown.run().await) // logs the report; main exits with its code
}

/// The framework's server on TCP, said goodbye to when the drain begins: `axum::serve`, or
/// with `TLS_CERT` and `TLS_KEY` axum-server with rustls (`support/axum_server_tls.rs`), with
/// the same socket options as `serve`'s: like is compared with like.
async fn spawn_framework_tcp(
    shutdown: &mut Shutdown,
    listener: TcpListener,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    tls_files: &Option<(PathBuf, PathBuf)>,
    nodelay: bool,
    drain_begins: WaitForCancellationFutureOwned,
) -> Result<(), BoxError> {
    match tls_files {
        None => {
            let listener = listener.tap_io(move |tcp| set_nodelay(tcp, nodelay));
            let server = axum::serve(listener, app).with_graceful_shutdown(drain_begins);
            shutdown.spawn_server("http", server);
        }
        Some(files) => {
            let server = axum_server_tls::tcp(listener, app, files, nodelay, drain_begins);
            shutdown.spawn_server("http", server.await?);
        }
    }
    Ok(())
}

/// Stands in for a database pool: a query after `close` is a bug, and is logged.
#[derive(Default)]
struct Pool {
    closed: AtomicBool,
}

impl Pool {
    fn query(&self, by: &str) {
        if self.closed.load(Ordering::Acquire) {
            tracing::error!("{by} queried the pool after it was closed");
        }
    }

    async fn close(&self) {
        tokio::time::sleep(Duration::from_millis(20)).await; // flush, say goodbye to the server
        self.closed.store(true, Ordering::Release);
        tracing::info!("pool closed");
    }
}

/// Every request uses the pool when it starts and when its handler returns.
async fn use_pool(State(pool): State<Arc<Pool>>, request: Request, next: Next) -> Response {
    pool.query("a request");
    let response = next.run(request).await;
    pool.query("a request");
    response
}

/// `GET /whoami`: the client's address as the `ConnectInfo<SocketAddr>` extractor sees it
/// (`ip:port`), or on a Unix socket the connecting process (`unix pid=.. uid=..`).
async fn whoami(
    tcp: Option<Extension<ConnectInfo<SocketAddr>>>,
    unix: Option<Extension<ConnectInfo<UnixPeerInfo>>>,
) -> Response {
    match (tcp, unix) {
        (Some(Extension(ConnectInfo(peer))), _) => peer.to_string().into_response(),
        (_, Some(Extension(ConnectInfo(peer)))) => {
            let pid = peer.pid.map_or("?".into(), |pid| pid.to_string());
            format!("unix pid={pid} uid={}", peer.uid).into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "no client address").into_response(),
    }
}

/// A Unix socket client: its process and user (`SO_PEERCRED`), for `ConnectInfo`.
#[derive(Clone, Debug)]
struct UnixPeerInfo {
    pid: Option<i32>,
    uid: u32,
}

/// Under `tower_drain::serve`, from the peer it accepted.
impl Connected<UnixPeer> for UnixPeerInfo {
    fn connect_info(peer: UnixPeer) -> Self {
        let cred = peer.cred();
        Self {
            pid: cred.and_then(|c| c.pid()),
            uid: cred.map_or(u32::MAX, |c| c.uid()),
        }
    }
}

/// Under `axum::serve`, from the stream it accepted.
impl Connected<IncomingStream<'_, UnixListener>> for UnixPeerInfo {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self::of(stream.io())
    }
}

impl UnixPeerInfo {
    /// The process at the other end of `stream` (axum-server hands make services only its
    /// socket address: `support/axum_server_tls.rs` asks this of the stream).
    fn of(stream: &UnixStream) -> Self {
        let cred = stream.peer_cred().ok();
        Self {
            pid: cred.and_then(|c| c.pid()),
            uid: cred.map_or(u32::MAX, |c| c.uid()),
        }
    }
}

fn set_nodelay(tcp: &mut TcpStream, nodelay: bool) {
    let _ = tcp.set_nodelay(nodelay);
}

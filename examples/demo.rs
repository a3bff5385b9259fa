//! Watch a server drain: it serves, gets load, receives `SIGTERM`, and drops nothing.
//!
//! ```sh
//! cargo run --all-features --example demo
//! ```
//!
//! In one process:
//!
//! 1. an axum server with `DrainLayer` and `Shutdown` (notice 1.5 s, drain deadline 5 s);
//! 2. a **load balancer** that probes `/readyz` every 200 ms and routes only while it is 200;
//! 3. **clients** sending fast, slow and streaming requests through it with hyper, and
//!    checking every response body;
//! 4. after 4 s the demo sends itself `SIGTERM` (press Ctrl-C earlier to send `SIGINT`
//!    yourself). Watch the log: readiness fails at once, the load balancer stops routing, the
//!    requests in flight finish, then the drain, the tasks and the cleanup follow.
//!
//! A 3 s download starts just before the signal, so the drain has something to wait for, and
//! a background worker stops after the drain. At the end the server logs its shutdown report
//! and the demo prints the clients' tally: every request should have succeeded, none failed.
//! Runs in about 7 seconds.

#[path = "support/routes.rs"]
mod routes;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower_drain::{DrainLayer, Shutdown};
use tracing_subscriber::EnvFilter;

const SIGTERM_AFTER: Duration = Duration::from_secs(4);
const CLIENTS: u64 = 6;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,hyper_util=warn".into()),
        )
        .init();
    match demo().await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<ExitCode, String> {
    let started = Instant::now();
    let say = move |what: String| println!("[{:>5.2}s] {what}", started.elapsed().as_secs_f64());

    // The server.
    let drain = DrainLayer::default()
        .readiness_path("/readyz")
        .liveness_path("/livez");
    let mut shutdown = Shutdown::builder(&drain)
        .signals() // SIGTERM and SIGINT start the shutdown; a second one forces the exit
        .notice_period(Duration::from_millis(1_500))
        .drain_timeout(Duration::from_secs(5))
        .tasks_timeout(Duration::from_secs(1))
        .overall_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("shutdown configuration: {e}"))?;
    shutdown.on_cleanup("db-pool", Duration::from_secs(1), || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tracing::info!("db-pool closed, after the last request");
        Ok(())
    });
    let listener = tower_drain::serve::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    // Part of the sequence: the drain ends when every response has been written.
    let drain_begins = drain.token().clone().cancelled_owned();
    shutdown.spawn_server(
        "http",
        axum::serve(listener, routes::routes().layer(drain)).with_graceful_shutdown(drain_begins),
    );
    say(format!("server listening on {addr}"));

    // The load balancer: routes to the server while its readiness probe answers 200.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let routable = Arc::new(AtomicBool::new(true));
    tokio::spawn({
        let (client, routable) = (client.clone(), Arc::clone(&routable));
        let uri: Uri = format!("http://{addr}/readyz")
            .parse()
            .map_err(|e| format!("{e}"))?;
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                every.tick().await;
                let ready =
                    matches!(client.get(uri.clone()).await, Ok(r) if r.status() == StatusCode::OK);
                if !ready && routable.swap(false, Ordering::SeqCst) {
                    say("load balancer: /readyz is no longer 200, stop routing here".into());
                    return;
                }
            }
        }
    });

    // The clients: each sends one request after another while the load balancer routes.
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let (client, routable, tally) = (client.clone(), Arc::clone(&routable), Arc::clone(&tally));
        clients.push(tokio::spawn(async move {
            let mut n = id;
            while routable.load(Ordering::SeqCst) {
                n += CLIENTS;
                let (path, expect) = match n % 10 {
                    0..=5 => ("/".to_string(), "hello\n".to_string()),
                    6..=8 => {
                        let ms = 200 + (n * 37) % 600;
                        (format!("/slow?ms={ms}"), format!("slept {ms} ms\n"))
                    }
                    _ => (
                        "/stream?chunks=20&ms=100".to_string(),
                        "chunk 20\n".to_string(),
                    ),
                };
                request(&client, addr, &path, &expect, &tally).await;
            }
        }));
    }

    // A long download that starts just before the signal: still running when the drain
    // starts, so the drain waits for it (watch "draining ... 1 in flight").
    clients.push(tokio::spawn({
        let (client, tally) = (client.clone(), Arc::clone(&tally));
        async move {
            tokio::time::sleep(SIGTERM_AFTER - Duration::from_millis(500)).await;
            say("client: starting a 3 s download".into());
            request(
                &client,
                addr,
                "/stream?chunks=30&ms=100",
                "chunk 30\n",
                &tally,
            )
            .await;
            say("client: download complete".into());
        }
    }));

    // A background worker, cancelled after the HTTP drain.
    shutdown.spawn_task("worker", |token| async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(100)).await; // finish the current job
        tracing::info!("worker: finished its last job and stopped");
    });

    // SIGTERM to ourselves after a few seconds, unless someone pressed Ctrl-C first.
    let handle = shutdown.handle();
    let shutdown_started = shutdown.started_token();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(SIGTERM_AFTER) => {}
            () = shutdown_started.cancelled() => return,
        }
        say(format!(
            "sending SIGTERM to myself (pid {})",
            std::process::id()
        ));
        send_sigterm(&handle);
    });

    let report = shutdown.run().await;
    // The clients' last answers are already written: collect their tally.
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(1), client).await;
    }

    // `run()` has logged the report; the clients' side follows.
    let (ok, refused, failed) = (
        tally.ok.load(Ordering::SeqCst),
        tally.refused.load(Ordering::SeqCst),
        tally.failed.load(Ordering::SeqCst),
    );
    println!(
        "\nclients: {} requests: {ok} succeeded, {refused} refused with 503 (retryable), {failed} failed",
        ok + refused + failed
    );
    if failed > 0 {
        println!("some requests failed: that is a bug, please report it");
        return Ok(ExitCode::FAILURE);
    }
    println!("no request failed: a zero-downtime deploy");
    Ok(ExitCode::from(&report))
}

async fn request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    addr: std::net::SocketAddr,
    path: &str,
    expect: &str,
    tally: &Tally,
) {
    let Ok(uri) = format!("http://{addr}{path}").parse::<Uri>() else {
        tally.failed.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client.get(uri).await.map_err(|e| format!("{e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{e}"))?;
        Ok::<_, String>((status, body.to_bytes()))
    })
    .await;
    match outcome {
        Ok(Ok((StatusCode::OK, body))) if body.ends_with(expect.as_bytes()) => {
            tally.ok.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok((StatusCode::SERVICE_UNAVAILABLE, _))) => {
            tally.refused.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Ok((status, _))) => {
            tracing::error!("GET {path}: {status} or truncated body");
            tally.failed.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Err(e)) => {
            tracing::error!("GET {path}: {e}");
            tally.failed.fetch_add(1, Ordering::SeqCst);
        }
        Err(_) => {
            tracing::error!("GET {path}: no answer within 10 s");
            tally.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A real `SIGTERM` on Unix, through `kill(1)`; elsewhere the handle's equivalent.
fn send_sigterm(handle: &tower_drain::shutdown::ShutdownHandle) {
    #[cfg(unix)]
    {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status();
        if matches!(sent, Ok(status) if status.success()) {
            return;
        }
        eprintln!("demo: could not run `kill`, triggering the shutdown directly");
    }
    handle.signal(tower_drain::shutdown::Signal::Terminate);
}

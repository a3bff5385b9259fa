//! `serve`'s per-request path allocates nothing of its own: over real sockets, the server
//! thread allocates no more per request under `serve` than under `axum::serve`, with the same
//! app and the same hyper. The server runs alone on its own thread (a current-thread
//! runtime) and the allocations of that thread are counted; the client runs on others.
//! Run with `--nocapture` to see the numbers.

use std::cell::Cell;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::thread;

use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tower_drain::DrainLayer;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

mod support;
use support::{Client, Proto};

#[derive(Clone, Copy, Debug)]
enum Server {
    Serve,
    AxumServe,
}

/// Starts `server` on its own thread; returns its address and a way to read the number of
/// allocations its thread has made so far.
fn start(server: Server) -> (SocketAddr, mpsc::UnboundedSender<oneshot::Sender<u64>>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (ask_tx, mut ask_rx) = mpsc::unbounded_channel::<oneshot::Sender<u64>>();
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let drain = DrainLayer::default();
            let app = Router::new()
                .route("/", get(|| async { "hello" }))
                .layer(drain.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            match server {
                // `into_make_service`: axum's `Router` turns its handlers into routes once,
                // instead of on every request, as `axum::serve` makes it do.
                Server::Serve => {
                    let app = app.into_make_service();
                    tokio::spawn(tower_drain::serve(listener, &drain, app).into_future());
                }
                Server::AxumServe => {
                    tokio::spawn(axum::serve(listener, app).into_future());
                }
            }
            ready_tx.send(addr).unwrap();
            // Answers on this thread: its count.
            while let Some(reply) = ask_rx.recv().await {
                let _ = reply.send(ALLOCATIONS.with(Cell::get));
            }
        });
    });
    (ready_rx.recv().unwrap(), ask_tx)
}

async fn count(ask: &mpsc::UnboundedSender<oneshot::Sender<u64>>) -> u64 {
    let (tx, rx) = oneshot::channel();
    ask.send(tx).unwrap();
    rx.await.unwrap()
}

async fn one(client: &mut Client) {
    let response = client.get("/").await;
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

/// The server thread's allocations per request, over `n` sequential keep-alive requests.
async fn per_request(server: Server, proto: Proto, n: u64) -> f64 {
    let (addr, ask) = start(server);
    let mut client = Client::connect(addr, proto).await;
    for _ in 0..200 {
        one(&mut client).await; // warm: buffers grown, caches filled
    }
    // The asking itself, measured: two asks back to back.
    let idle = count(&ask).await;
    let before = count(&ask).await;
    let asking = before - idle;
    for _ in 0..n {
        one(&mut client).await;
    }
    let after = count(&ask).await;
    (after - before - asking) as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_allocates_no_more_per_request_than_axum_serve() {
    for proto in Proto::ALL {
        let serve = per_request(Server::Serve, proto, 1_000).await;
        let axum = per_request(Server::AxumServe, proto, 1_000).await;
        eprintln!(
            "{proto:?}: server allocations per request: serve {serve:.2}, axum::serve {axum:.2}"
        );
        // Each allocation of ours would add 1.0 per request; the margin is for the odd buffer
        // growth or timer-wheel page that lands inside the measured window.
        assert!(
            serve <= axum + 0.05,
            "{proto:?}: serve {serve:.2} allocations per request, axum::serve {axum:.2}"
        );
    }
}

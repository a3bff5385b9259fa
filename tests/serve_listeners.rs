//! `serve` as a drop-in for `axum::serve` and tonic's `Server`: the client's address reaches
//! handlers (axum's `ConnectInfo`, tonic's `remote_addr()`, a Unix peer's credentials), and any
//! listener works (a Unix socket, connections accepted by the user's own code).

mod support;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower_drain::serve::Listener;
use tower_drain::DrainLayer;

async fn body_text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_connect_info_is_the_clients_address_on_both_protocols() {
    let drain = DrainLayer::default();
    let app = Router::new()
        .route(
            "/whoami",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The one line that changes from axum::serve: the drain layer is passed along.
    let server = tokio::spawn(std::future::IntoFuture::into_future(tower_drain::serve(
        listener,
        &drain,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )));
    for proto in [Proto::Http1, Proto::Http2] {
        let mut client = Client::connect(addr, proto).await;
        let response = client.get("/whoami").await;
        assert_eq!(response.status(), 200, "{proto:?}");
        assert_eq!(body_text(response).await, client.local_addr().to_string());
    }
    drain.token().cancel();
    within("serve to complete", server).await.unwrap().unwrap();
}

#[cfg(feature = "tonic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_remote_addr_is_the_clients_address() {
    use tower_drain::serve::TonicConnectInfo;
    let drain = DrainLayer::default();
    // What a tonic-generated server does with the request: `tonic::Request::from_http`.
    let service = tower::service_fn(|request: Request<Incoming>| async move {
        let request = tonic::Request::from_http(request);
        let answer = format!("{:?} {:?}", request.remote_addr(), request.local_addr());
        Ok::<_, Infallible>(Response::new(answer))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = TonicConnectInfo::new(service).local_addr(addr);
    let server = tokio::spawn(std::future::IntoFuture::into_future(tower_drain::serve(
        listener, &drain, app,
    )));
    let mut client = Client::connect(addr, Proto::Http2).await;
    let response = client.get("/").await;
    assert_eq!(
        body_text(response).await,
        format!("Some({}) Some({addr})", client.local_addr())
    );
    drain.token().cancel();
    within("serve to complete", server).await.unwrap().unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_peer_credentials_reach_the_make_service() {
    use tower_drain::serve::UnixPeer;
    let dir = std::env::temp_dir().join(format!("tower-drain-listeners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peer.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let drain = DrainLayer::default();
    // A make service: called with each connection's peer.
    let make = tower::service_fn(|peer: UnixPeer| async move {
        let pid = peer.cred().and_then(|cred| cred.pid());
        Ok::<_, Infallible>(tower::service_fn(move |_: Request<Incoming>| async move {
            Ok::<_, Infallible>(Response::new(format!("{pid:?}")))
        }))
    });
    let server = tokio::spawn(std::future::IntoFuture::into_future(tower_drain::serve(
        listener, &drain, make,
    )));
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        body_text(response).await,
        format!("Some({})", std::process::id())
    );
    drop(sender);
    drain.token().cancel();
    within("serve to complete", server).await.unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
}

/// Connections accepted by the user's own code (a PROXY protocol reader, say), handed over.
struct Handed(mpsc::Receiver<(TcpStream, SocketAddr)>);

impl Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        match self.0.recv().await {
            Some(accepted) => Ok(accepted),
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_accepted_by_the_users_code_are_served_and_drained() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (handed, receiver) = mpsc::channel(8);
    // The user's acceptor: it may read a PROXY header first, or filter.
    tokio::spawn(async move {
        while let Ok(accepted) = tcp.accept().await {
            if handed.send(accepted).await.is_err() {
                break;
            }
        }
    });
    let drain = DrainLayer::default();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(drain.clone());
    let server = tokio::spawn(std::future::IntoFuture::into_future(tower_drain::serve(
        Handed(receiver),
        &drain,
        app,
    )));
    for proto in [Proto::Http1, Proto::Http2] {
        let mut client = Client::connect(addr, proto).await;
        let response = client.get("/").await;
        assert_eq!(body_text(response).await, "hello", "{proto:?}");
    }
    drain.token().cancel();
    within("serve to complete", server).await.unwrap().unwrap();
    assert_eq!(drain.tracker().connections().accepted, 2);
}

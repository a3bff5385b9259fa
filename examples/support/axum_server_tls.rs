//! The TLS control of `examples/axum.rs` (`SERVER=axum` with `TLS_CERT` and `TLS_KEY`): the
//! same app served by axum-server with rustls, on `ring` as `serve` is, with the same ALPN (`h2`,
//! `http/1.1`) and the same socket options. Its `Handle::graceful_shutdown(None)` is called
//! when the drain begins, where `axum::serve`'s `with_graceful_shutdown` is told: the
//! connections say goodbye then (HTTP/2 `GOAWAY`, HTTP/1.1 closed after its response), and the
//! server's future ends once the last one has closed.

use std::future::{Future, Ready};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::connect_info::{ConnectInfo, IntoMakeServiceWithConnectInfo};
use axum::middleware::AddExtension;
use axum::{Extension, Router};
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::{Address, Handle, Server};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tower_layer::Layer as _;

/// axum-server with TLS on `listener`, `TCP_NODELAY` set to `nodelay` on every connection
/// (`serve`'s default is on).
pub async fn tcp(
    listener: TcpListener,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    files: &(PathBuf, PathBuf),
    nodelay: bool,
    drain_begins: impl Future<Output = ()> + Send + 'static,
) -> io::Result<impl Future<Output = io::Result<()>> + Send> {
    let acceptor = RustlsAcceptor::new(config(files).await?).acceptor(Nodelay(nodelay));
    Ok(Server::<SocketAddr>::from_listener(listener)
        .acceptor(acceptor)
        .handle(goodbye_at(drain_begins))
        .serve(app))
}

/// axum-server with TLS on the Unix socket `listener`: the requests of a connection carry
/// `ConnectInfo(peer(stream))`, as `ConnectInfo` under the other servers (axum-server hands
/// make services only the peer's socket address, which says nothing on a Unix socket).
pub async fn unix<P>(
    listener: UnixListener,
    app: Router,
    files: &(PathBuf, PathBuf),
    peer: fn(&UnixStream) -> P,
    drain_begins: impl Future<Output = ()> + Send + 'static,
) -> io::Result<impl Future<Output = io::Result<()>> + Send>
where
    P: Clone + Send + Sync + 'static,
{
    let acceptor = RustlsAcceptor::new(config(files).await?).acceptor(WithPeer(peer));
    Ok(
        Server::<std::os::unix::net::SocketAddr>::from_listener(listener)
            .acceptor(acceptor)
            .handle(goodbye_at(drain_begins))
            .serve(app.into_make_service()),
    )
}

/// The PEM files as axum-server reads them: the `ring` provider (the only one built, feature
/// `tls-rustls-ring`), ALPN `h2` and `http/1.1`.
async fn config((cert, key): &(PathBuf, PathBuf)) -> io::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(cert, key).await
}

/// A handle whose graceful shutdown, with no deadline of its own (the sequence has one), starts
/// when `drain_begins` completes.
fn goodbye_at<A>(drain_begins: impl Future<Output = ()> + Send + 'static) -> Handle<A>
where
    A: Address + Send + Sync + 'static,
{
    let handle = Handle::new();
    let at_drain = handle.clone();
    tokio::spawn(async move {
        drain_begins.await;
        at_drain.graceful_shutdown(None);
    });
    handle
}

/// Sets `TCP_NODELAY` before the handshake.
#[derive(Clone, Copy)]
struct Nodelay(bool);

impl<S> Accept<TcpStream, S> for Nodelay {
    type Stream = TcpStream;
    type Service = S;
    type Future = Ready<io::Result<(TcpStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(stream.set_nodelay(self.0).map(|()| (stream, service)))
    }
}

/// Adds `ConnectInfo` of the Unix socket's peer to the connection's requests.
#[derive(Clone, Copy)]
struct WithPeer<P>(fn(&UnixStream) -> P);

impl<S, P> Accept<UnixStream, S> for WithPeer<P>
where
    P: Clone + Send + Sync + 'static,
{
    type Stream = UnixStream;
    type Service = AddExtension<S, ConnectInfo<P>>;
    type Future = Ready<io::Result<(UnixStream, Self::Service)>>;

    fn accept(&self, stream: UnixStream, service: S) -> Self::Future {
        let peer = ConnectInfo((self.0)(&stream));
        std::future::ready(Ok((stream, Extension(peer).layer(service))))
    }
}

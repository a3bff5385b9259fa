//! `serve` over TLS (feature `rustls`), over real TCP with hyper clients over tokio-rustls:
//! ALPN picks the protocol, a stalled handshake is closed without holding the others, a
//! certificate reload applies to new handshakes, the goodbye is a `close_notify`, and a
//! connection in its handshake at the drain is served (hyper #3792). Certificates are made at
//! test time (rcgen); no private key is committed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use support::{read_body, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tower_drain::serve::tls::{PeerCertificates, TlsConfig};
use tower_drain::{ConnectionTracker, DrainLayer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `localhost`, made now.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Identity {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Self {
            cert: made.cert.der().clone(),
            key: PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap(),
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// A server configuration with this identity and no ALPN (`serve` adds it).
    fn server_config(&self) -> ServerConfig {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .unwrap()
    }
}

/// A client trusting `trusted`, offering `alpn`, optionally presenting `identity`.
fn connector(trusted: &[&Identity], alpn: &[&[u8]], identity: Option<&Identity>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for identity in trusted {
        roots.add(identity.cert.clone()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    within(
        "the handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap()
}

struct Running {
    addr: SocketAddr,
    token: CancellationToken,
    tracker: ConnectionTracker,
    server: JoinHandle<std::io::Result<()>>,
}

/// `serve` with TLS: `GET /` answers the request's HTTP version, `GET /peer` the number of
/// client certificates it saw.
async fn start(
    tls: impl Into<TlsConfig>,
    configure: impl FnOnce(
        tower_drain::Serve<TcpListener, Router>,
    ) -> tower_drain::Serve<TcpListener, Router>,
) -> Running {
    let token = CancellationToken::new();
    let drain = DrainLayer::new(token.clone());
    let app =
        Router::new()
            .route(
                "/",
                get(|request: Request<axum::body::Body>| async move {
                    format!("{:?}", request.version())
                }),
            )
            .route(
                "/peer",
                get(|certs: Option<Extension<PeerCertificates>>| async move {
                    certs
                        .map_or(0, |Extension(certs)| certs.chain().len())
                        .to_string()
                }),
            )
            .layer(drain.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = configure(tower_drain::serve(listener, &drain, app).tls(tls));
    let server = tokio::spawn(std::future::IntoFuture::into_future(serve));
    Running {
        addr,
        token,
        tracker: drain.tracker(),
        server,
    }
}

type Http1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type Http2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn http1(stream: TlsStream<TcpStream>) -> Http1 {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn http2(stream: TlsStream<TcpStream>) -> Http2 {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn get_request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

/// `GET path` on an HTTP/1.1 connection: the status must be 200; the body.
async fn get1(sender: &mut Http1, path: &str) -> Bytes {
    within("ready", sender.ready()).await.unwrap();
    let mut request = get_request(path);
    *request.uri_mut() = path.parse().unwrap();
    request
        .headers_mut()
        .insert(http::header::HOST, "localhost".parse().unwrap());
    let response = within("the response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    read_body(response.into_body()).await
}

async fn get2(sender: &mut Http2, path: &str) -> Bytes {
    within("ready", sender.ready()).await.unwrap();
    let response = within("the response", sender.send_request(get_request(path)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    read_body(response.into_body()).await
}

fn alpn_of(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_h2_first_is_served_http2_chosen_by_alpn() {
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let stream = tls_connect(
        server.addr,
        &connector(&[&identity], &[b"h2", b"http/1.1"], None),
    )
    .await;
    assert_eq!(alpn_of(&stream).as_deref(), Some(&b"h2"[..]));
    let mut client = http2(stream).await;
    assert_eq!(get2(&mut client, "/").await, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_only_http1_is_served_http1_chosen_by_alpn() {
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let stream = tls_connect(server.addr, &connector(&[&identity], &[b"http/1.1"], None)).await;
    assert_eq!(alpn_of(&stream).as_deref(), Some(&b"http/1.1"[..]));
    let mut client = http1(stream).await;
    assert_eq!(get1(&mut client, "/").await, "HTTP/1.1");
    assert_eq!(get1(&mut client, "/").await, "HTTP/1.1", "kept alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_alpn_is_served_http1_or_http2_as_its_first_bytes_say() {
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let no_alpn = connector(&[&identity], &[], None);
    let stream = tls_connect(server.addr, &no_alpn).await;
    assert_eq!(alpn_of(&stream), None);
    assert_eq!(get1(&mut http1(stream).await, "/").await, "HTTP/1.1");
    // HTTP/2 with prior knowledge, as in cleartext.
    let stream = tls_connect(server.addr, &no_alpn).await;
    assert_eq!(get2(&mut http2(stream).await, "/").await, "HTTP/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_bytes_on_a_connection_that_negotiated_h2_close_it() {
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let mut stream = tls_connect(server.addr, &connector(&[&identity], &[b"h2"], None)).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut read = Vec::new();
    let _ = within("the close", stream.read_to_end(&mut read)).await;
    assert!(read.is_empty(), "nothing served: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshake_is_closed_after_the_header_read_timeout_without_holding_others() {
    let identity = Identity::new();
    let timeout = Duration::from_millis(300);
    let server = start(identity.server_config(), |serve| {
        serve.header_read_timeout(timeout)
    })
    .await;
    // Before connecting: the server's timer starts when it accepts.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    // A ClientHello that never ends: a record header announcing 512 bytes, and 3 of them.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    // Served meanwhile: the stalled handshake holds only its own connection.
    let connector = connector(&[&identity], &[b"h2"], None);
    let mut client = http2(tls_connect(server.addr, &connector).await).await;
    assert_eq!(get2(&mut client, "/").await, "HTTP/2.0");
    let served_after = started.elapsed();
    let mut buf = [0; 64];
    let n = within("the close", stalled.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let closed_after = started.elapsed();
    assert!(closed_after >= timeout, "{closed_after:?}");
    assert!(
        served_after < closed_after,
        "{served_after:?} {closed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_gives_new_handshakes_the_new_certificate_while_open_connections_keep_serving() {
    let (old, new) = (Identity::new(), Identity::new());
    let tls = TlsConfig::new(old.server_config());
    let server = start(tls.clone(), |serve| serve).await;
    let connector = connector(&[&old, &new], &[b"h2"], None);
    let server_cert =
        |stream: &TlsStream<TcpStream>| stream.get_ref().1.peer_certificates().unwrap()[0].clone();

    let stream = tls_connect(server.addr, &connector).await;
    assert_eq!(server_cert(&stream), old.cert);
    let client = http2(stream).await;
    // Requests on the open connection, without pause, while the certificate changes.
    let stop = CancellationToken::new();
    let load = tokio::spawn({
        let (mut client, stop) = (client.clone(), stop.clone());
        async move {
            let mut served = 0;
            while !stop.is_cancelled() {
                assert_eq!(get2(&mut client, "/").await, "HTTP/2.0");
                served += 1;
            }
            served
        }
    });
    tls.reload(new.server_config());
    let stream = tls_connect(server.addr, &connector).await;
    assert_eq!(
        server_cert(&stream),
        new.cert,
        "a new handshake sees the new certificate"
    );
    assert_eq!(get2(&mut http2(stream).await, "/").await, "HTTP/2.0");
    stop.cancel();
    let served = within("the load", load).await.unwrap();
    assert!(served > 0);
    let mut client = client;
    assert_eq!(
        get2(&mut client, "/").await,
        "HTTP/2.0",
        "the old connection still serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_from_pem_files_reads_the_new_files_and_a_bad_one_keeps_the_old_certificate() {
    let (old, new) = (Identity::new(), Identity::new());
    let dir = std::env::temp_dir().join(format!("tower-drain-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |identity: &Identity| {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &identity.cert_pem).unwrap();
        std::fs::write(&key, &identity.key_pem).unwrap();
        (cert, key)
    };
    let (cert, key) = write(&old);
    let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
    let server = start(tls.clone(), |serve| serve).await;
    let connector = connector(&[&old, &new], &[b"http/1.1"], None);
    let server_cert =
        |stream: &TlsStream<TcpStream>| stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        server_cert(&tls_connect(server.addr, &connector).await),
        old.cert
    );

    let (cert, key) = write(&new);
    tls.reload_from_pem_files(&cert, &key).unwrap();
    assert_eq!(
        server_cert(&tls_connect(server.addr, &connector).await),
        new.cert
    );

    std::fs::write(&key, "not a key").unwrap();
    assert!(tls.reload_from_pem_files(&cert, &key).is_err());
    assert_eq!(
        server_cert(&tls_connect(server.addr, &connector).await),
        new.cert,
        "kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closed_at_the_drain_gets_close_notify_before_the_socket_closes() {
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let mut stream = tls_connect(server.addr, &connector(&[&identity], &[b"http/1.1"], None)).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = vec![0; 1024];
    let n = within("the response", stream.read(&mut response))
        .await
        .unwrap();
    assert!(
        response[..n].ends_with(b"HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&response[..n])
    );

    server.token.cancel();
    // rustls reports a close without `close_notify` as an `UnexpectedEof` error; with it,
    // as the end of the stream.
    let mut rest = Vec::new();
    let read = within("the close", stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "closed without close_notify: {read:?}");
    assert!(rest.is_empty());
    within("the server", server.server).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_their_handshake_at_the_drain_get_their_responses() {
    // hyper #3792: with hyper-util's graceful loop, a TLS connection accepted just before the
    // shutdown signal lost its response.
    let identity = Identity::new();
    let server = start(identity.server_config(), |serve| serve).await;
    let connector = connector(&[&identity], &[b"http/1.1"], None);
    // Each client connects and says hello (its ClientHello on the wire), then waits for the
    // drain to begin before it goes on with its handshake and its request: every one of them
    // is in its handshake at the drain.
    let (hello_sent, mut all_said_hello) = tokio::sync::mpsc::channel(20);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (connector, hello_sent) = (connector.clone(), hello_sent.clone());
            let draining = server.token.clone();
            tokio::spawn(async move {
                let tcp = TcpStream::connect(server.addr).await.unwrap();
                let mut handshake = Box::pin(futures_util::future::maybe_done(
                    connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
                ));
                // The first poll writes the ClientHello.
                let _ = futures_util::poll!(handshake.as_mut());
                let _ = hello_sent.send(()).await;
                draining.cancelled().await;
                within("the handshake", handshake.as_mut()).await;
                let stream = handshake.as_mut().take_output().unwrap().unwrap();
                let mut client = http1(stream).await;
                get1(&mut client, "/").await
            })
        })
        .collect();
    for _ in 0..20 {
        within("the hellos", all_said_hello.recv()).await.unwrap();
    }
    server.token.cancel();
    for client in clients {
        assert_eq!(within("the response", client).await.unwrap(), "HTTP/1.1");
    }
    within("the server", server.server).await.unwrap().unwrap();
    assert_eq!(server.tracker.connections().open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_reach_handlers_as_peer_certificates() {
    let (server_identity, client_identity) = (Identity::new(), Identity::new());
    let mut roots = RootCertStore::empty();
    roots.add(client_identity.cert.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_identity.cert.clone()],
            server_identity.key.clone_key(),
        )
        .unwrap();
    let server = start(config, |serve| serve).await;
    let with_cert = connector(&[&server_identity], &[b"h2"], Some(&client_identity));
    let mut client = http2(tls_connect(server.addr, &with_cert).await).await;
    assert_eq!(get2(&mut client, "/peer").await, "1");
    let anonymous = connector(&[&server_identity], &[b"h2"], None);
    let mut client = http2(tls_connect(server.addr, &anonymous).await).await;
    assert_eq!(get2(&mut client, "/peer").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_that_never_says_hello_is_closed_at_the_drain_without_holding_the_exit() {
    let identity = Identity::new();
    // The header read timeout (30 s by default) would hold the exit if the drain waited for it.
    let server = start(identity.server_config(), |serve| serve).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    support::eventually("the connection accepted", || {
        server.tracker.connections().open == 1
    })
    .await;
    let drained = Instant::now();
    server.token.cancel();
    within("the server", server.server).await.unwrap().unwrap();
    assert!(
        drained.elapsed() < Duration::from_secs(1),
        "{:?}",
        drained.elapsed()
    );
    let mut buf = [0; 16];
    assert_eq!(silent.read(&mut buf).await.unwrap_or(0), 0, "closed");
}

//! The examples over TLS on every server they offer (`SERVER=serve`, and the framework's own
//! server, the control: axum-server for `axum`, tonic's server for `tonic`): each is started as
//! a child process with `TLS_CERT` and `TLS_KEY` made at test time (rcgen; no private key is
//! committed), answers over TLS what its clients ask (HTTPS/1.1 and HTTP/2 as ALPN chooses, or
//! a gRPC call), and exits 0 on `SIGTERM`.
//!
//! Every wait is bounded, and a `Drop` guard kills the child if a test fails.

#![cfg(unix)]

#[path = "support/examples.rs"]
mod examples;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use support::{read_body, within};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long an example may take to print `listening on`, or to exit after `SIGTERM`.
const STARTUP_AND_EXIT: Duration = Duration::from_secs(30);

/// A self-signed certificate for `localhost` and its key, made now, in PEM files of a
/// directory of this test's own.
struct Identity {
    dir: PathBuf,
    cert_pem: String,
    cert: CertificateDer<'static>,
}

impl Identity {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "examples_tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self {
            dir,
            cert_pem: made.cert.pem(),
            cert: made.cert.der().clone(),
        }
    }

    /// A rustls client trusting this certificate alone, offering `alpn`.
    fn connector(&self, alpn: &[u8]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running example serving TLS; killed on drop, so a failing test leaves no process behind.
struct Example {
    child: Child,
    /// What it printed after `listening on `.
    listening: String,
    /// Its stderr, complete once it has exited.
    stderr: mpsc::Receiver<String>,
}

impl Example {
    /// Starts example `name` on `SERVER=server` with `identity`'s files, on `ADDR=addr`.
    fn start(name: &str, server: &str, identity: &Identity, addr: &str) -> Self {
        let mut child = Command::new(examples::example(name))
            .env("SERVER", server)
            .env("ADDR", addr)
            .env("TLS_CERT", identity.dir.join("cert.pem"))
            .env("TLS_KEY", identity.dir.join("key.pem"))
            .env("NOTICE_MS", "0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} example: {e}"));
        let (listening_tx, listening_rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Read to the end, so that the example never writes to a closed pipe.
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(listening) = line.strip_prefix("listening on ") {
                    let _ = listening_tx.send(listening.to_owned());
                }
            }
        });
        let (stderr_tx, stderr) = mpsc::channel();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut all);
            let _ = stderr_tx.send(all);
        });
        let mut example = Self {
            child,
            listening: String::new(),
            stderr,
        };
        example.listening = match listening_rx.recv_timeout(STARTUP_AND_EXIT) {
            Ok(listening) => listening,
            Err(_) => panic!(
                "{name} on SERVER={server} printed no `listening on` line; stderr:\n{}",
                example.stderr_after_kill()
            ),
        };
        example
    }

    fn addr(&self) -> SocketAddr {
        self.listening.parse().unwrap()
    }

    /// Sends `SIGTERM` and waits for the exit; its status and stderr.
    fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM");
        let stderr = self
            .stderr
            .recv_timeout(STARTUP_AND_EXIT)
            .unwrap_or_else(|_| panic!("no exit within {STARTUP_AND_EXIT:?} of SIGTERM"));
        // Its stderr closed: it has exited, or is about to.
        (self.child.wait().unwrap(), stderr)
    }

    fn stderr_after_kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .recv_timeout(STARTUP_AND_EXIT)
            .unwrap_or_default()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SIGTERM`: the example must exit 0. Waited for off the runtime, which keeps the clients'
/// connections answering the goodbye.
async fn exits_zero_on_sigterm(example: Example) {
    let (status, stderr) = tokio::task::spawn_blocking(|| example.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");
}

/// The TLS handshake over `io` with `identity`'s certificate, offering `alpn` alone; it must
/// be chosen.
async fn tls<Io>(io: Io, identity: &Identity, alpn: &[u8]) -> tokio_rustls::client::TlsStream<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    let localhost = ServerName::try_from("localhost").unwrap();
    let stream = within(
        "the handshake",
        identity.connector(alpn).connect(localhost, io),
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    stream
}

/// `GET path` over HTTP/1.1 in TLS on `io`: the status must be 200; the body.
async fn get_http1<Io>(io: Io, identity: &Identity, path: &str) -> Bytes
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = tls(io, identity, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the HTTP/1.1 response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    read_body(response.into_body()).await
}

/// `GET path` over HTTP/2 in TLS on `io`: the status must be 200; the body.
async fn get_http2<Io>(io: Io, identity: &Identity, path: &str) -> Bytes
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = tls(io, identity, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get(format!("https://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("the HTTP/2 response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    read_body(response.into_body()).await
}

/// The axum example on `server` over TCP: `GET /` over HTTPS/1.1 and HTTP/2 (ALPN), and
/// `/whoami` the client's own address; then exit 0 on `SIGTERM`.
async fn axum_example_serves_tls_on(server: &str) {
    let identity = Identity::new();
    let example = Example::start("axum", server, &identity, "127.0.0.1:0");
    let addr = example.addr();

    let body = get_http1(TcpStream::connect(addr).await.unwrap(), &identity, "/").await;
    assert_eq!(body, "hello\n");
    let body = get_http2(TcpStream::connect(addr).await.unwrap(), &identity, "/").await;
    assert_eq!(body, "hello\n");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let body = get_http2(tcp, &identity, "/whoami").await;
    assert_eq!(body, me.to_string());

    exits_zero_on_sigterm(example).await;
}

#[tokio::test]
async fn axum_example_on_serve_answers_https_http1_and_http2_and_exits_zero() {
    axum_example_serves_tls_on("serve").await;
}

#[tokio::test]
async fn axum_example_on_axum_server_answers_https_http1_and_http2_and_exits_zero() {
    axum_example_serves_tls_on("axum").await;
}

/// The axum example on `server` over a Unix socket: HTTPS/1.1 and HTTP/2, `/whoami` the
/// client's process; then exit 0 on `SIGTERM`.
async fn axum_example_serves_tls_on_a_unix_socket_on(server: &str) {
    let identity = Identity::new();
    let socket = identity.dir.join("axum.sock");
    let addr = format!("unix:{}", socket.display());
    let example = Example::start("axum", server, &identity, &addr);
    assert_eq!(example.listening, addr);

    let body = get_http1(UnixStream::connect(&socket).await.unwrap(), &identity, "/").await;
    assert_eq!(body, "hello\n");
    let unix = UnixStream::connect(&socket).await.unwrap();
    let body = get_http2(unix, &identity, "/whoami").await;
    let expected = format!("unix pid={} ", std::process::id());
    assert!(
        String::from_utf8_lossy(&body).starts_with(&expected),
        "{body:?}, expected {expected}uid=.."
    );

    exits_zero_on_sigterm(example).await;
}

#[tokio::test]
async fn axum_example_on_serve_answers_tls_on_a_unix_socket_with_the_peers_process() {
    axum_example_serves_tls_on_a_unix_socket_on("serve").await;
}

#[tokio::test]
async fn axum_example_on_axum_server_answers_tls_on_a_unix_socket_with_the_peers_process() {
    axum_example_serves_tls_on_a_unix_socket_on("axum").await;
}

/// The tonic example on `server`: a gRPC health `Check` over TLS (tonic's client, ALPN `h2`)
/// answers `SERVING`; then exit 0 on `SIGTERM`.
async fn tonic_example_serves_grpc_over_tls_on(server: &str) {
    let identity = Identity::new();
    let example = Example::start("tonic", server, &identity, "127.0.0.1:0");

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", example.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let channel = within("the gRPC connection", channel.connect())
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    let response = within("the health check", check).await.unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    exits_zero_on_sigterm(example).await;
}

#[tokio::test]
async fn tonic_example_on_serve_answers_grpc_over_tls_and_exits_zero() {
    tonic_example_serves_grpc_over_tls_on("serve").await;
}

#[tokio::test]
async fn tonic_example_on_tonic_server_answers_grpc_over_tls_and_exits_zero() {
    tonic_example_serves_grpc_over_tls_on("tonic").await;
}

//! A gRPC health server over TLS (tonic's `ServerTlsConfig`, a certificate made now) that
//! logs the request ids it processed, and tonic clients over `ClientTlsConfig` with the
//! connector below tonic's TLS, as users write them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceBuilder;
use tower_drain::client::{PrefaceConnector, TransparentRetryLayer};

use super::{Client, Log};

/// How the server treats a connection before tonic's TLS acceptor sees it.
#[derive(Clone, Copy, Debug)]
pub enum Before {
    /// Reads the client's first bytes (its `ClientHello`), then closes: the client reads end
    /// of file in its handshake ("tls handshake eof").
    ReadThenClose,
    /// Closes at once: a balancer whose server is gone (a reset or an end of file, as the
    /// `ClientHello` races the close).
    CloseAtOnce,
    /// Hands it to the TLS server.
    Serve,
}

/// A TLS server and how to trust it.
pub struct TlsServer {
    pub log: Arc<Log>,
    addr: SocketAddr,
    ca: String,
}

/// Starts a TLS health server; connection `i` (from 0) is treated as `plan(i)` says.
pub async fn start_tls(plan: impl Fn(usize) -> Before + Send + Sync + 'static) -> TlsServer {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let log = Arc::new(Log::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, plan) = (log.clone(), Arc::new(plan));
    let incoming = futures_util::stream::unfold(listener, move |listener| {
        let (log, plan) = (accepted.clone(), plan.clone());
        async move {
            loop {
                let (mut stream, _) = listener.accept().await.ok()?;
                match plan(log.connections.fetch_add(1, Ordering::Relaxed)) {
                    Before::Serve => return Some((Ok::<_, std::io::Error>(stream), listener)),
                    Before::CloseAtOnce => drop(stream),
                    Before::ReadThenClose => {
                        let mut hello = [0; 1024];
                        let _ = stream.read(&mut hello).await;
                        drop(stream);
                    }
                }
            }
        }
    });
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&cert, &key));
    let service = HealthServer::new(Logged(log.clone()));
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(service);
    tokio::spawn(server.serve_with_incoming(incoming));
    TlsServer {
        log,
        addr,
        ca: cert,
    }
}

impl TlsServer {
    /// A tonic health client over `https://localhost:port` with tonic's TLS, the
    /// `PrefaceConnector` below it, behind `layer`.
    pub fn client(&self, layer: &TransparentRetryLayer) -> Client {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_with_connector_lazy(PrefaceConnector::new(http));
        HealthClient::new(ServiceBuilder::new().layer(layer.clone()).service(channel))
    }
}

/// Logs each id it is asked about, and answers `SERVING`.
struct Logged(Arc<Log>);

#[tonic::async_trait]
impl Health for Logged {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0.processed(&request.into_inner().service);
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

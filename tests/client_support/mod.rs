//! Servers that misbehave on purpose, and tonic clients behind `TransparentRetryLayer`, over
//! real sockets or in memory (`tokio::io::duplex`). Every server logs the request ids it
//! processed, so that a test can check each was processed exactly once.

#![allow(dead_code)]

pub mod raw;
pub mod server;
pub mod tls;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_drain::client::{PrefaceConnector, TransparentRetry, TransparentRetryLayer};

pub use raw::Last;
pub use server::{ConnPlan, StreamPlan};

/// Where the client connects: a TCP listener, or the server's end of in-memory pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    Tcp,
    Memory,
}

/// The request ids each server processed (read the whole request and acted on it).
#[derive(Default)]
pub struct Log {
    processed: Mutex<HashMap<String, u32>>,
    refused: Mutex<std::collections::HashSet<String>>,
    /// Streams a raw server received and dropped unprocessed.
    pub raw_streams: std::sync::atomic::AtomicUsize,
    pub connections: std::sync::atomic::AtomicUsize,
}

impl Log {
    pub fn processed(&self, id: &str) {
        *self
            .processed
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default() += 1;
    }

    /// Whether `id` is refused now: the first time it is asked about.
    pub fn refuse_once(&self, id: &str) -> bool {
        self.refused.lock().unwrap().insert(id.to_owned())
    }

    pub fn times(&self, id: &str) -> u32 {
        self.processed.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    /// Ids processed other than exactly once, among `ids`.
    pub fn not_once<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<(String, u32)> {
        let processed = self.processed.lock().unwrap();
        ids.into_iter()
            .map(|id| (id.clone(), processed.get(id).copied().unwrap_or(0)))
            .filter(|(_, n)| *n != 1)
            .collect()
    }
}

/// A running server and how to reach it.
pub struct Started {
    pub log: Arc<Log>,
    endpoint: Endpoint,
    memory: Option<mpsc::UnboundedSender<DuplexStream>>,
}

/// Starts a server on `net`; connection `i` (from 0) follows `plan(i)`.
pub async fn start(net: Net, plan: impl Fn(usize) -> ConnPlan + Send + Sync + 'static) -> Started {
    let log = Arc::new(Log::default());
    let plan = Arc::new(plan);
    match net {
        Net::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accept_log = log.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    stream.set_nodelay(true).unwrap();
                    let index = accept_log.connections.load(Ordering::Relaxed);
                    if plan(index).resets() {
                        let linger = Some(std::time::Duration::ZERO);
                        socket2::SockRef::from(&stream).set_linger(linger).unwrap();
                    }
                    server::spawn_connection(stream, &accept_log, &*plan);
                }
            });
            Started {
                log,
                endpoint: Endpoint::from_shared(format!("http://{addr}")).unwrap(),
                memory: None,
            }
        }
        Net::Memory => {
            let (tx, mut rx) = mpsc::unbounded_channel::<DuplexStream>();
            let accept_log = log.clone();
            tokio::spawn(async move {
                while let Some(stream) = rx.recv().await {
                    server::spawn_connection(stream, &accept_log, &*plan);
                }
            });
            Started {
                log,
                endpoint: Endpoint::from_static("http://in-memory.test"),
                memory: Some(tx),
            }
        }
    }
}

pub type Client = HealthClient<TransparentRetry<Channel>>;

impl Started {
    /// A tonic channel to the server, its connector behind `PrefaceConnector`.
    pub fn channel(&self) -> Channel {
        match &self.memory {
            None => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                self.endpoint
                    .connect_with_connector_lazy(PrefaceConnector::new(http))
            }
            Some(tx) => {
                let tx = tx.clone();
                let connector = tower::service_fn(move |_uri| {
                    let (client, server) = tokio::io::duplex(64 * 1024);
                    let sent = tx.send(server);
                    async move {
                        sent.map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
                        Ok::<_, io::Error>(TokioIo::new(client))
                    }
                });
                self.endpoint
                    .connect_with_connector_lazy(PrefaceConnector::new(connector))
            }
        }
    }

    /// A tonic health client over a new channel, behind `layer`.
    pub fn client(&self, layer: &TransparentRetryLayer) -> Client {
        HealthClient::new(
            ServiceBuilder::new()
                .layer(layer.clone())
                .service(self.channel()),
        )
    }
}

/// Makes `calls` calls (ids `{prefix}-{i}`), `concurrency` at a time, on clones of `client`;
/// returns the ids and the failures.
pub async fn run(
    client: &Client,
    prefix: &str,
    calls: usize,
    concurrency: usize,
) -> (Vec<String>, Vec<(String, tonic::Status)>) {
    let ids: Vec<String> = (0..calls).map(|i| format!("{prefix}-{i}")).collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (mut client, ids, next) = (client.clone(), ids.clone(), next.clone());
        tasks.spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let request = HealthCheckRequest {
                    service: id.clone(),
                };
                if let Err(status) = client.check(request).await {
                    failures.push((id.clone(), status));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failures.extend(done.unwrap());
    }
    (ids, failures)
}

/// One call with id `id`.
pub async fn call(client: &Client, id: &str) -> Result<(), tonic::Status> {
    let request = HealthCheckRequest {
        service: id.to_owned(),
    };
    client.clone().check(request).await.map(drop)
}

//! `--client h1`: one HTTP/1.1 keep-alive connection per worker, one request at a time
//! (HTTPS with `--ca`: a TLS handshake that fails is counted under `tls`, lost).
//!
//! A request that hyper hands back **unsent** because the connection had already closed (after
//! a `Connection: close` response) never reached the network; it is sent again on a new
//! connection and counted under `unsent`. Nothing else is retried: that is the load
//! balancer's job.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::stats::{describe, Outcome};
use super::tls::{self, Tls};
use super::{Client, Ctx, Job};

type Sender = http1::SendRequest<Empty<Bytes>>;

/// A worker's connection, opened on first use and again after it closed.
#[derive(Default)]
pub struct Http1 {
    sender: Option<Sender>,
}

impl Client for Http1 {
    async fn call(&mut self, ctx: &Ctx, job: Job) -> Outcome {
        let (path, expected) = (job.path(), job.expected());
        loop {
            let tls = ctx.tls.as_deref();
            match exchange(&mut self.sender, &ctx.target, tls, &path, &expected).await {
                Some(outcome) => return outcome,
                None => ctx.unsent(),
            }
        }
    }

    fn timed_out(&mut self) {
        self.sender = None;
    }
}

/// A new connection, or how it failed: (kind, message).
async fn connect(target: &str, tls: Option<&Tls>) -> Result<Sender, (&'static str, String)> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| ("connect", format!("connect {target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let stream = tls::wrap(tls, stream)
        .await
        .map_err(|e| ("tls", format!("TLS handshake: {e}")))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ("connect", format!("handshake: {e}")))?;
    tokio::spawn(async move {
        // Errors surface on the request that was in flight; nothing to add here.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on `sender` (reconnecting first if needed), reads the whole body and
/// checks it. Returns `None` if the request was never written because the connection was
/// already closing (the caller sends it again).
async fn exchange(
    sender: &mut Option<Sender>,
    target: &str,
    tls: Option<&Tls>,
    path: &str,
    expected: &str,
) -> Option<Outcome> {
    if !matches!(sender, Some(s) if !s.is_closed()) {
        match connect(target, tls).await {
            Ok(s) => *sender = Some(s),
            Err((kind, e)) => return Some(Outcome::Failed(kind.into(), e)),
        }
    }
    let s = sender.as_mut().expect("connected above");
    if s.ready().await.is_err() {
        *sender = None;
        return None;
    }
    let request = Request::get(path)
        .header(hyper::header::HOST, target)
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = match s.try_send_request(request).await {
        Ok(r) => r,
        Err(mut e) => {
            *sender = None;
            if e.take_message().is_some() {
                return None;
            }
            return Some(Outcome::Failed("closed".into(), describe(e.error())));
        }
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            *sender = None;
            return Some(Outcome::Failed("body".into(), describe(&e)));
        }
    };
    if !status.is_success() {
        return Some(Outcome::Status(status.as_u16()));
    }
    if body != expected.as_bytes() {
        let message = format!(
            "{status} with {} bytes, expected {} bytes (truncated or wrong body)",
            body.len(),
            expected.len()
        );
        return Some(Outcome::Failed("body".into(), message));
    }
    Some(Outcome::Ok)
}

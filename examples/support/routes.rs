//! Routes shared by the demo servers (`axum`, `naive`), so load tests compare like with like.
//!
//! - `GET /`: fast, small body.
//! - `GET /slow?ms=N`: answers after N ms (default 100, at most 60 000).
//! - `GET /stream?chunks=N&ms=M`: N chunks (default 10, at most 10 000), M ms apart
//!   (default 50, at most 60 000), as a chunked streaming body.
//! - `GET /bytes?n=N`: N bytes (default 1 MiB, at most 256 MiB) as **one** in-memory body with
//!   a `Content-Length`, like a large JSON response: 64-byte lines `0123..\n` repeated, cut at
//!   N. What a slow download across a shutdown is tested with.
//!
//! Bad query values get `400 Bad Request`, never a panic.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;

/// The demo routes, without any drain handling.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow))
        .route("/stream", get(stream))
        .route("/bytes", get(bytes))
}

/// The largest `/bytes` body.
const MAX_BYTES: u64 = 256 << 20;

/// One line of the `/bytes` body: 63 visible characters and a newline.
const LINE: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";

async fn bytes(Query(query): Query<HashMap<String, String>>) -> Response {
    let n = match param(&query, "n", 1 << 20, MAX_BYTES) {
        Ok(n) => n as usize, // at most 256 MiB: fits
        Err(bad) => return bad.into_response(),
    };
    let mut body = Vec::with_capacity(n);
    while body.len() + LINE.len() <= n {
        body.extend_from_slice(LINE);
    }
    body.extend_from_slice(&LINE[..n - body.len()]);
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(body),
    )
        .into_response()
}

async fn slow(Query(query): Query<HashMap<String, String>>) -> Response {
    let ms = match param(&query, "ms", 100, 60_000) {
        Ok(ms) => ms,
        Err(bad) => return bad.into_response(),
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms\n").into_response()
}

async fn stream(Query(query): Query<HashMap<String, String>>) -> Response {
    let (chunks, ms) = match (
        param(&query, "chunks", 10, 10_000),
        param(&query, "ms", 50, 60_000),
    ) {
        (Ok(chunks), Ok(ms)) => (chunks, ms),
        (Err(bad), _) | (_, Err(bad)) => return bad.into_response(),
    };
    let body = Chunks {
        left: chunks,
        sent: 0,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        every: Duration::from_millis(ms),
    };
    Body::new(body).into_response()
}

/// A body that yields `left` chunks, one every `every`.
struct Chunks {
    left: u64,
    sent: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        ready!(self.sleep.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        self.left -= 1;
        self.sent += 1;
        let chunk = format!("chunk {}\n", self.sent);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

fn param(
    query: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, (StatusCode, String)> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(value) if value <= max => Ok(value),
            _ => Err((
                StatusCode::BAD_REQUEST,
                format!("{name} must be a whole number from 0 to {max}\n"),
            )),
        },
    }
}

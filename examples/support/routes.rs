//! Routes shared by the demo servers (`axum`, `naive`), so load tests compare like with like.
//!
//! - `GET /`: fast, small body.
//! - `GET /slow?ms=N`: answers after N ms (default 100, at most 60 000).
//! - `GET /stream?chunks=N&ms=M`: N chunks (default 10, at most 10 000), M ms apart
//!   (default 50, at most 60 000), as a chunked streaming body.
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
}

async fn slow(Query(query): Query<HashMap<String, String>>) -> Response {
    let ms = match param(&query, "ms", 100, 60_000) {
        Ok(ms) => ms,
        Err(bad) => return bad,
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
        (Err(bad), _) | (_, Err(bad)) => return bad,
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
) -> Result<u64, Response> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u64>() {
            Ok(value) if value <= max => Ok(value),
            _ => Err((
                StatusCode::BAD_REQUEST,
                format!("{name} must be a whole number from 0 to {max}\n"),
            )
                .into_response()),
        },
    }
}

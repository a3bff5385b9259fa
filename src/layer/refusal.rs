//! The response to a request that arrives while draining: `503` for HTTP, `UNAVAILABLE` for gRPC.
//!
//! The inner service is never called, so the request was not processed and a client may retry
//! it safely on another instance.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};

use crate::layer::body::EarlyBody;
use crate::layer::connection_close::{close_connection, is_http1};

/// gRPC status code `UNAVAILABLE`: "the service is currently unavailable ... most likely a
/// transient condition, which can be corrected by retrying".
const GRPC_UNAVAILABLE: HeaderValue = HeaderValue::from_static("14");

/// How the layer answers refused requests. Built once, when the layer is configured.
#[derive(Clone, Debug)]
pub(crate) struct Rejection {
    retry_after: HeaderValue,
    message: Bytes,
    grpc_message: HeaderValue,
}

impl Default for Rejection {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(1),
            "service is shutting down, retry on another instance",
        )
    }
}

impl Rejection {
    pub(crate) fn new(retry_after: Duration, message: &str) -> Self {
        let mut rejection = Self {
            retry_after: retry_after_value(retry_after),
            message: Bytes::new(),
            grpc_message: HeaderValue::from_static(""),
        };
        rejection.set_message(message);
        rejection
    }

    pub(crate) fn set_retry_after(&mut self, retry_after: Duration) {
        self.retry_after = retry_after_value(retry_after);
    }

    pub(crate) fn set_message(&mut self, message: &str) {
        self.message = Bytes::from(format!("{message}\n"));
        self.grpc_message = HeaderValue::try_from(grpc_percent_encode(message))
            .expect("percent-encoding leaves only visible ASCII");
    }

    /// Builds the refusal for `request`.
    pub(crate) fn response<B>(&self, request: &Request<B>) -> Response<EarlyBody> {
        let mut response = if is_grpc(request) {
            self.grpc_response()
        } else {
            self.http_response()
        };
        // gRPC-web runs over HTTP/1.1 too: its keep-alive connection must not linger either.
        if is_http1(request.version()) {
            close_connection(&mut response);
        }
        response
    }

    fn http_response(&self) -> Response<EarlyBody> {
        let mut response = Response::new(EarlyBody::new(self.message.clone()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(RETRY_AFTER, self.retry_after.clone());
        response
    }

    /// A trailers-only gRPC response: HTTP 200 whose headers carry the status, and no body,
    /// which gRPC clients (tonic included) report as `Code::Unavailable`.
    fn grpc_response(&self) -> Response<EarlyBody> {
        let mut response = Response::new(EarlyBody::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", GRPC_UNAVAILABLE);
        headers.insert("grpc-message", self.grpc_message.clone());
        response
    }
}

/// Whether the request is gRPC (`application/grpc`, `application/grpc+proto`, `application/grpc-web`...).
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    request
        .headers()
        .get(CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|ct| {
            ct.len() >= PREFIX.len() && ct[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        })
}

/// `Retry-After` in whole seconds, rounded up (a sub-second value still means "retry later").
fn retry_after_value(retry_after: Duration) -> HeaderValue {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    HeaderValue::from(secs)
}

/// `grpc-message` is percent-encoded: bytes outside visible ASCII and `%` itself are escaped.
fn grpc_percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_escapes_non_ascii_and_percent() {
        assert_eq!(grpc_percent_encode("50% off é"), "50%25 off %C3%A9");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
        assert_eq!(retry_after_value(Duration::ZERO), "0");
    }

    #[test]
    fn grpc_web_refusal_over_http1_closes_the_connection() {
        let request = Request::builder()
            .version(http::Version::HTTP_11)
            .header(CONTENT_TYPE, "application/grpc-web+proto")
            .body(())
            .unwrap();
        let response = Rejection::default().response(&request);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()[http::header::CONNECTION], "close");
    }

    #[test]
    fn grpc_refusal_over_http2_has_no_connection_header() {
        let request = Request::builder()
            .version(http::Version::HTTP_2)
            .header(CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        let response = Rejection::default().response(&request);
        assert!(response.headers().get(http::header::CONNECTION).is_none());
    }

    #[test]
    fn grpc_detection_accepts_subtypes_and_any_case() {
        let req = |ct: &str| {
            Request::builder()
                .header(CONTENT_TYPE, ct)
                .body(())
                .unwrap()
        };
        assert!(is_grpc(&req("application/grpc")));
        assert!(is_grpc(&req("Application/GRPC+proto")));
        assert!(!is_grpc(&req("application/json")));
        assert!(!is_grpc(&Request::new(())));
    }
}

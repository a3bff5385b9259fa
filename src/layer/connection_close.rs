//! `Connection: close` on HTTP/1.x once shutdown is announced, so keep-alive clients reconnect
//! to another instance instead of sending their next request here.

use http::header::{HeaderValue, CONNECTION};
use http::{Response, Version};

/// HTTP/1.x is the only protocol with connection-specific headers; on HTTP/2 and HTTP/3 they
/// are protocol errors (RFC 9113 §8.2.2), and those connections close with `GOAWAY` instead.
#[inline]
pub(crate) fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

/// Asks the client to close the connection after this response, unless the response is an
/// interim or protocol-switching one (`101 Switching Protocols` must keep `Connection: upgrade`).
pub(crate) fn close_connection<B>(response: &mut Response<B>) {
    if response.status().is_informational() {
        return;
    }
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

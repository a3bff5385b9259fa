//! Which protocol a new connection speaks, read before hyper sees it: an HTTP/2 connection can
//! be told to leave at once (`GOAWAY`), an HTTP/1.x one only with its next response, and
//! hyper-util's own detection, once started, cannot be asked to leave without closing.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// The start of HTTP/2's connection preface (RFC 9113 §3.4). No HTTP/1.x request line starts
/// with it: `PRI` is the preface's own method.
const PREFACE: &[u8] = b"PRI ";

/// Peeks at the first bytes of `stream` without consuming them. `Ok(None)`: the client closed
/// before sending anything.
pub(super) async fn detect(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut buf = [0; PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(Some(Protocol::Http1));
        }
        if n == PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
        // The first bytes match so far but more are needed. `peek` returns at once while
        // data is buffered, so wait a little before looking again (the preface is one
        // segment in practice; the caller bounds the wait).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

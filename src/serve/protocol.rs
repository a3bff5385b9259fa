//! Which protocol a new connection speaks, read before hyper sees it: an HTTP/2 connection can
//! be told to leave at once (`GOAWAY`), an HTTP/1.x one only with its next response, and
//! hyper-util's own detection, once started, cannot be asked to leave without closing.
//!
//! The first bytes are read, not peeked, so that any stream works (TCP, Unix, TLS, yours);
//! [`Prefix`] hands them to hyper first (`conn_io.rs`).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// The start of HTTP/2's connection preface (RFC 9113 §3.4). No HTTP/1.x request line starts
/// with it: `PRI` is the preface's own method.
const PREFACE: &[u8; 4] = b"PRI ";

/// The bytes read to tell the protocol, to be read again by hyper.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Prefix {
    pub(super) bytes: [u8; PREFACE.len()],
    pub(super) len: u8,
}

/// Reads the first bytes of `io`, until they tell the protocol. `Ok(None)`: the client closed
/// first. Cancel safe in the sense that matters: what was read is in `prefix`.
pub(super) async fn detect<Io: AsyncRead + Unpin>(
    io: &mut Io,
    prefix: &mut Prefix,
) -> io::Result<Option<Protocol>> {
    loop {
        let len = usize::from(prefix.len);
        let read = &prefix.bytes[..len];
        if read != &PREFACE[..len] {
            return Ok(Some(Protocol::Http1));
        }
        if len == PREFACE.len() {
            return Ok(Some(Protocol::Http2));
        }
        let n = io.read(&mut prefix.bytes[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        prefix.len += n as u8; // at most PREFACE.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn detect_from(chunks: &[&[u8]]) -> (Option<Protocol>, Prefix) {
        let mut builder = chunked(chunks);
        let mut prefix = Prefix::default();
        let protocol = detect(&mut builder, &mut prefix).await.unwrap();
        (protocol, prefix)
    }

    /// A reader that yields `chunks` one read at a time, then EOF.
    fn chunked(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let mut all = Vec::new();
        for chunk in chunks {
            all.push(std::io::Cursor::new(chunk.to_vec()));
        }
        Chunks(all.into_iter().collect())
    }

    struct Chunks(std::collections::VecDeque<std::io::Cursor<Vec<u8>>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let pos = chunk.position() as usize;
                let rest = &chunk.get_ref()[pos..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                chunk.set_position((pos + n) as u64);
                if (chunk.position() as usize) < chunk.get_ref().len() {
                    self.0.push_front(chunk);
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_preface_in_pieces_is_http2_and_kept_for_hyper() {
        let (protocol, prefix) = detect_from(&[b"P", b"RI", b" * HTTP/2.0"]).await;
        assert_eq!(protocol, Some(Protocol::Http2));
        assert_eq!(&prefix.bytes[..usize::from(prefix.len)], b"PRI ");
    }

    #[tokio::test]
    async fn a_request_line_is_http1_from_its_first_byte_that_differs() {
        let (protocol, prefix) = detect_from(&[b"GET / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(protocol, Some(Protocol::Http1));
        assert_eq!(&prefix.bytes[..usize::from(prefix.len)], b"GET ");
        let (protocol, prefix) = detect_from(&[b"P", b"OST /"]).await;
        assert_eq!(protocol, Some(Protocol::Http1));
        assert_eq!(&prefix.bytes[..usize::from(prefix.len)], b"POST");
    }

    #[tokio::test]
    async fn a_client_that_closes_first_is_none() {
        assert_eq!(detect_from(&[]).await.0, None);
        assert_eq!(detect_from(&[b"PR"]).await.0, None);
    }
}

//! [`HeldPong`]: an HTTP/2 connection's graceful `GOAWAY` without refused streams.
//!
//! hyper (h2) says goodbye in two steps, as RFC 9113 §6.8 advises: a `GOAWAY` with the
//! largest stream id and a `PING`; once the client acknowledges the `PING` (one round trip), a
//! second `GOAWAY` with the last stream it processed, and every stream above that id is refused.
//! The round trip is meant to let through the streams the client opened before it saw the first
//! `GOAWAY`. But clients write a `PING` acknowledgement ahead of the frames they have queued
//! (h2, the Rust client under hyper and tonic, does; so do others): the streams queued when the
//! first `GOAWAY` arrived reach the server just after the acknowledgement, above the final
//! last-stream-id, and are refused. A client that retries a refused stream once may lose it.
//!
//! So, once hyper has been asked to say goodbye, the acknowledgement of its shutdown `PING` is
//! held back from it until the client has nothing more to send for now: until a read of the
//! socket would wait, at a frame boundary. The frames that followed the acknowledgement (the
//! queued streams) reach hyper first, are accepted, and counted below the final `GOAWAY`'s
//! last-stream-id. Reordering a client's `PING` acknowledgement after its other frames is what
//! the client could have written itself; nothing else changes.
//!
//! The acknowledgement is found by its 17 bytes (frame header and h2's shutdown payload) in
//! each read once the goodbye has begun. One split across two reads is not found and reaches
//! hyper as it came (the refusal this avoids may then happen, as without it). The same bytes
//! inside a `DATA` frame, which only a client that read h2's source could send, would be moved
//! within that client's own stream, breaking only its own connection.

use std::io;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;

/// A `PING` frame with the `ACK` flag, on stream 0, carrying h2's shutdown payload.
const SHUTDOWN_PONG: [u8; 17] = [
    0, 0, 8,   // length
    0x6, // PING
    0x1, // ACK
    0, 0, 0, 0, // stream 0
    0x0b, 0x7b, 0xa2, 0xf0, 0x8b, 0x9b, 0xfe, 0x54, // h2's `Ping::SHUTDOWN`
];

const FRAME_HEADER: usize = 9;

/// Holds the client's acknowledgement of the shutdown `PING` back from hyper (see the module's
/// docs). One per HTTP/2 connection; it does nothing until [`HeldPong::watch`] is called.
#[derive(Debug, Default)]
pub(super) struct HeldPong {
    phase: Phase,
    /// Where the client's frames stand, from the acknowledgement on.
    cursor: FrameCursor,
    /// A read has waited since the acknowledgement was held: the client has sent what it had.
    waited: bool,
    /// Bytes owed to hyper before the next read of the socket: the acknowledgement, then what
    /// followed the boundary it was put back at.
    owed: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// hyper has not been asked to say goodbye.
    #[default]
    Idle,
    /// The shutdown `PING` may be acknowledged in any read from now on.
    Watching,
    /// Acknowledged, and held back.
    Held,
    /// Given to hyper.
    Done,
}

impl HeldPong {
    /// hyper is about to say goodbye: look for the acknowledgement from now on.
    pub(super) fn watch(&mut self) {
        if self.phase == Phase::Idle {
            self.phase = Phase::Watching;
        }
    }

    /// Whether reads must go through [`HeldPong::poll_read`]: from [`HeldPong::watch`] until
    /// the acknowledgement has been given to hyper.
    pub(super) fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Watching | Phase::Held) || !self.owed.is_empty()
    }

    /// One read for hyper into `buf`, through `read` (the socket's read): what was read, with
    /// the acknowledgement taken out of it or put back.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        read: impl FnOnce(&mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        if !self.owed.is_empty() {
            self.pay(buf);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match read(cx, buf) {
            Poll::Pending => {
                if self.phase == Phase::Held {
                    if self.cursor.at_boundary() {
                        // The client has sent what it had: hyper may see the acknowledgement.
                        self.give_back(buf, before);
                        return Poll::Ready(Ok(()));
                    }
                    self.waited = true;
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                // The client closed its side: what it acknowledged goes first.
                if self.phase == Phase::Held && self.cursor.at_boundary() {
                    self.give_back(buf, before);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => {
                self.on_read(buf, before);
                if buf.filled().len() == before {
                    // The read was the acknowledgement alone, taken out: an empty read would
                    // tell hyper the client closed. Read again.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }

    /// `buf` holds new bytes from `before` on.
    fn on_read(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        let mut from = before;
        if self.phase == Phase::Watching {
            let Some(at) = find(&buf.filled()[before..], &SHUTDOWN_PONG) else {
                return;
            };
            // Taken out: the bytes after it move up.
            let at = before + at;
            let end = buf.filled().len();
            buf.filled_mut()
                .copy_within(at + SHUTDOWN_PONG.len()..end, at);
            buf.set_filled(end - SHUTDOWN_PONG.len());
            self.phase = Phase::Held;
            self.cursor = FrameCursor::default();
            from = at;
        }
        if self.phase != Phase::Held {
            return;
        }
        // Once a read has waited, at the first frame boundary: hyper gets what came before it,
        // then the acknowledgement, then the rest.
        let boundary = self.cursor.advance(&buf.filled()[from..], self.waited);
        if let Some(offset) = boundary {
            let at = from + offset;
            self.owed.extend_from_slice(&SHUTDOWN_PONG);
            self.owed.extend_from_slice(&buf.filled()[at..]);
            buf.set_filled(at);
            self.phase = Phase::Done;
            if at == before {
                // Nothing before it in this read: it is what this read gives.
                self.pay(buf);
            }
        }
    }

    /// The acknowledgement, into `buf` (empty from `before` on) now.
    fn give_back(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        debug_assert_eq!(buf.filled().len(), before);
        self.owed.extend_from_slice(&SHUTDOWN_PONG);
        self.phase = Phase::Done;
        self.pay(buf);
    }

    /// Copies what is owed into `buf`, as much as fits.
    fn pay(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.owed.len().min(buf.remaining());
        buf.put_slice(&self.owed[..n]);
        self.owed.drain(..n);
        if self.owed.is_empty() {
            self.owed = Vec::new();
        }
    }
}

/// Where a stream of HTTP/2 frames stands: in a frame's header, in its payload, or between
/// frames.
#[derive(Debug, Default, Clone, Copy)]
struct FrameCursor {
    header: [u8; FRAME_HEADER],
    /// Bytes of the current frame's header seen (0: between frames, or in a payload).
    in_header: usize,
    /// Bytes of the current frame's payload still to come.
    payload_left: usize,
}

impl FrameCursor {
    fn at_boundary(&self) -> bool {
        self.in_header == 0 && self.payload_left == 0
    }

    /// Walks `bytes`. With `stop`, returns the offset of the first frame boundary in them (0
    /// if they start at one); without, walks them all and returns `None`.
    fn advance(&mut self, bytes: &[u8], stop: bool) -> Option<usize> {
        let mut at = 0;
        loop {
            if stop && self.at_boundary() {
                return Some(at);
            }
            if at == bytes.len() {
                return None;
            }
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() - at);
                self.payload_left -= n;
                at += n;
                continue;
            }
            let n = (FRAME_HEADER - self.in_header).min(bytes.len() - at);
            self.header[self.in_header..self.in_header + n].copy_from_slice(&bytes[at..at + n]);
            self.in_header += n;
            at += n;
            if self.in_header == FRAME_HEADER {
                let [a, b, c, ..] = self.header;
                self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.in_header = 0;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut bytes = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0x4,
            0,
            0,
            0,
        ];
        bytes.push(stream);
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Reads `chunks` one after the other through `held` (`None`: the socket would wait), as
    /// hyper would, into a large buffer each time; returns what hyper got, in order.
    fn run(held: &mut HeldPong, chunks: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut chunks = chunks.iter();
        let mut next = chunks.next();
        while let Some(chunk) = next {
            let mut storage = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut storage);
            let mut consumed = false;
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let poll = held.poll_read(&mut cx, &mut buf, |_, buf| {
                consumed = true;
                match chunk {
                    Some(bytes) => {
                        buf.put_slice(bytes);
                        Poll::Ready(Ok(()))
                    }
                    None => Poll::Pending,
                }
            });
            if let Poll::Ready(result) = poll {
                result.unwrap();
            }
            seen.extend_from_slice(buf.filled());
            if consumed {
                next = chunks.next();
            }
        }
        while !held.owed.is_empty() {
            let mut storage = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut storage);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = held.poll_read(&mut cx, &mut buf, |_, _| Poll::Pending);
            seen.extend_from_slice(buf.filled());
        }
        seen
    }

    #[test]
    fn streams_written_after_the_acknowledgement_reach_hyper_before_it() {
        let headers = [
            frame(0x1, 3, b"\x82\x86\x84"),
            frame(0x1, 5, b"\x82\x86\x84"),
        ]
        .concat();
        let mut held = HeldPong::default();
        held.watch();
        let read = [SHUTDOWN_PONG.to_vec(), headers.clone()].concat();
        let seen = run(&mut held, &[Some(read), None]);
        assert_eq!(seen, [headers, SHUTDOWN_PONG.to_vec()].concat());
        assert!(!held.is_active());
    }

    #[test]
    fn a_frame_split_across_reads_is_completed_before_the_acknowledgement() {
        let data = frame(0x0, 3, &[7u8; 100]);
        let after = frame(0x1, 5, b"\x82\x86\x84");
        let mut held = HeldPong::default();
        held.watch();
        let first = [SHUTDOWN_PONG.to_vec(), data[..40].to_vec()].concat();
        let seen = run(
            &mut held,
            &[
                Some(first),
                None,
                Some([data[40..].to_vec(), after.clone()].concat()),
            ],
        );
        // Given back at the first boundary after the wait: after the DATA frame, before the
        // HEADERS that came with its end.
        assert_eq!(seen, [data, SHUTDOWN_PONG.to_vec(), after].concat());
    }

    #[test]
    fn a_header_split_across_reads_is_walked_whole() {
        let headers = frame(0x1, 3, b"\x82\x86\x84");
        let mut held = HeldPong::default();
        held.watch();
        let seen = run(
            &mut held,
            &[
                Some([SHUTDOWN_PONG.to_vec(), headers[..4].to_vec()].concat()),
                None,
                Some(headers[4..].to_vec()),
                None,
            ],
        );
        assert_eq!(seen, [headers, SHUTDOWN_PONG.to_vec()].concat());
    }

    #[test]
    fn nothing_is_touched_before_the_goodbye_nor_after_the_acknowledgement_is_given() {
        let mut held = HeldPong::default();
        let read = [SHUTDOWN_PONG.to_vec(), frame(0x1, 3, b"\x82")].concat();
        assert_eq!(
            run(&mut held, &[Some(read.clone())]),
            read,
            "not watching yet"
        );
        held.watch();
        run(&mut held, &[Some(SHUTDOWN_PONG.to_vec()), None]);
        assert!(!held.is_active());
        assert_eq!(run(&mut held, &[Some(read.clone())]), read, "done");
    }

    #[test]
    fn a_read_of_the_acknowledgement_alone_is_not_taken_for_the_end_of_the_stream() {
        let mut held = HeldPong::default();
        held.watch();
        let mut storage = [0u8; 64];
        let mut buf = ReadBuf::new(&mut storage);
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Flag(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        let poll = held.poll_read(&mut cx, &mut buf, |_, buf| {
            buf.put_slice(&SHUTDOWN_PONG);
            Poll::Ready(Ok(()))
        });
        assert!(poll.is_pending(), "not an empty read");
        assert!(
            woken.load(std::sync::atomic::Ordering::Relaxed),
            "and read again"
        );
        let poll = held.poll_read(&mut cx, &mut buf, |_, _| Poll::Pending);
        assert!(poll.is_ready());
        assert_eq!(buf.filled(), SHUTDOWN_PONG);
    }

    #[test]
    fn the_acknowledgement_goes_first_when_the_client_closes() {
        let mut held = HeldPong::default();
        held.watch();
        let seen = run(&mut held, &[Some(SHUTDOWN_PONG.to_vec()), Some(Vec::new())]);
        assert_eq!(seen, SHUTDOWN_PONG.to_vec());
    }

    #[test]
    fn another_ping_acknowledgement_passes_through() {
        let mut user_pong = SHUTDOWN_PONG;
        user_pong[9] ^= 0xff;
        let mut held = HeldPong::default();
        held.watch();
        let seen = run(&mut held, &[Some(user_pong.to_vec()), None]);
        assert_eq!(seen, user_pong.to_vec());
        assert!(held.is_active(), "still watching for the shutdown one");
    }
}

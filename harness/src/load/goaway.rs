//! When each client connection is told to go away: the h2 and gRPC clients read their TCP
//! stream through [`Watched`], which notes the moment a `GOAWAY` frame arrives.
//!
//! Why on the wire: h2's API reveals a received `GOAWAY` only when the client next tries to
//! open a stream (`recv_go_away` stores it as the connection error that
//! `SendRequest::poll_ready` then returns, see `poll_pending_open` in h2's
//! `proto/streams/streams.rs`; nothing wakes a task when it arrives), and tonic's channel not at
//! all. So [`Watched`] follows the frame headers of what the connection reads (RFC 9113 §4.1:
//! 3 bytes length, 1 type, 1 flags, 4 stream id) and records every `GOAWAY` (type `0x7`) with
//! its last-stream-id, in CLOCK_REALTIME microseconds.
//!
//! The script writes `signal EPOCH_US` on the load generator's standard input as it sends
//! `SIGTERM` (bash's `$EPOCHREALTIME`, the same clock): [`Log::report`] lines each restart's
//! `GOAWAY`s up with it. The delay it reports is from `SIGTERM` to the `GOAWAY`'s arrival at
//! the client, so it includes the server's reaction, the load balancer and the client's read.
//! Behind HAProxy `mode tcp` the server's frames reach the client unchanged; behind an L7
//! balancer (HAProxy `mode http`, nginx) the client's connection ends at the balancer, and a
//! `GOAWAY` seen there is the balancer's own.
//!
//! The same watcher counts the streams the other side **refused** (RFC 9113 §8.7), whatever
//! the client then does with them: every `RST_STREAM` with `REFUSED_STREAM` it reads, and every
//! stream the client opened above the final `GOAWAY`'s last-stream-id. For the second it also
//! follows what the client writes (the 24-byte preface, then frame headers) and keeps the
//! highest stream id the client opened with `HEADERS`; client stream ids are odd and
//! increasing (§5.1.1), so the streams above a last-stream-id `L` are the odd ids in
//! `(L, highest]`. The client opens no stream once it has read the `GOAWAY`, and those it wrote
//! before are the ones refused. [`Log::refused`] gives the totals.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The last-stream-id of a graceful shutdown's first `GOAWAY` (RFC 9113 §6.8): "stop opening
/// streams", the final one follows.
const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// CLOCK_REALTIME in microseconds, the clock of bash's `$EPOCHREALTIME`.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The type of a `GOAWAY` frame, and of an `RST_STREAM`, a `HEADERS` and a `PING` frame
/// (RFC 9113 §6), and the `ACK` flag of a `PING`.
const GOAWAY: u8 = 0x7;
const RST_STREAM: u8 = 0x3;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// The error code `REFUSED_STREAM` (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;

/// What the client writes first on an HTTP/2 connection (RFC 9113 §3.4), before any frame.
const CLIENT_PREFACE_LEN: usize = 24;

/// What one client connection saw, in microseconds.
#[derive(Default)]
struct Record {
    opened: u64,
    /// The first `GOAWAY`.
    first: Option<u64>,
    /// The first `GOAWAY` with a last-stream-id below the maximum: the final one.
    last: Option<u64>,
    /// The lowest last-stream-id of the `GOAWAY`s received.
    last_stream_id: Option<u32>,
    /// The highest stream id the client opened (`HEADERS` written), 0 before the first.
    highest_opened: u32,
    /// `highest_opened` when the client acknowledged the first `PING` after the first
    /// `GOAWAY`: a graceful shutdown's `PING`, whose acknowledgement makes the server send the
    /// final `GOAWAY` with the last stream it has seen by then.
    highest_at_pong: Option<u32>,
    /// Streams reset with `REFUSED_STREAM`: when, and the stream id.
    refused_resets: Vec<(u64, u32)>,
    /// Closed by the peer (end of stream, read error) or dropped by the client.
    ended: Option<u64>,
    /// Closed by the peer, not by the client.
    peer_closed: bool,
}

impl Record {
    /// The streams the client opened above the final `GOAWAY`'s last-stream-id and that were
    /// not reset with `REFUSED_STREAM` as well (a server may do both), and when: the final
    /// `GOAWAY`'s arrival.
    fn refused_by_goaway(&self) -> Option<(u64, u64)> {
        let (at, last) = (self.last?, self.last_stream_id?);
        let odd_up_to = |id: u32| u64::from(id).div_ceil(2); // odd ids in 1..=id
        let above = odd_up_to(self.highest_opened).saturating_sub(odd_up_to(last));
        let reset_above = self.refused_resets.iter().filter(|r| r.1 > last).count() as u64;
        Some((at, above.saturating_sub(reset_above)))
    }

    /// Of the streams above the final `GOAWAY`'s last-stream-id, those the client wrote after
    /// acknowledging the shutdown `PING`: the acknowledgement overtook them.
    fn opened_after_pong(&self) -> u64 {
        let (Some(last), Some(at_pong), Some(_)) =
            (self.last_stream_id, self.highest_at_pong, self.last)
        else {
            return 0;
        };
        let odd_up_to = |id: u32| u64::from(id).div_ceil(2);
        odd_up_to(self.highest_opened).saturating_sub(odd_up_to(last.max(at_pong)))
    }

    /// Every refusal of the connection: (when, how many).
    fn refusals(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let resets = self.refused_resets.iter().map(|&(at, _)| (at, 1));
        resets.chain(self.refused_by_goaway())
    }
}

/// The streams refused in a whole run (see the module's documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Reset with `REFUSED_STREAM`.
    pub reset: u64,
    /// Opened above a `GOAWAY`'s last-stream-id.
    pub goaway: u64,
    /// Of `goaway`, the streams the client wrote after its acknowledgement of the server's
    /// shutdown `PING` (the `PING` after the first `GOAWAY`): the client's `PING` ack overtook
    /// streams it had already opened, so the server's final `GOAWAY` could not include them.
    pub goaway_after_pong: u64,
}

impl Refused {
    /// Both kinds.
    pub fn total(&self) -> u64 {
        self.reset + self.goaway
    }
}

/// Every connection of the run and every `signal`.
#[derive(Default)]
pub struct Log {
    records: Mutex<Vec<Record>>,
    signals: Mutex<Vec<(String, u64)>>,
}

impl Log {
    /// Records `SIGTERM` sent at `at` (microseconds), during the phase `label`.
    pub fn signal(&self, label: &str, at: u64) {
        self.signals.lock().unwrap().push((label.to_string(), at));
    }

    fn open(&self) -> usize {
        let mut records = self.records.lock().unwrap();
        records.push(Record {
            opened: now_us(),
            ..Record::default()
        });
        records.len() - 1
    }

    fn goaway(&self, id: usize, last_stream_id: u32) {
        let at = now_us();
        let record = &mut self.records.lock().unwrap()[id];
        record.first.get_or_insert(at);
        if last_stream_id < MAX_STREAM_ID {
            record.last.get_or_insert(at);
        }
        let lowest = record
            .last_stream_id
            .map_or(last_stream_id, |l| l.min(last_stream_id));
        record.last_stream_id = Some(lowest);
    }

    fn refused_reset(&self, id: usize, stream_id: u32) {
        let at = now_us();
        self.records.lock().unwrap()[id]
            .refused_resets
            .push((at, stream_id));
    }

    fn opened_stream(&self, id: usize, stream_id: u32) {
        let record = &mut self.records.lock().unwrap()[id];
        record.highest_opened = record.highest_opened.max(stream_id);
    }

    fn ping_acked(&self, id: usize) {
        let record = &mut self.records.lock().unwrap()[id];
        if record.first.is_some() && record.highest_at_pong.is_none() {
            record.highest_at_pong = Some(record.highest_opened);
        }
    }

    /// The streams refused over the whole run, on every connection.
    pub fn refused(&self) -> Refused {
        let records = self.records.lock().unwrap();
        let mut refused = Refused::default();
        for record in records.iter() {
            refused.reset += record.refused_resets.len() as u64;
            refused.goaway += record.refused_by_goaway().map_or(0, |(_, n)| n);
            refused.goaway_after_pong += record.opened_after_pong();
        }
        refused
    }

    fn ended(&self, id: usize, by_peer: bool) {
        let at = now_us();
        let record = &mut self.records.lock().unwrap()[id];
        if record.ended.is_none() {
            record.ended = Some(at);
            record.peer_closed = by_peer;
        }
    }

    /// One row per `signal` and the summary line (`GOAWAY told=.. min_ms=.. median_ms=..
    /// max_ms=.. final_median_ms=.. untold=.. later=..`); empty when no signal was given.
    ///
    /// For the signal at `t` (until the next one): `open` connections were open at `t` and
    /// not yet told; `told` of them got a `GOAWAY`, after the delays shown (`final`: the
    /// final `GOAWAY`); `untold` of them were closed by the peer without one; `later`
    /// connections opened after `t` got a `GOAWAY` too (a balancer sent them to the server
    /// being restarted), the last one `max` after `t`; `refused` streams were refused in the
    /// window, on any connection, `of later` of them on the `later` connections.
    pub fn report(&self) -> String {
        let signals = self.signals.lock().unwrap();
        if signals.is_empty() {
            return String::new();
        }
        let records = self.records.lock().unwrap();
        let mut out = format!(
            "GOAWAY after SIGTERM, ms  {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>7} {:>8}\n",
            "open", "told", "min", "median", "max", "final", "untold", "later", "max", "refused", "of later"
        );
        let (mut all, mut all_last, mut untold_total, mut later_total) = (vec![], vec![], 0, 0);
        let mut refused_later_total = 0;
        for (i, (label, t)) in signals.iter().enumerate() {
            let (t, until) = (*t, signals.get(i + 1).map_or(u64::MAX, |s| s.1));
            let in_window = |at: Option<u64>| at.is_some_and(|at| at >= t && at < until);
            let open_at_t = |r: &&Record| {
                r.opened < t && r.first.is_none_or(|a| a >= t) && r.ended.is_none_or(|a| a >= t)
            };
            let open: Vec<&Record> = records.iter().filter(open_at_t).collect();
            let mut told: Vec<u64> = open
                .iter()
                .filter_map(|r| delay(r.first, t, until))
                .collect();
            let mut last: Vec<u64> = open
                .iter()
                .filter_map(|r| delay(r.last, t, until))
                .collect();
            let untold = open
                .iter()
                .filter(|r| r.peer_closed && in_window(r.ended))
                .filter(|r| r.first.is_none_or(|a| a >= until))
                .count();
            let later: Vec<u64> = records
                .iter()
                .filter(|r| r.opened >= t && r.opened < until)
                .filter_map(|r| delay(r.first, t, until))
                .collect();
            let refused_in = |records: &mut dyn Iterator<Item = &Record>| -> u64 {
                records
                    .flat_map(Record::refusals)
                    .filter(|&(at, _)| in_window(Some(at)))
                    .map(|(_, n)| n)
                    .sum()
            };
            let refused = refused_in(&mut records.iter());
            let refused_later =
                refused_in(&mut records.iter().filter(|r| r.opened >= t && r.opened < until));
            told.sort_unstable();
            last.sort_unstable();
            out += &format!(
                "{:<25} {:>5} {:>5} {} {} {} {} {:>6} {:>6} {} {:>7} {:>8}\n",
                label,
                open.len(),
                told.len(),
                ms(told.first()),
                ms(median(&told)),
                ms(told.last()),
                ms(median(&last)),
                untold,
                later.len(),
                ms(later.iter().max()),
                refused,
                refused_later,
            );
            all.extend(told);
            all_last.extend(last);
            untold_total += untold;
            later_total += later.len();
            refused_later_total += refused_later;
        }
        all.sort_unstable();
        all_last.sort_unstable();
        let field = |v: Option<&u64>| v.map_or("-".into(), |us| format!("{:.1}", *us as f64 / 1e3));
        out += &format!(
            "GOAWAY signals={} told={} min_ms={} median_ms={} max_ms={} final_median_ms={} untold={untold_total} later={later_total} refused_later={refused_later_total}\n",
            signals.len(),
            all.len(),
            field(all.first()),
            field(median(&all)),
            field(all.last()),
            field(median(&all_last)),
        );
        out
    }
}

/// `at - t` if `at` is in `[t, until)`.
fn delay(at: Option<u64>, t: u64, until: u64) -> Option<u64> {
    at.filter(|&at| at >= t && at < until).map(|at| at - t)
}

fn median(sorted: &[u64]) -> Option<&u64> {
    sorted.get(sorted.len().saturating_sub(1) / 2)
}

fn ms(us: Option<&u64>) -> String {
    us.map_or(format!("{:>8}", "-"), |us| {
        format!("{:>8.1}", *us as f64 / 1e3)
    })
}

/// A frame the watcher acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// A `GOAWAY` and its last-stream-id.
    GoAway(u32),
    /// An `RST_STREAM`: the stream and the error code.
    Reset(u32, u32),
    /// A `HEADERS` frame on a stream.
    Headers(u32),
    /// A `PING` acknowledgement.
    PingAck,
}

/// Follows the HTTP/2 frames of one direction of a connection.
#[derive(Default)]
struct Frames {
    /// Bytes still to skip before the first frame (the client's preface).
    skip: usize,
    header: [u8; 9],
    /// Header bytes of the current frame read so far (while `payload_left` is 0).
    filled: usize,
    payload_left: usize,
    /// The current frame is a `GOAWAY` or an `RST_STREAM`: its type, stream id, the bytes of
    /// payload it needs (8: last-stream-id and error code; 4: error code) and those read so
    /// far.
    wanted: Option<(u8, u32, usize, usize, [u8; 8])>,
}

impl Frames {
    /// Follows what the client writes: its preface, then frames.
    fn client() -> Self {
        Frames {
            skip: CLIENT_PREFACE_LEN,
            ..Frames::default()
        }
    }

    /// Reads `bytes`; calls `found` for every `GOAWAY`, `RST_STREAM`, `HEADERS` frame and
    /// `PING` acknowledgement.
    fn feed(&mut self, mut bytes: &[u8], mut found: impl FnMut(Frame)) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        while !bytes.is_empty() {
            if self.payload_left == 0 {
                let n = (9 - self.filled).min(bytes.len());
                self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                self.filled += n;
                bytes = &bytes[n..];
                if self.filled == 9 {
                    self.filled = 0;
                    self.start(&mut found);
                }
                continue;
            }
            let n = self.payload_left.min(bytes.len());
            if let Some((kind, stream, need, got, buf)) = &mut self.wanted {
                let take = (*need - *got).min(n);
                buf[*got..*got + take].copy_from_slice(&bytes[..take]);
                *got += take;
                if *got == *need {
                    let word = |at: usize| {
                        u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
                    };
                    found(if *kind == GOAWAY {
                        Frame::GoAway(word(0) & MAX_STREAM_ID)
                    } else {
                        Frame::Reset(*stream, word(0))
                    });
                    self.wanted = None;
                }
            }
            self.payload_left -= n;
            bytes = &bytes[n..];
        }
    }

    /// A frame header is complete: note what to collect of its payload, or report it.
    fn start(&mut self, found: &mut impl FnMut(Frame)) {
        let h = self.header;
        self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_STREAM_ID;
        // Frames too short for their fields are protocol errors: not followed.
        let need = match h[3] {
            GOAWAY => 8,
            RST_STREAM => 4,
            HEADERS => {
                found(Frame::Headers(stream));
                return;
            }
            PING if h[4] & ACK != 0 => {
                found(Frame::PingAck);
                return;
            }
            _ => return,
        };
        if self.payload_left >= need {
            self.wanted = Some((h[3], stream, need, 0, [0; 8]));
        }
    }
}

/// A client connection's stream, its reads watched for `GOAWAY` frames.
pub struct Watched<T> {
    io: T,
    /// What the server sends.
    frames: Frames,
    /// What the client sends.
    written: Frames,
    log: Arc<Log>,
    id: usize,
}

impl<T> Watched<T> {
    /// Starts watching a connection just opened.
    pub fn new(io: T, log: &Arc<Log>) -> Self {
        Watched {
            io,
            frames: Frames::default(),
            written: Frames::client(),
            id: log.open(),
            log: Arc::clone(log),
        }
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.log.ended(self.id, false);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let me = &mut *self;
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                me.log.ended(me.id, true);
            }
            Poll::Ready(Ok(())) => {
                let (log, id) = (&me.log, me.id);
                me.frames
                    .feed(&buf.filled()[before..], |frame| match frame {
                        Frame::GoAway(last) => log.goaway(id, last),
                        Frame::Reset(stream, REFUSED_STREAM) => log.refused_reset(id, stream),
                        Frame::Reset(..) | Frame::Headers(_) | Frame::PingAck => {}
                    });
            }
            Poll::Ready(Err(_)) => me.log.ended(me.id, true),
            Poll::Pending => {}
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            let me = &mut *self;
            let (log, id) = (&me.log, me.id);
            me.written.feed(&buf[..n], |frame| match frame {
                Frame::Headers(stream) => log.opened_stream(id, stream),
                Frame::PingAck => log.ping_acked(id),
                Frame::GoAway(_) | Frame::Reset(..) => {}
            });
        }
        written
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut bytes = vec![len[1], len[2], len[3], kind, 0];
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn goaway(last: u32) -> Vec<u8> {
        frame(
            GOAWAY,
            0,
            &[last.to_be_bytes(), 0u32.to_be_bytes()].concat(),
        )
    }

    /// Writes the client's preface and `HEADERS` on `streams` through a watched connection,
    /// in pieces that split the preface and the frame headers, then reads `from_server`.
    async fn run(streams: &[u32], from_server: &[u8]) -> Refused {
        let log = Arc::new(Log::default());
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut watched = Watched::new(client, &log);
        let mut written = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for &stream in streams {
            written.extend(frame(HEADERS, stream, &[0; 5]));
            written.extend(frame(0x0, stream, b"data"));
        }
        for piece in written.chunks(7) {
            watched.write_all(piece).await.unwrap();
        }
        let mut sink = vec![0; written.len()];
        server.read_exact(&mut sink).await.unwrap();
        server.write_all(from_server).await.unwrap();
        drop(server);
        let mut read = Vec::new();
        watched.read_to_end(&mut read).await.unwrap();
        log.refused()
    }

    #[tokio::test]
    async fn streams_above_the_final_goaway_count_as_refused() {
        let server = [goaway(MAX_STREAM_ID), goaway(3)].concat();
        let refused = run(&[1, 3, 5, 7], &server).await;
        assert_eq!(
            refused,
            Refused {
                reset: 0,
                goaway: 2,
                goaway_after_pong: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_goaway_above_every_stream_refuses_none() {
        let refused = run(&[1, 3, 5], &goaway(MAX_STREAM_ID)).await;
        assert_eq!(refused.total(), 0);
        let refused = run(&[1, 3, 5], &goaway(5)).await;
        assert_eq!(refused.total(), 0);
    }

    #[tokio::test]
    async fn a_goaway_with_last_stream_id_zero_refuses_every_stream() {
        let refused = run(&[1, 3, 5], &goaway(0)).await;
        assert_eq!(
            refused,
            Refused {
                reset: 0,
                goaway: 3,
                goaway_after_pong: 0,
            }
        );
    }

    #[tokio::test]
    async fn a_refused_reset_above_the_last_stream_id_counts_once() {
        let refused_stream = REFUSED_STREAM.to_be_bytes();
        let cancel = 0x8u32.to_be_bytes();
        let server = [
            frame(RST_STREAM, 1, &cancel),
            frame(RST_STREAM, 7, &refused_stream),
            goaway(3),
        ]
        .concat();
        let refused = run(&[1, 3, 5, 7], &server).await;
        assert_eq!(
            refused,
            Refused {
                reset: 1,
                goaway: 1,
                goaway_after_pong: 0,
            }
        );
    }

    #[tokio::test]
    async fn streams_written_after_the_shutdown_ping_ack_are_told_apart() {
        let log = Arc::new(Log::default());
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut watched = Watched::new(client, &log);
        let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        first.extend([frame(HEADERS, 1, &[0; 5]), frame(HEADERS, 3, &[0; 5])].concat());
        watched.write_all(&first).await.unwrap();
        let shutdown = [goaway(MAX_STREAM_ID), frame(PING, 0, &[0; 8])].concat();
        server.write_all(&shutdown).await.unwrap();
        let mut read = vec![0; shutdown.len()];
        watched.read_exact(&mut read).await.unwrap();
        // The acknowledgement goes out before stream 5, already opened, is written.
        let mut ack = frame(PING, 0, &[0; 8]);
        ack[4] = ACK;
        watched
            .write_all(&[ack, frame(HEADERS, 5, &[0; 5])].concat())
            .await
            .unwrap();
        server.write_all(&goaway(3)).await.unwrap();
        drop(server);
        watched.read_to_end(&mut read).await.unwrap();
        let refused = log.refused();
        assert_eq!(
            refused,
            Refused {
                reset: 0,
                goaway: 1,
                goaway_after_pong: 1
            }
        );
    }
}

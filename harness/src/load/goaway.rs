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

/// What one client connection saw, in microseconds.
struct Record {
    opened: u64,
    /// The first `GOAWAY`.
    first: Option<u64>,
    /// The first `GOAWAY` with a last-stream-id below the maximum: the final one.
    last: Option<u64>,
    /// Closed by the peer (end of stream, read error) or dropped by the client.
    ended: Option<u64>,
    /// Closed by the peer, not by the client.
    peer_closed: bool,
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
            first: None,
            last: None,
            ended: None,
            peer_closed: false,
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
    /// being restarted), the last one `max` after `t`.
    pub fn report(&self) -> String {
        let signals = self.signals.lock().unwrap();
        if signals.is_empty() {
            return String::new();
        }
        let records = self.records.lock().unwrap();
        let mut out = format!(
            "GOAWAY after SIGTERM, ms  {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8}\n",
            "open", "told", "min", "median", "max", "final", "untold", "later", "max"
        );
        let (mut all, mut all_last, mut untold_total, mut later_total) = (vec![], vec![], 0, 0);
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
            told.sort_unstable();
            last.sort_unstable();
            out += &format!(
                "{:<25} {:>5} {:>5} {} {} {} {} {:>6} {:>6} {}\n",
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
            );
            all.extend(told);
            all_last.extend(last);
            untold_total += untold;
            later_total += later.len();
        }
        all.sort_unstable();
        all_last.sort_unstable();
        let field = |v: Option<&u64>| v.map_or("-".into(), |us| format!("{:.1}", *us as f64 / 1e3));
        out += &format!(
            "GOAWAY signals={} told={} min_ms={} median_ms={} max_ms={} final_median_ms={} untold={untold_total} later={later_total}\n",
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

/// Follows the HTTP/2 frames of a byte stream read from the server.
#[derive(Default)]
struct Frames {
    header: [u8; 9],
    /// Header bytes of the current frame read so far (while `payload_left` is 0).
    filled: usize,
    payload_left: usize,
    /// The current frame is a `GOAWAY`: the first 8 bytes of its payload (last-stream-id,
    /// error code) read so far.
    goaway: Option<(usize, [u8; 8])>,
}

impl Frames {
    /// Reads `bytes`; calls `found(last_stream_id)` for every `GOAWAY`.
    fn feed(&mut self, mut bytes: &[u8], mut found: impl FnMut(u32)) {
        while !bytes.is_empty() {
            if self.payload_left == 0 {
                let n = (9 - self.filled).min(bytes.len());
                self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
                self.filled += n;
                bytes = &bytes[n..];
                if self.filled == 9 {
                    let h = self.header;
                    self.filled = 0;
                    self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    // A GOAWAY shorter than 8 bytes is a protocol error: not followed.
                    self.goaway = (h[3] == 0x7 && self.payload_left >= 8).then_some((0, [0; 8]));
                }
                continue;
            }
            let n = self.payload_left.min(bytes.len());
            if let Some((got, buf)) = &mut self.goaway {
                let take = (8 - *got).min(n);
                buf[*got..*got + take].copy_from_slice(&bytes[..take]);
                *got += take;
                if *got == 8 {
                    let id = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) & MAX_STREAM_ID;
                    self.goaway = None;
                    found(id);
                }
            }
            self.payload_left -= n;
            bytes = &bytes[n..];
        }
    }
}

/// A client connection's stream, its reads watched for `GOAWAY` frames.
pub struct Watched<T> {
    io: T,
    frames: Frames,
    log: Arc<Log>,
    id: usize,
}

impl<T> Watched<T> {
    /// Starts watching a connection just opened.
    pub fn new(io: T, log: &Arc<Log>) -> Self {
        Watched {
            io,
            frames: Frames::default(),
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
                    .feed(&buf.filled()[before..], |last| log.goaway(id, last));
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

//! A raw HTTP/2 peer for what the `h2` crate's server will not do: a one-step `GOAWAY` whose
//! last stream is the highest received (the streams above it, and the calls still queued in
//! the client, were not processed), or one below streams it received (last stream 0).
//!
//! It speaks just enough gRPC: requests are read from DATA frames (their HEADERS are not
//! decoded), answers are HPACK without the dynamic table.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use h2::Reason;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Log;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Which last stream the `GOAWAY` names.
#[derive(Clone, Copy, Debug)]
pub enum Last {
    /// 0: none of the streams received was processed.
    Zero,
    /// The highest stream received: those are served, later ones are not.
    Highest,
    /// The highest stream such that every stream up to it has been received whole and
    /// answered: nothing is left to serve, the server may close at once.
    Answered,
}

/// How the connection ends once the streams at or below the last one are served.
#[derive(Clone, Copy, Debug)]
pub enum Close {
    /// Reads until the client closes.
    Drain,
    /// Closes at once, unread bytes and all: over TCP with `SO_LINGER` 0 (set by the accept
    /// loop), a reset that reaches the client while it still writes.
    Reset,
}

/// Speaks first (empty `SETTINGS`), serves streams, and once `after` HEADERS have arrived
/// sends `GOAWAY(last, reason)`; serves the streams at or below `last`, then closes.
pub async fn goaway_after<T>(
    mut io: T,
    after: usize,
    last: Last,
    reason: Reason,
    close: Close,
    log: Arc<Log>,
) where
    T: AsyncRead + AsyncWrite + Unacked + Unpin,
{
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        run(&mut io, after, last, reason, close, &log),
    )
    .await;
}

async fn run<T>(
    io: &mut T,
    after: usize,
    last: Last,
    reason: Reason,
    close: Close,
    log: &Log,
) -> std::io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unacked + Unpin,
{
    io.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
    let mut magic = [0; 24];
    io.read_exact(&mut magic).await?;
    let mut seen = 0;
    let mut goaway: Option<u32> = None;
    // Streams received and not yet answered, with their body so far.
    let mut open: HashMap<u32, Vec<u8>> = HashMap::new();
    loop {
        if let Some(last) = goaway {
            if open.keys().all(|id| *id > last) {
                return match close {
                    Close::Drain => drain(io).await,
                    Close::Reset => {
                        delivered(io).await;
                        Ok(())
                    }
                };
            }
        }
        let mut header = [0; 9];
        io.read_exact(&mut header).await?;
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => io.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            HEADERS => {
                seen += 1;
                log.raw_streams.fetch_add(1, Ordering::Relaxed);
                open.insert(stream, Vec::new());
                if seen == after {
                    let named = match last {
                        Last::Zero => 0,
                        Last::Highest => stream,
                        // Streams are opened in order: every one below the lowest still
                        // open was received whole, and answered.
                        Last::Answered => open
                            .keys()
                            .min()
                            .map_or(stream, |low| low.saturating_sub(2)),
                    };
                    let mut body = [0; 8];
                    body[..4].copy_from_slice(&named.to_be_bytes());
                    body[4..].copy_from_slice(&u32::from(reason).to_be_bytes());
                    io.write_all(&frame(GOAWAY, 0, 0, &body)).await?;
                    goaway = Some(named);
                }
            }
            DATA => {
                if len > 0 {
                    let credit = (len as u32).to_be_bytes();
                    io.write_all(&frame(WINDOW_UPDATE, 0, 0, &credit)).await?;
                }
                if let Some(body) = open.get_mut(&stream) {
                    body.extend_from_slice(&payload);
                }
                if flags & END_STREAM != 0 {
                    let body = open.remove(&stream).unwrap_or_default();
                    if goaway.map_or(true, |last| stream <= last) {
                        answer(io, stream, &body, log).await?;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Waits until the client has acknowledged every byte written: a reset destroys what the
/// kernel has not sent yet (the `GOAWAY`, when the congestion window held it back).
async fn delivered<T: Unacked>(io: &mut T) {
    let start = tokio::time::Instant::now();
    while io.unacked() > 0 && start.elapsed() < Duration::from_secs(1) {
        tokio::task::yield_now().await;
    }
}

/// How many bytes written to a connection its peer has not acknowledged yet.
pub trait Unacked {
    fn unacked(&self) -> usize;
}

impl Unacked for tokio::io::DuplexStream {
    fn unacked(&self) -> usize {
        // What is written is in the client's buffer at once.
        0
    }
}

impl Unacked for tokio::net::TcpStream {
    /// The socket's `tx_queue` in `/proc/net/tcp` (what `SIOCOUTQ` reads: bytes written and not
    /// yet acknowledged, sent or not), found by its two addresses; 0 where there is none.
    fn unacked(&self) -> usize {
        let (Ok(std::net::SocketAddr::V4(local)), Ok(std::net::SocketAddr::V4(peer))) =
            (self.local_addr(), self.peer_addr())
        else {
            return 0;
        };
        // /proc writes an IPv4 address as its four bytes read as a native-endian u32, in hex.
        let hex = |addr: std::net::SocketAddrV4| {
            format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(addr.ip().octets()),
                addr.port()
            )
        };
        let (local, peer) = (hex(local), hex(peer));
        let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
            return 0;
        };
        table
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.len() > 4 && fields[1] == local && fields[2] == peer)
            .and_then(|fields| fields[4].split(':').next().map(str::to_owned))
            .and_then(|tx_queue| usize::from_str_radix(&tx_queue, 16).ok())
            .unwrap_or(0)
    }
}

/// Reads until the client closes: closing with unread bytes would send a TCP reset, which
/// can destroy the `GOAWAY` before the client reads it.
async fn drain<T: AsyncRead + Unpin>(io: &mut T) -> std::io::Result<()> {
    let mut rest = [0; 4096];
    while io.read(&mut rest).await? > 0 {}
    Ok(())
}

/// Processes a `HealthCheckRequest` and answers `SERVING`.
async fn answer<T: AsyncWrite + Unpin>(
    io: &mut T,
    stream: u32,
    body: &[u8],
    log: &Log,
) -> std::io::Result<()> {
    if let Some(id) = super::server::id_of(body) {
        log.processed(&id);
    }
    // `:status: 200` (static index 8), `content-type: application/grpc` (literal, name index 31).
    let mut head = vec![0x88, 0x0f, 0x10, 16];
    head.extend_from_slice(b"application/grpc");
    io.write_all(&frame(HEADERS, END_HEADERS, stream, &head))
        .await?;
    io.write_all(&frame(DATA, 0, stream, &[0, 0, 0, 0, 2, 0x08, 0x01]))
        .await?;
    // `grpc-status: 0` (literal, new name).
    let mut trailers = vec![0x00, 11];
    trailers.extend_from_slice(b"grpc-status");
    trailers.extend_from_slice(&[1, b'0']);
    io.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &trailers))
        .await
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

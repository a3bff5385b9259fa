//! A gRPC health server on the `h2` crate's server API, misbehaving as planned per
//! connection and per stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderMap, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::{raw, Log};

/// What a connection does.
#[derive(Clone, Copy, Debug)]
pub enum ConnPlan {
    /// Serves HTTP/2 with the streams following the plan.
    Serve(StreamPlan),
    /// Closes at once, before the server speaks (a balancer whose server is gone).
    CloseAtOnce,
    /// A raw HTTP/2 peer: once `after` HEADERS have arrived, sends `GOAWAY(last, reason)` in
    /// one step, serves the streams at or below `last`, then closes.
    RawGoAway {
        after: usize,
        last: raw::Last,
        reason: Reason,
    },
    /// A raw HTTP/2 peer: once `after` HEADERS have arrived, sends `GOAWAY(NO_ERROR)` naming
    /// the last stream it answered (every stream up to it was), and closes at once with a
    /// reset (`SO_LINGER` 0 over TCP) while the client still writes.
    RawGoAwayThenReset { after: usize },
}

impl ConnPlan {
    /// Whether a TCP connection following the plan is closed with a reset (`SO_LINGER` 0).
    pub fn resets(&self) -> bool {
        matches!(self, ConnPlan::RawGoAwayThenReset { .. })
    }
}

/// What the streams of a served connection do.
#[derive(Clone, Copy, Debug)]
pub enum StreamPlan {
    /// Processes and answers every stream.
    Normal,
    /// Refuses (`REFUSED_STREAM`, unprocessed) every `k`-th stream of the connection, unless
    /// its request id was refused before (so that no call is refused past its retries).
    RefuseEvery(usize),
    /// Processes, then resets with `reason` instead of answering.
    ResetAfterProcessing(Reason),
    /// Processes, then sends `GOAWAY` with `reason` (its last stream is this one) and closes.
    GoAwayAfterProcessing(Reason),
    /// Processes, then drops the connection without a word.
    DropAfterProcessing,
    /// Reads the connection's first body, logs it as processed, then refuses it
    /// (`REFUSED_STREAM`): a server that lies, to show the layer never replays a body past its
    /// cap. Later streams are served.
    ProcessThenRefuse,
}

enum Command {
    GoAway(Reason),
    Drop,
}

pub fn spawn_connection<T>(io: T, log: &Arc<Log>, plan: &(dyn Fn(usize) -> ConnPlan + Send + Sync))
where
    T: AsyncRead + AsyncWrite + raw::Unacked + Unpin + Send + 'static,
{
    let index = log.connections.fetch_add(1, Ordering::Relaxed);
    let log = log.clone();
    match plan(index) {
        ConnPlan::CloseAtOnce => drop(io),
        ConnPlan::RawGoAway {
            after,
            last,
            reason,
        } => {
            let close = raw::Close::Drain;
            tokio::spawn(raw::goaway_after(io, after, last, reason, close, log));
        }
        ConnPlan::RawGoAwayThenReset { after } => {
            let (last, reason, close) = (raw::Last::Answered, Reason::NO_ERROR, raw::Close::Reset);
            tokio::spawn(raw::goaway_after(io, after, last, reason, close, log));
        }
        ConnPlan::Serve(streams) => {
            tokio::spawn(serve(io, streams, log));
        }
    }
}

async fn serve<T>(io: T, plan: StreamPlan, log: Arc<Log>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    let (commands, mut command) = mpsc::unbounded_channel();
    let mut accepted = 0;
    loop {
        tokio::select! {
            stream = conn.accept() => {
                let Some(Ok((request, respond))) = stream else { return };
                accepted += 1;
                let refuse = matches!(plan, StreamPlan::RefuseEvery(k) if accepted % k == 0);
                tokio::spawn(handle(request, respond, plan, accepted == 1 || refuse, log.clone(), commands.clone()));
            }
            Some(command) = command.recv() => match command {
                Command::GoAway(reason) => conn.abrupt_shutdown(reason),
                Command::Drop => return,
            },
        }
    }
}

async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    plan: StreamPlan,
    first: bool,
    log: Arc<Log>,
    commands: mpsc::UnboundedSender<Command>,
) {
    let Some(id) = read_id(request.into_body()).await else {
        return;
    };
    if let StreamPlan::RefuseEvery(_) = plan {
        if first && log.refuse_once(&id) {
            return respond.send_reset(Reason::REFUSED_STREAM);
        }
    }
    log.processed(&id);
    match plan {
        StreamPlan::ResetAfterProcessing(reason) => return respond.send_reset(reason),
        StreamPlan::ProcessThenRefuse if first => {
            return respond.send_reset(Reason::REFUSED_STREAM)
        }
        StreamPlan::GoAwayAfterProcessing(reason) => {
            let _ = commands.send(Command::GoAway(reason));
            return;
        }
        StreamPlan::DropAfterProcessing => {
            let _ = commands.send(Command::Drop);
            return;
        }
        _ => {}
    }
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut stream) = respond.send_response(response, false) else {
        return;
    };
    // HealthCheckResponse { status: SERVING }, in a gRPC frame.
    let message = Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0x01]);
    if stream.send_data(message, false).is_err() {
        return;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let _ = stream.send_trailers(trailers);
}

/// Reads a `HealthCheckRequest` and returns its `service` field, the request's id.
async fn read_id(mut body: RecvStream) -> Option<String> {
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        message.extend_from_slice(&chunk);
    }
    id_of(&message)
}

/// The id in a gRPC-framed `HealthCheckRequest`.
pub fn id_of(message: &[u8]) -> Option<String> {
    // 5 bytes of gRPC framing, then field 1 (tag 0x0a), a one-byte length, the bytes. Longer
    // bodies (the cap test) carry the id first and padding after.
    let field = message.get(5..)?;
    if field.first() != Some(&0x0a) {
        return None;
    }
    let len = usize::from(*field.get(1)?);
    let id = field.get(2..2 + len)?;
    String::from_utf8(id.to_vec()).ok()
}

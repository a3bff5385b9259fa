//! The idle timeout of HTTP/2 connections ([`idle`]): a connection with no stream in flight for
//! that long is told to leave (`GOAWAY`), as gRPC's `MAX_CONNECTION_IDLE` and Go's
//! `http2.Server.IdleTimeout` do. hyper spawns each HTTP/2 stream on the connection's executor
//! and the task lives until the response's last byte is handed to the connection, so a
//! [`StreamExecutor`] that counts those tasks knows when the connection has nothing in flight.
//! hyper does the same for HTTP/1.x by itself: its header timer runs while a connection waits
//! for its next request (see `options.rs`).
//!
//! Without an idle timeout the executor counts nothing: `tokio::spawn`, as hyper-util's
//! `TokioExecutor`. With one, per stream: one atomic add when it starts and one when it ends,
//! and a wake-up of the connection's task when the last one ends.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The streams of one HTTP/2 connection.
#[derive(Debug, Default)]
pub(super) struct Streams {
    /// The low 32 bits count the streams in flight, the high 32 bits the streams started
    /// (wrapping): one atomic operation per start and per end.
    ///
    /// `Relaxed` throughout: the count publishes no other memory, and a stream that starts
    /// just after the connection was found idle is still served (a graceful `GOAWAY` serves
    /// the streams it did not see: hyper's first `GOAWAY` carries the maximum stream id).
    state: AtomicU64,
    /// Notified when the last stream in flight ends.
    idle: Notify,
}

const ONE_OPEN: u64 = 1;
const ONE_STARTED: u64 = 1 << 32;
const OPEN: u64 = ONE_STARTED - 1;

impl Streams {
    fn start(&self) {
        self.state
            .fetch_add(ONE_OPEN | ONE_STARTED, Ordering::Relaxed);
    }

    fn end(&self) {
        if self.state.fetch_sub(ONE_OPEN, Ordering::Relaxed) & OPEN == 1 {
            self.became_idle();
        }
    }

    #[cold]
    fn became_idle(&self) {
        // Stores a permit if the connection's task is not waiting yet: no wake-up is lost.
        self.idle.notify_one();
    }

    /// The streams in flight, and how many were ever started (wrapping).
    fn load(&self) -> (u64, u64) {
        let state = self.state.load(Ordering::Relaxed);
        (state & OPEN, state >> 32)
    }
}

/// hyper's executor for `serve`'s connections: `tokio::spawn`, counting each task into the
/// connection's [`Streams`] when the idle timeout needs it.
#[derive(Debug, Clone, Default)]
pub(super) struct StreamExecutor {
    streams: Option<Arc<Streams>>,
}

impl StreamExecutor {
    /// An executor that counts the streams of one connection into `streams`.
    pub(super) fn counting(streams: Arc<Streams>) -> Self {
        Self {
            streams: Some(streams),
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        match &self.streams {
            None => {
                tokio::spawn(future);
            }
            Some(streams) => {
                let stream = InFlight::new(Arc::clone(streams));
                tokio::spawn(async move {
                    // Counted until the task ends, or is dropped unfinished.
                    let _stream = stream;
                    future.await
                });
            }
        }
    }
}

/// One stream in flight, counted until dropped.
struct InFlight(Arc<Streams>);

impl InFlight {
    fn new(streams: Arc<Streams>) -> Self {
        streams.start();
        Self(streams)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Completes once the connection of `streams` has had no stream in flight for `timeout`.
///
/// # Cancel safety
///
/// Meant to be polled to its end, kept pinned by the connection's task: dropping it forgets
/// the time already idle.
pub(super) async fn idle(streams: &Streams, timeout: Duration) {
    loop {
        let (open, started) = streams.load();
        if open > 0 {
            streams.idle.notified().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(timeout) => {
                // Idle all along: nothing started since (whatever started ended too, and
                // would have woken the other branch).
                if streams.load() == (0, started) {
                    return;
                }
            }
            // A stream started and ended meanwhile: idle again from now.
            () = streams.idle.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_streams_in_flight_and_started() {
        let streams = Arc::new(Streams::default());
        let first = InFlight::new(Arc::clone(&streams));
        let second = InFlight::new(Arc::clone(&streams));
        assert_eq!(streams.load(), (2, 2));
        drop(first);
        assert_eq!(streams.load(), (1, 2));
        drop(second);
        assert_eq!(streams.load(), (0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_completes_only_after_the_last_stream_ended_and_the_timeout_passed() {
        let streams = Arc::new(Streams::default());
        let stream = InFlight::new(Arc::clone(&streams));
        let timeout = Duration::from_secs(10);
        let idle = idle(&streams, timeout);
        tokio::pin!(idle);
        let start = tokio::time::Instant::now();
        tokio::select! {
            () = &mut idle => panic!("idle with a stream in flight"),
            () = tokio::time::sleep(timeout * 3) => {}
        }
        drop(stream);
        let ended = tokio::time::Instant::now();
        idle.await;
        assert_eq!(ended - start, timeout * 3);
        assert_eq!(tokio::time::Instant::now() - ended, timeout);
    }
}

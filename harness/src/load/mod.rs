//! The load generator's parts: what to send ([`Job`]), what was counted ([`stats`]), when
//! connections were told to go away ([`goaway`]), and one module per client protocol
//! ([`http1`], [`http2`], [`grpc`]), over TLS with `--ca` ([`tls`]). `src/bin/loadgen.rs` wires
//! them to the command line and the control protocol on stdin.

pub mod goaway;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod stats;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stats::{Outcome, Stats};

/// Which requests the workers draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// 60 % fast, 25 % slow (200..500 ms), 15 % streams (3..8 chunks 50..100 ms apart).
    Mixed,
    /// Only fast requests, back to back.
    Fast,
}

/// One request to make, the same for every protocol.
#[derive(Clone, Copy, Debug)]
pub enum Job {
    /// `GET /` (body `hello\n`), or the unary echo of `hello\n`.
    Fast,
    /// `GET /slow?ms=N` (body `slept N ms\n`), or the unary echo with `delay-ms: N`.
    Slow { ms: u64 },
    /// `GET /stream?chunks=N&ms=M`, or `/demo.Echo/Stream` with `N M`: `chunk 1\n` ..
    /// `chunk N\n`; a stream that ends early is a failure even if it ended cleanly.
    Stream { chunks: u64, ms: u64 },
}

impl Job {
    pub fn pick(rng: &mut XorShift, load: Load) -> Job {
        match if load == Load::Fast {
            0
        } else {
            rng.next_u64() % 100
        } {
            0..=59 => Job::Fast,
            60..=84 => Job::Slow {
                ms: rng.between(200, 500),
            },
            _ => Job::Stream {
                chunks: rng.between(3, 8),
                ms: rng.between(50, 100),
            },
        }
    }

    /// The HTTP path of the job.
    pub fn path(&self) -> String {
        match *self {
            Job::Fast => "/".into(),
            Job::Slow { ms } => format!("/slow?ms={ms}"),
            Job::Stream { chunks, ms } => format!("/stream?chunks={chunks}&ms={ms}"),
        }
    }

    /// The whole body of a correct answer (for gRPC: the messages, concatenated).
    pub fn expected(&self) -> String {
        match *self {
            Job::Fast => "hello\n".into(),
            Job::Slow { ms } => format!("slept {ms} ms\n"),
            Job::Stream { chunks, .. } => (1..=chunks).map(|i| format!("chunk {i}\n")).collect(),
        }
    }
}

/// A tiny deterministic generator, so runs are reproducible without a dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn seeded(id: u64) -> Self {
        XorShift(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1000_0000_01B3))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// What every worker shares.
pub struct Ctx {
    pub target: String,
    /// `--ca`: TLS to the target (the h1 client's; h2 and gRPC carry theirs).
    pub tls: Option<Arc<tls::Tls>>,
    pub load: Load,
    /// Pause of each worker between two requests.
    pub pause: Duration,
    /// Bound on one request, its retries included.
    pub timeout: Duration,
    pub stats: Mutex<Stats>,
    /// The h2 and gRPC clients' connections, and when the server told them to go away.
    pub goaways: Arc<goaway::Log>,
    pub stop: AtomicBool,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    pub fn unsent(&self) {
        self.stats.lock().unwrap().unsent();
    }
    pub fn retried(&self, reason: &str) {
        self.stats.lock().unwrap().retried(reason);
    }

    /// The loop of one worker (an HTTP/1.1 connection, or one stream slot of an HTTP/2
    /// connection or gRPC channel): draw a job, run it under the timeout, record the outcome,
    /// pause, until stopped. The client does its own (protocol-proven) retries.
    pub async fn run<C: Client>(&self, id: u64, client: &mut C) {
        let mut rng = XorShift::seeded(id);
        while !self.stopped() {
            let job = Job::pick(&mut rng, self.load);
            let started = Instant::now();
            let outcome = match tokio::time::timeout(self.timeout, client.call(self, job)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    client.timed_out();
                    Outcome::Failed("timeout".into(), format!("after {:?}", self.timeout))
                }
            };
            let connect_failed =
                matches!(&outcome, Outcome::Failed(kind, _) if kind == "connect" || kind == "tls");
            self.stats
                .lock()
                .unwrap()
                .record(&job.path(), outcome, started.elapsed());
            if connect_failed {
                // Do not spin on a load balancer that is not there.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if self.pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(self.pause).await;
            }
        }
    }
}

/// One worker's client: makes one request, retrying only what it knows was not processed.
#[allow(async_fn_in_trait)] // implemented and awaited inside the harness only, on one runtime
pub trait Client {
    /// Makes one request and returns how it ended.
    async fn call(&mut self, ctx: &Ctx, job: Job) -> Outcome;
    /// The request in flight was abandoned at the timeout: drop what may be in a bad state.
    fn timed_out(&mut self) {}
}

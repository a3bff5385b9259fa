//! What the load generator counts: one [`Phase`] per `phase LABEL` command, every request's
//! outcome recorded in the phase in which it ended, and the report printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How one request ended. Only `Ok` counts as served; everything else is lost.
pub enum Outcome {
    /// 2xx (or gRPC `OK`) and exactly the expected body.
    Ok,
    /// An HTTP status other than 2xx.
    Status(u16),
    /// No (complete, correct) answer: `kind` groups the failures in the report (`connect`,
    /// `closed`, `body`, `timeout`, `reset(..)`, a gRPC code and message), `message` is a sample.
    Failed(String, String),
}

/// The counts of one phase.
#[derive(Default)]
pub struct Phase {
    pub label: String,
    pub sent: u64,
    pub ok: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Attempts handed back before any byte of them reached the network (the connection was
    /// already closing), sent again on a new connection.
    pub unsent: u64,
    /// Attempts the server's protocol proved unprocessed (HTTP/2 `REFUSED_STREAM`, or a stream
    /// above `GOAWAY`'s last-stream-id), sent again: by reason.
    pub retried: BTreeMap<String, u64>,
    /// The slowest request recorded in the phase, failed or not.
    pub max_latency: Duration,
    pub samples: Vec<String>,
}

impl Phase {
    pub fn new(label: &str) -> Self {
        Phase {
            label: label.to_string(),
            ..Phase::default()
        }
    }
    pub fn non2xx(&self) -> u64 {
        self.statuses.values().sum()
    }
    pub fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
    pub fn retried(&self) -> u64 {
        self.retried.values().sum()
    }
    pub fn lost(&self) -> u64 {
        self.non2xx() + self.errors()
    }
    fn detail(&self) -> String {
        let statuses = self.statuses.iter().map(|(c, n)| format!("{c}={n}"));
        let errors = self.errors.iter().map(|(k, n)| format!("{k}={n}"));
        let retried = self.retried.iter().map(|(k, n)| format!("retried {k}={n}"));
        statuses
            .chain(errors)
            .chain(retried)
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn add(&mut self, other: &Phase) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.unsent += other.unsent;
        self.max_latency = self.max_latency.max(other.max_latency);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.retried {
            *self.retried.entry(k.clone()).or_default() += v;
        }
    }
}

/// All phases of a run.
pub struct Stats {
    pub start: Instant,
    pub phases: Vec<Phase>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            start: Instant::now(),
            phases: vec![Phase::new("warm-up")],
        }
    }

    fn current(&mut self) -> &mut Phase {
        self.phases.last_mut().expect("there is always a phase")
    }

    pub fn record(&mut self, what: &str, outcome: Outcome, latency: Duration) {
        let at = self.start.elapsed().as_secs_f64();
        let phase = self.current();
        phase.sent += 1;
        phase.max_latency = phase.max_latency.max(latency);
        let sample = match outcome {
            Outcome::Ok => {
                phase.ok += 1;
                return;
            }
            Outcome::Status(code) => {
                *phase.statuses.entry(code).or_default() += 1;
                format!("{at:8.3}s {what}: status {code}")
            }
            Outcome::Failed(kind, message) => {
                let sample = format!("{at:8.3}s {what}: {kind}: {message}");
                *phase.errors.entry(kind).or_default() += 1;
                sample
            }
        };
        if phase.samples.len() < 8 {
            phase.samples.push(sample);
        }
    }

    pub fn unsent(&mut self) {
        self.current().unsent += 1;
    }

    pub fn retried(&mut self, reason: &str) {
        *self
            .current()
            .retried
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// The table (one row per phase and a total row), the failure samples, and the total.
    pub fn report(&self, label: &str) -> (String, String, Phase) {
        let mut table = String::new();
        let row = |out: &mut String, p: &Phase| {
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}  {}",
                p.label,
                p.sent,
                p.ok,
                p.non2xx(),
                p.errors(),
                p.unsent,
                p.retried(),
                p.max_latency.as_millis(),
                p.detail()
            );
        };
        let _ = writeln!(
            table,
            "{:<22} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7}  detail",
            label, "sent", "ok", "non-2xx", "errors", "unsent", "retried", "max ms"
        );
        let mut total = Phase::new("total");
        let mut samples = String::new();
        for phase in &self.phases {
            total.add(phase);
            row(&mut table, phase);
            for sample in &phase.samples {
                let _ = writeln!(samples, "loadgen [{}] {sample}", phase.label);
            }
        }
        row(&mut table, &total);
        (table, samples, total)
    }
}

/// An error and its chain of sources on one line (parts already in the text are skipped).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            let _ = write!(text, ": {part}");
        }
        source = s.source();
    }
    text
}

//! The layer, and the policy it hands every service it builds.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::backoff::{Backoff, Jitter};
use super::{RetryBudget, RetryStats, TransparentRetry};

/// The default cap on a call's recorded body: grpc-go's per-call retry buffer (256 KiB).
const BODY_CAP: usize = 256 * 1024;

/// Retries, transparently, the calls a server never processed; hands back everything else
/// unchanged. See the [module docs](super) for what is retried, what never is, and why.
///
/// `Default` gives the settings the module docs describe; the setters change them. Clones
/// share one [`RetryBudget`] and one [`RetryStats`].
///
/// # Examples
///
/// ```
/// use tonic_health::pb::health_client::HealthClient;
/// use tower::ServiceBuilder;
/// use tower_drain::client::TransparentRetryLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
/// let layer = TransparentRetryLayer::default();
/// let stats = layer.stats();
/// let client = HealthClient::new(ServiceBuilder::new().layer(layer).service(channel));
/// # drop((client, stats));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TransparentRetryLayer {
    policy: Arc<Policy>,
}

/// What every service built by one layer shares.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) body_cap: usize,
    pub(crate) max_unsent_retries: u32,
    pub(crate) max_refused_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Arc<RetryBudget>,
    pub(crate) jitter: Arc<Jitter>,
    pub(crate) stats: RetryStats,
}

impl Default for TransparentRetryLayer {
    fn default() -> Self {
        Self {
            policy: Arc::new(Policy {
                body_cap: BODY_CAP,
                max_unsent_retries: 10,
                max_refused_retries: 3,
                backoff: Backoff {
                    base: Duration::from_millis(5),
                    max: Duration::from_millis(250),
                },
                budget: Arc::new(RetryBudget::default()),
                jitter: Arc::new(Jitter::new()),
                stats: RetryStats::default(),
            }),
        }
    }
}

impl TransparentRetryLayer {
    /// The counts of retries by reason, for every service this layer (or a clone) builds.
    pub fn stats(&self) -> RetryStats {
        self.policy.stats.clone()
    }

    /// The retry budget shared by every service this layer (or a clone) builds.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.policy.budget
    }

    /// The most request body bytes recorded for a replay (default 256 KiB, as grpc-go). A
    /// call whose body goes past it is committed: it is not retried once its body has been
    /// read past the cap.
    #[must_use]
    pub fn body_cap(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.policy).body_cap = bytes;
        self
    }

    /// The most retries of a call that never left the client (not sent, connect failed,
    /// closed before the server's preface). Default 10; grpc-java allows up to 1000.
    #[must_use]
    pub fn max_unsent_retries(mut self, retries: u32) -> Self {
        Arc::make_mut(&mut self.policy).max_unsent_retries = retries;
        self
    }

    /// The most retries of a call the server turned away (`REFUSED_STREAM`, above a
    /// `GOAWAY`). Default 3; grpc-java allows one.
    #[must_use]
    pub fn max_refused_retries(mut self, retries: u32) -> Self {
        Arc::make_mut(&mut self.policy).max_refused_retries = retries;
        self
    }

    /// The backoff before a retry: a random time up to `base × 2^(retry-1)`, at most `max`
    /// (default 5 ms and 250 ms). A zero `base` retries at once.
    ///
    /// # Panics
    ///
    /// If `max` is below `base`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        assert!(
            max >= base,
            "TransparentRetryLayer::backoff: max ({max:?}) is below base ({base:?})"
        );
        Arc::make_mut(&mut self.policy).backoff = Backoff { base, max };
        self
    }

    /// The retry budget (default [`RetryBudget::default`]).
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        Arc::make_mut(&mut self.policy).budget = Arc::new(budget);
        self
    }
}

impl<S> Layer<S> for TransparentRetryLayer {
    type Service = TransparentRetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TransparentRetry::new(inner, self.policy.clone())
    }
}

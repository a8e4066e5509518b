use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use foldhash::fast::RandomState;
use metrics::{Counter, Gauge};

use super::gcra::{self, Decision};
use super::store::KeyedStore;
use super::{Quota, RateLimitConfig};
use crate::BuildError;
use crate::clock::{Clock, FastClock};

/// A GCRA rate limiter: lock-free per key, `Clone` (clones share state, so one limiter can
/// serve several layers, routes and connections), with a bounded set of keys that forgets
/// idle ones by itself.
///
/// ```
/// use perf_middleware::rate_limit::{Quota, RateLimiter};
///
/// let limiter = RateLimiter::builder(Quota::per_second(100).burst(2))
///     .quota_for("batch-client", Quota::per_second(1000).burst(50))
///     .build()
///     .unwrap();
/// assert!(limiter.check(&"alice").is_allowed());
/// assert!(limiter.check(&"alice").is_allowed());
/// assert!(!limiter.check(&"alice").is_allowed());
/// assert_eq!(limiter.check(&"batch-client").limit(), 50);
/// ```
pub struct RateLimiter<K, C = FastClock> {
    inner: Arc<Inner<K, C>>,
}

struct Inner<K, C> {
    quota: Quota,
    overrides: HashMap<K, Quota, RandomState>,
    state: State<K>,
    telemetry: Telemetry,
    clock: C,
}

/// A snapshot of a [`RateLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterStats {
    /// Keys tracked now (1 for a global limiter).
    pub keys: usize,
    /// Requests refused since the limiter was built.
    pub limited: u64,
}

/// What a limiter reports through the `metrics` facade: refusals as they happen (the rare
/// path; an allowed check writes no shared metric), the key count whenever
/// [`RateLimiter::stats`] runs.
///
/// | metric | kind |
/// |---|---|
/// | `{prefix}_limited_total` | counter: requests refused |
/// | `{prefix}_keys` | gauge: keys tracked |
struct Telemetry {
    limited: AtomicU64,
    limited_total: Counter,
    keys: Gauge,
}

impl Telemetry {
    fn new(prefix: &str) -> Self {
        metrics::describe_counter!(
            format!("{prefix}_limited_total"),
            "Requests refused by the rate limiter"
        );
        metrics::describe_gauge!(format!("{prefix}_keys"), "Rate-limit keys tracked");
        Telemetry {
            limited: AtomicU64::new(0),
            limited_total: metrics::counter!(format!("{prefix}_limited_total")),
            keys: metrics::gauge!(format!("{prefix}_keys")),
        }
    }
}

/// The default metrics prefix.
const PREFIX: &str = "rate_limit";

enum State<K> {
    /// One bucket for every request: no map, no hashing.
    Global(AtomicU64),
    Keyed(KeyedStore<K>),
}

impl<K, C> Clone for RateLimiter<K, C> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl RateLimiter<()> {
    /// One bucket shared by every request.
    pub fn global(quota: Quota) -> Self {
        RateLimiter::global_with_clock(quota, FastClock::new())
    }
}

impl<C: Clock> RateLimiter<(), C> {
    /// One bucket shared by every request, on `clock`.
    pub fn global_with_clock(quota: Quota, clock: C) -> Self {
        RateLimiter {
            inner: Arc::new(Inner {
                quota,
                overrides: HashMap::default(),
                state: State::Global(AtomicU64::new(0)),
                telemetry: Telemetry::new(PREFIX),
                clock,
            }),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A keyed limiter with `config`'s quota, key bound and metrics prefix (its `key` and
    /// `headers` are for the layer: see [`RateLimitLayer::from_config`](super::RateLimitLayer::from_config)).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn new(config: &RateLimitConfig) -> Result<Self, BuildError> {
        if config.requests_per_second == 0 {
            return Err(BuildError::new("requests_per_second", "must be at least 1"));
        }
        if config.burst == 0 {
            return Err(BuildError::new("burst", "must be at least 1"));
        }
        RateLimiter::builder(Quota::per_second(config.requests_per_second).burst(config.burst))
            .max_keys(config.max_keys)
            .metrics_prefix(config.metrics_prefix.clone())
            .build()
    }

    /// A builder for a keyed limiter whose keys get `quota` unless overridden.
    pub fn builder(quota: Quota) -> RateLimiterBuilder<K> {
        RateLimiterBuilder {
            quota,
            overrides: HashMap::default(),
            max_keys: 100_000,
            metrics_prefix: PREFIX.to_owned(),
            clock: FastClock::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> RateLimiter<K, C> {
    /// Takes a token for `key` (ignored by a global limiter).
    #[inline]
    pub fn check(&self, key: &K) -> Decision {
        let inner = &*self.inner;
        let now = || inner.clock.now_nanos();
        let quota = self.quota_for(key);
        let decision = match &inner.state {
            State::Global(tat) => gcra::check(tat, quota, now),
            State::Keyed(store) => store.with_tat(key, now, |tat| gcra::check(tat, quota, now)),
        };
        if !decision.is_allowed() {
            inner.telemetry.limited.fetch_add(1, Relaxed);
            inner.telemetry.limited_total.increment(1);
        }
        decision
    }

    /// Keys tracked and refusals so far; also sets the key gauge.
    pub fn stats(&self) -> RateLimiterStats {
        let telemetry = &self.inner.telemetry;
        let keys = self.len();
        telemetry.keys.set(keys as f64);
        RateLimiterStats {
            keys,
            limited: telemetry.limited.load(Relaxed),
        }
    }

    /// The quota that applies to `key`.
    #[inline]
    pub fn quota_for(&self, key: &K) -> &Quota {
        let inner = &*self.inner;
        if inner.overrides.is_empty() {
            &inner.quota
        } else {
            inner.overrides.get(key).unwrap_or(&inner.quota)
        }
    }

    /// Keys currently tracked (1 for a global limiter).
    pub fn len(&self) -> usize {
        match &self.inner.state {
            State::Global(_) => 1,
            State::Keyed(store) => store.len(),
        }
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every key whose bucket has refilled now, instead of when room is needed.
    pub fn sweep(&self) {
        if let State::Keyed(store) = &self.inner.state {
            store.sweep(self.inner.clock.now_nanos());
        }
    }
}

impl<K, C> fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.inner.quota)
            .field("overrides", &self.inner.overrides.len())
            .finish_non_exhaustive()
    }
}

/// Builds a keyed [`RateLimiter`].
#[must_use = "builder does nothing itself, call build()"]
pub struct RateLimiterBuilder<K, C = FastClock> {
    quota: Quota,
    overrides: HashMap<K, Quota, RandomState>,
    max_keys: usize,
    metrics_prefix: String,
    clock: C,
}

impl<K: Hash + Eq + Clone, C: Clock> RateLimiterBuilder<K, C> {
    /// Gives `key` its own quota (a partner with a higher limit, a tenant on a lower plan).
    pub fn quota_for(mut self, key: K, quota: Quota) -> Self {
        self.overrides.insert(key, quota);
        self
    }

    /// The most keys tracked at once (default 100,000); see the module docs for what
    /// happens at the bound.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Prefix of the limiter's metrics (default `rate_limit`).
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.metrics_prefix = prefix.into();
        self
    }

    /// Reads time from `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> RateLimiterBuilder<K, C2> {
        RateLimiterBuilder {
            quota: self.quota,
            overrides: self.overrides,
            max_keys: self.max_keys,
            metrics_prefix: self.metrics_prefix,
            clock,
        }
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero `max_keys` or an invalid metrics prefix.
    pub fn build(self) -> Result<RateLimiter<K, C>, BuildError> {
        if self.max_keys == 0 {
            return Err(BuildError::new("max_keys", "must be at least 1"));
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &self.metrics_prefix)?;
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                quota: self.quota,
                overrides: self.overrides,
                state: State::Keyed(KeyedStore::new(self.max_keys)),
                telemetry: Telemetry::new(&self.metrics_prefix),
                clock: self.clock,
            }),
        })
    }
}

impl<K, C> fmt::Debug for RateLimiterBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("quota", &self.quota)
            .field("overrides", &self.overrides.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use foldhash::fast::RandomState;

use super::Quota;
use super::gcra::{self, Decision};
use super::store::KeyedStore;
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
    clock: C,
}

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
                clock,
            }),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A builder for a keyed limiter whose keys get `quota` unless overridden.
    pub fn builder(quota: Quota) -> RateLimiterBuilder<K> {
        RateLimiterBuilder {
            quota,
            overrides: HashMap::default(),
            max_keys: 100_000,
            clock: FastClock::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, C: Clock> RateLimiter<K, C> {
    /// Takes a token for `key` (ignored by a global limiter).
    #[inline]
    pub fn check(&self, key: &K) -> Decision {
        let inner = &*self.inner;
        let now = inner.clock.now_nanos();
        let quota = self.quota_for(key);
        match &inner.state {
            State::Global(tat) => gcra::check(tat, quota, now),
            State::Keyed(store) => store.with_tat(key, now, |tat| gcra::check(tat, quota, now)),
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

    /// Reads time from `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> RateLimiterBuilder<K, C2> {
        RateLimiterBuilder {
            quota: self.quota,
            overrides: self.overrides,
            max_keys: self.max_keys,
            clock,
        }
    }

    /// Builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero `max_keys`.
    pub fn build(self) -> Result<RateLimiter<K, C>, BuildError> {
        if self.max_keys == 0 {
            return Err(BuildError::new("max_keys", "must be at least 1"));
        }
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                quota: self.quota,
                overrides: self.overrides,
                state: State::Keyed(KeyedStore::new(self.max_keys)),
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

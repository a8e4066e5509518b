use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use perf_breaker::CircuitBreaker;
use redis::aio::ConnectionManager;

use super::RedisKey;
use crate::BuildError;
use crate::rate_limit::{Decision, Quota, RateLimiter};

/// The GCRA script, sent once per connection and then run by its digest (`EVALSHA`).
static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("gcra.lua")));

/// A GCRA rate limiter whose buckets live in Redis, so every process pointed at the same
/// Redis and prefix enforces one quota between them; see the [module docs](super).
///
/// `Clone` shares the connection, the breaker and the fallback.
pub struct RedisRateLimiter<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    connection: ConnectionManager,
    prefix: String,
    /// The quota with its interval rounded to whole microseconds, the script's unit, so
    /// that the headers describe exactly what Redis enforces.
    quota: Quota,
    timeout: Duration,
    breaker: CircuitBreaker,
    fallback: RateLimiter<K>,
    fallbacks: Counter,
}

impl<K> Clone for RedisRateLimiter<K> {
    fn clone(&self) -> Self {
        RedisRateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl RedisRateLimiter<()> {
    /// A builder for a limiter giving every key `quota` (the key type is chosen by
    /// [`build`](RedisRateLimiterBuilder::build)).
    pub fn builder(quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            quota,
            prefix: "rate_limit".to_owned(),
            instances: 1,
            timeout: Duration::from_millis(50),
            breaker: None,
            max_keys: 100_000,
            metrics_prefix: "rate_limit".to_owned(),
        }
    }
}

impl<K: RedisKey + Hash + Eq + Clone> RedisRateLimiter<K> {
    /// Takes a token for `key`: one script run on Redis, or, when Redis is down, slow or
    /// its breaker open, a check of the local fallback. Never fails.
    pub async fn check(&self, key: &K) -> Decision {
        let inner = &*self.inner;
        let mut name = String::with_capacity(inner.prefix.len() + 24);
        name.push_str(&inner.prefix);
        name.push(':');
        key.write_redis_key(&mut name);
        let interval_us = inner.quota.interval_ns / 1_000;
        let answer = inner
            .breaker
            .call(|| async {
                let mut connection = inner.connection.clone();
                let mut invocation = SCRIPT.key(&name);
                invocation
                    .arg(interval_us)
                    .arg(interval_us.saturating_mul(u64::from(inner.quota.burst)));
                let invocation = invocation.invoke_async::<Vec<u64>>(&mut connection);
                match tokio::time::timeout(inner.timeout, invocation).await {
                    Ok(answer) => answer.map_err(|_| ()),
                    Err(_) => Err(()),
                }
            })
            .await;
        match answer.as_deref() {
            Ok([1, ahead]) => Decision::allowed(&inner.quota, ahead * 1_000),
            Ok([0, reset, retry]) => Decision::refused(&inner.quota, reset * 1_000, retry * 1_000),
            // Down, slow, open, or an answer this version does not know: decide locally.
            _ => {
                inner.fallbacks.increment(1);
                inner.fallback.check(key)
            }
        }
    }
}

impl<K> RedisRateLimiter<K> {
    /// Whether checks are being decided locally now: the breaker around Redis is not
    /// closed.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.state() != perf_breaker::State::Closed
    }

    /// The breaker around Redis.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// The local limiter used while Redis cannot answer, with the quota divided by the
    /// instance count.
    pub fn fallback(&self) -> &RateLimiter<K> {
        &self.inner.fallback
    }

    /// The quota every key gets (its interval in whole microseconds, as Redis runs it).
    pub fn quota(&self) -> &Quota {
        &self.inner.quota
    }
}

impl<K> fmt::Debug for RedisRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.prefix)
            .field("quota", &self.inner.quota)
            .field("timeout", &self.inner.timeout)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisRateLimiter`].
#[must_use = "builder does nothing itself, call build()"]
#[derive(Debug)]
pub struct RedisRateLimiterBuilder {
    quota: Quota,
    prefix: String,
    instances: u32,
    timeout: Duration,
    breaker: Option<CircuitBreaker>,
    max_keys: usize,
    metrics_prefix: String,
}

impl RedisRateLimiterBuilder {
    /// The prefix of this limiter's Redis keys (default `rate_limit`): limiters with the
    /// same prefix share buckets, so give each quota its own.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many processes share the quota (default 1): while Redis is down each admits
    /// `1/instances` of it, so together they stay within it.
    pub fn instances(mut self, instances: u32) -> Self {
        self.instances = instances;
        self
    }

    /// The longest wait for Redis on one check (default 50 ms) before deciding locally.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The breaker around Redis (default: opens after 5 failures in a row, for 5 s); share
    /// one with other users of the same Redis so they all stop waiting on it at once.
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The most keys the local fallback tracks (default 100,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Prefix of the fallback limiter's metrics (default `rate_limit`); checks decided
    /// locally are counted in `{prefix}_fallback_total`.
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.metrics_prefix = prefix.into();
        self
    }

    /// The limiter, talking to the Redis `client` names. The connection is made on the
    /// first check and remade after failures, so a Redis that is down at start is not an
    /// error: checks fall back until it is up.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an empty prefix, a zero instance count or timeout, a quota whose
    /// interval is shorter than a microsecond (the script's unit), or no Tokio runtime to run
    /// the connection on.
    pub fn build<K: Hash + Eq + Clone>(
        self,
        client: redis::Client,
    ) -> Result<RedisRateLimiter<K>, BuildError> {
        if self.prefix.is_empty() {
            return Err(BuildError::new("prefix", "must not be empty"));
        }
        if self.instances == 0 {
            return Err(BuildError::new("instances", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(BuildError::new("timeout", "must be longer than zero"));
        }
        if self.quota.interval_ns < 1_000 {
            return Err(BuildError::new(
                "quota",
                "shared quotas are counted in microseconds: at most 1,000,000 requests a second",
            ));
        }
        let quota = Quota {
            interval_ns: self.quota.interval_ns / 1_000 * 1_000,
            burst: self.quota.burst,
        };
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreaker::builder()
                .name("redis")
                .failure_threshold(5)
                .open_duration(Duration::from_secs(5))
                .build()
                .map_err(|error| BuildError::new("breaker", error.to_string()))?,
        };
        let fallback = RateLimiter::builder(quota.divided_among(self.instances))
            .max_keys(self.max_keys)
            .metrics_prefix(self.metrics_prefix.clone())
            .build()?;
        let connection = perf_core::redis::lazy_connection(client, self.timeout)?;
        let fallbacks = metrics::counter!(format!("{}_fallback_total", self.metrics_prefix));
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                quota,
                timeout: self.timeout,
                breaker,
                fallback,
                fallbacks,
            }),
        })
    }
}

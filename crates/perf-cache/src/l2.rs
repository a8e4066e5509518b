//! A second, shared cache level (Redis, say) behind the in-process one, and a tiered cache
//! that reads through both.
//!
//! [`SharedCache`] is the contract an L2 implements: bytes in, bytes out, with a TTL. The
//! in-process [`TtlCache`] does not depend on it; [`TieredCache`] puts the two together:
//! a lookup tries L1, then L2, then the loader, and fills the levels it missed. An L2 that
//! fails, or does not answer within `l2_timeout`, is treated as a miss (and counted), so a
//! shared cache going down, or hanging, degrades to per-process caching instead of failing
//! or stalling requests.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use crate::BuildError;
use crate::clock::Clock;
use crate::ttl::TtlCache;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

/// An L2 error.
pub type SharedCacheError = Box<dyn Error + Send + Sync>;

/// The future an L2 operation returns.
pub type SharedCacheFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, SharedCacheError>> + Send + 'a>>;

/// A cache shared between processes. Object-safe, so a server can hold `Arc<dyn
/// SharedCache>` chosen by configuration.
pub trait SharedCache: Send + Sync {
    /// The bytes stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, Option<Bytes>>;

    /// Stores `value` under `key` for `ttl`.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> SharedCacheFuture<'a, ()>;

    /// Removes `key`.
    fn delete<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, ()>;
}

/// Settings of a [`TieredCache`].
///
/// | field | default |
/// |---|---|
/// | `l2_ttl` | 1 h: how long values written to L2 live there (the original kept 5 min in process, an hour shared) |
/// | `l2_timeout` | 100 ms: an L2 operation slower than this counts as a failure |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TieredConfig {
    /// How long values written to L2 live there.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub l2_ttl: Duration,
    /// The longest wait for one L2 operation.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub l2_timeout: Duration,
}

impl Default for TieredConfig {
    fn default() -> Self {
        TieredConfig {
            l2_ttl: Duration::from_secs(3600),
            l2_timeout: Duration::from_millis(100),
        }
    }
}

impl TieredConfig {
    fn validate(&self) -> Result<(), BuildError> {
        if self.l2_ttl.is_zero() {
            return Err(BuildError::new("l2_ttl", "must be longer than zero"));
        }
        if self.l2_timeout.is_zero() {
            return Err(BuildError::new("l2_timeout", "must be longer than zero"));
        }
        Ok(())
    }
}

/// L1 in process, L2 shared: see the [module docs](self).
pub struct TieredCache<C: Clock> {
    l1: TtlCache<String, Bytes, C>,
    l2: Arc<dyn SharedCache>,
    config: TieredConfig,
    l2_hits: AtomicU64,
    l2_errors: AtomicU64,
}

impl<C: Clock> TieredCache<C> {
    /// Reads through `l1` then `l2`, with `config`'s L2 lifetime and timeout.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero lifetime or timeout.
    pub fn new(
        l1: TtlCache<String, Bytes, C>,
        l2: Arc<dyn SharedCache>,
        config: TieredConfig,
    ) -> Result<Self, BuildError> {
        config.validate()?;
        Ok(TieredCache {
            l1,
            l2,
            config,
            l2_hits: AtomicU64::new(0),
            l2_errors: AtomicU64::new(0),
        })
    }

    /// Runs one L2 operation within the timeout; a failure or a timeout is counted and
    /// becomes `None`.
    async fn l2<T>(&self, operation: SharedCacheFuture<'_, T>) -> Option<T> {
        match tokio::time::timeout(self.config.l2_timeout, operation).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(_)) | Err(_) => {
                self.l2_errors.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// The value of `key`: from L1, else L2, else `load`; one load per key at a time in
    /// this process.
    ///
    /// # Errors
    ///
    /// The loader's error.
    pub async fn get_or_load<F, Fut, E>(&self, key: &str, load: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        // An L1 hit costs what a `TtlCache` hit does: no key is allocated for it.
        if let Some(value) = self.l1.get(key) {
            return Ok(value);
        }
        let key = key.to_owned();
        self.l1
            .get_or_load(&key, || async {
                if let Some(value) = self.l2_lookup(&key).await {
                    return Ok(value);
                }
                let value = load().await?;
                self.l2(self.l2.set(&key, value.clone(), self.config.l2_ttl))
                    .await;
                Ok(value)
            })
            .await
    }

    /// The value of `key` if either level has it (an L2 hit fills L1); no loader runs.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        if let Some(value) = self.l1.get(key) {
            return Some(value);
        }
        let value = self.l2_lookup(key).await?;
        self.l1.insert(key.to_owned(), value.clone());
        Some(value)
    }

    /// The value L2 holds for `key`, counted as an L2 hit.
    async fn l2_lookup(&self, key: &str) -> Option<Bytes> {
        let value = self.l2(self.l2.get(key)).await.flatten()?;
        self.l2_hits.fetch_add(1, Relaxed);
        Some(value)
    }

    /// Stores `value` under `key` in both levels: for values a caller loaded itself and
    /// decided to keep (a finished record, not one still changing).
    pub async fn insert(&self, key: &str, value: Bytes) {
        self.l1.insert(key.to_owned(), value.clone());
        self.l2(self.l2.set(key, value, self.config.l2_ttl)).await;
    }

    /// Removes `key` from both levels (and, with an L2 that broadcasts deletions such as
    /// `RedisCache` of the `redis` feature, from the other processes' L1).
    pub async fn invalidate(&self, key: &str) {
        self.l1.invalidate(key);
        self.l2(self.l2.delete(key)).await;
    }

    /// The in-process level.
    pub fn l1(&self) -> &TtlCache<String, Bytes, C> {
        &self.l1
    }

    /// L1 misses answered by L2.
    pub fn l2_hits(&self) -> u64 {
        self.l2_hits.load(Relaxed)
    }

    /// L2 operations that failed or timed out (and were treated as misses).
    pub fn l2_errors(&self) -> u64 {
        self.l2_errors.load(Relaxed)
    }
}

impl<C: Clock> fmt::Debug for TieredCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1", &self.l1)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

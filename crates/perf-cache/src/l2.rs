//! A second, shared cache level (Redis, say) behind the in-process one, and a tiered cache
//! that reads through both.
//!
//! [`SharedCache`] is the contract an L2 implements: bytes in, bytes out, with a TTL. The
//! in-process [`TtlCache`] does not depend on it; [`TieredCache`] puts the two together:
//! a lookup tries L1, then L2, then the loader, and fills the levels it missed. An L2 that
//! fails is treated as a miss (and counted), so a shared cache going down degrades to
//! per-process caching instead of failing requests.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Clock;
use crate::ttl::TtlCache;

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

/// L1 in process, L2 shared: see the [module docs](self).
pub struct TieredCache<C: Clock> {
    l1: TtlCache<String, Bytes, C>,
    l2: Arc<dyn SharedCache>,
    l2_ttl: Duration,
    l2_hits: AtomicU64,
    l2_errors: AtomicU64,
}

impl<C: Clock> TieredCache<C> {
    /// Reads through `l1` then `l2`; values written to L2 live `l2_ttl` there (the
    /// original used 5 minutes in process and an hour shared).
    pub fn new(l1: TtlCache<String, Bytes, C>, l2: Arc<dyn SharedCache>, l2_ttl: Duration) -> Self {
        TieredCache {
            l1,
            l2,
            l2_ttl,
            l2_hits: AtomicU64::new(0),
            l2_errors: AtomicU64::new(0),
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
        let key = key.to_owned();
        self.l1
            .get_or_load(&key, || async {
                match self.l2.get(&key).await {
                    Ok(Some(value)) => {
                        self.l2_hits.fetch_add(1, Relaxed);
                        return Ok(value);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        self.l2_errors.fetch_add(1, Relaxed);
                    }
                }
                let value = load().await?;
                if self.l2.set(&key, value.clone(), self.l2_ttl).await.is_err() {
                    self.l2_errors.fetch_add(1, Relaxed);
                }
                Ok(value)
            })
            .await
    }

    /// Removes `key` from both levels.
    pub async fn invalidate(&self, key: &str) {
        self.l1.invalidate(key);
        if self.l2.delete(key).await.is_err() {
            self.l2_errors.fetch_add(1, Relaxed);
        }
    }

    /// The in-process level.
    pub fn l1(&self) -> &TtlCache<String, Bytes, C> {
        &self.l1
    }

    /// L1 misses answered by L2.
    pub fn l2_hits(&self) -> u64 {
        self.l2_hits.load(Relaxed)
    }

    /// L2 operations that failed (and were treated as misses).
    pub fn l2_errors(&self) -> u64 {
        self.l2_errors.load(Relaxed)
    }
}

impl<C: Clock> fmt::Debug for TieredCache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1", &self.l1)
            .field("l2_ttl", &self.l2_ttl)
            .finish_non_exhaustive()
    }
}

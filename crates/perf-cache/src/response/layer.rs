use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower_layer::Layer;

use super::config::HEAD_ALLOWANCE;
use super::stored::Stored;
use super::{ResponseCache, ResponseCacheConfig};
use crate::BuildError;
use crate::clock::{AnyClock, FastClock, TokioClock};
use crate::ttl::{CacheStats, TtlCache};

pub use perf_core::RequestHead;

type KeyFn = Arc<dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync>;
type BypassFn = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// Caches GET responses; see the [module docs](super). Clones share the cache.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    /// Stored responses, by variant key.
    pub(crate) store: TtlCache<String, Arc<Stored>, AnyClock>,
    /// The `Vary` header names of each resource, by primary key.
    pub(crate) vary: TtlCache<String, Arc<[HeaderName]>, AnyClock>,
    pub(crate) config: ResponseCacheConfig,
    pub(crate) key: Option<KeyFn>,
    pub(crate) bypass: Option<BypassFn>,
    /// The stores' clock, also timing `Age`.
    pub(crate) clock: AnyClock,
}

/// Resources whose `Vary` names are remembered; each is a few dozen bytes.
const VARY_INDEX_ENTRIES: u64 = 100_000;

impl ResponseCacheLayer {
    /// A response cache with `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an invalid setting.
    pub fn new(config: ResponseCacheConfig) -> Result<Self, BuildError> {
        Self::with_clock(config, AnyClock::Fast(FastClock::new()))
    }

    /// The same cache on tokio's clock, so tests can pause and advance it.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_tokio_clock(config: ResponseCacheConfig) -> Result<Self, BuildError> {
        Self::with_clock(config, AnyClock::Tokio(TokioClock::new()))
    }

    fn with_clock(config: ResponseCacheConfig, clock: AnyClock) -> Result<Self, BuildError> {
        config.validate()?;
        let mut store = TtlCache::builder()
            .name(config.name.clone())
            .capacity(config.capacity_bytes)
            .ttl(config.default_ttl)
            .ttl_jitter(0.0);
        if let Some(window) = config.stale_if_error {
            store = store.stale_if_error(window);
        }
        let store = store
            .weigher(|key: &String, stored: &Arc<Stored>| {
                (key.len() + stored.body.len() + stored.headers.len() * 64) as u64
            })
            .shards(shards_for(&config))
            .clock(clock.clone())
            .build()?;
        let vary = TtlCache::builder()
            .name(format!("{}_vary", config.name))
            .capacity(VARY_INDEX_ENTRIES)
            .ttl(Duration::from_secs(24 * 3600))
            .clock(clock.clone())
            .build()?;
        Ok(ResponseCacheLayer {
            shared: Arc::new(Shared {
                store,
                vary,
                config,
                key: None,
                bypass: None,
                clock,
            }),
        })
    }

    /// Adds `key(request)` to every cache key: a user or tenant id, so each has its own
    /// entries. With a key function, `Cache-Control: private` responses are stored too,
    /// since they are only served back to the same key. Set it before cloning the layer:
    /// clones made earlier keep the old settings (and share the store).
    #[must_use]
    pub fn key_fn<F>(self, key: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    {
        self.rebuild(|shared| shared.key = Some(Arc::new(key)))
    }

    /// Requests for which `bypass` is true are neither answered from nor stored in the cache.
    #[must_use]
    pub fn bypass<F>(self, bypass: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.rebuild(|shared| shared.bypass = Some(Arc::new(bypass)))
    }

    fn rebuild(self, change: impl FnOnce(&mut Shared)) -> Self {
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            store: shared.store.clone(),
            vary: shared.vary.clone(),
            config: shared.config.clone(),
            key: shared.key.clone(),
            bypass: shared.bypass.clone(),
            clock: shared.clock.clone(),
        });
        let mut shared = shared;
        change(&mut shared);
        ResponseCacheLayer {
            shared: Arc::new(shared),
        }
    }

    /// The stored responses' counters.
    pub fn stats(&self) -> CacheStats {
        self.shared.store.stats()
    }

    /// Drops every stored variant of `path` (after a write to it elsewhere, say); returns
    /// how many.
    pub fn invalidate_path(&self, path: &str) -> usize {
        self.shared.store.invalidate_tag(path)
    }

    /// Drops every stored response.
    pub fn purge(&self) {
        self.shared.store.clear();
        self.shared.vary.clear();
    }

    /// Shrinks the store to `bytes` (under memory pressure), evicting at once.
    pub fn set_capacity(&self, bytes: u64) {
        self.shared.store.set_capacity(bytes);
    }

    /// Back to the configured capacity.
    pub fn restore_capacity(&self) {
        self.shared.store.restore_capacity();
    }

    /// Drops stored responses past their lifetime now; returns how many.
    pub fn purge_expired(&self) -> usize {
        self.shared.store.purge_expired()
    }
}

/// Shards such that each holds at least four responses of the largest size stored: a
/// shard never admits an item heavier than its share of the capacity.
fn shards_for(config: &ResponseCacheConfig) -> usize {
    let per_shard = (config.max_body_bytes + HEAD_ALLOWANCE).saturating_mul(4);
    let shards = (config.capacity_bytes / per_shard).clamp(1, 64);
    // A power of two no larger than the quotient.
    1 << (63 - shards.leading_zeros())
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache::with_layer(inner, self.clone())
    }
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("config", &self.shared.config)
            .field("keyed", &self.shared.key.is_some())
            .finish_non_exhaustive()
    }
}

use std::borrow::Cow;
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

type KeyFn = Arc<dyn for<'a> Fn(&RequestHead<'a>) -> Option<Cow<'a, str>> + Send + Sync>;
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

/// Builds a [`ResponseCacheLayer`]: its configuration, and what a configuration file cannot
/// hold (a key function, a bypass). Everything is set here, before the layer exists, so
/// every clone of the layer has the same behaviour and shares one store.
#[must_use = "builder does nothing itself, call build()"]
pub struct ResponseCacheBuilder {
    config: ResponseCacheConfig,
    key: Option<KeyFn>,
    bypass: Option<BypassFn>,
    tokio_clock: bool,
}

impl ResponseCacheBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: ResponseCacheConfig) -> Self {
        ResponseCacheBuilder {
            config,
            key: None,
            bypass: None,
            tokio_clock: false,
        }
    }

    /// See [`ResponseCacheConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`ResponseCacheConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// See [`ResponseCacheConfig::capacity_bytes`].
    pub fn capacity_bytes(mut self, bytes: u64) -> Self {
        self.config.capacity_bytes = bytes;
        self
    }

    /// See [`ResponseCacheConfig::default_ttl`].
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// See [`ResponseCacheConfig::max_body_bytes`].
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// See [`ResponseCacheConfig::stale_if_error`].
    pub fn stale_if_error(mut self, window: Option<Duration>) -> Self {
        self.config.stale_if_error = window;
        self
    }

    /// Adds `key(request)` to the cache key of requests for which it returns a key (a user
    /// or tenant id), so each has its own entries, where `Cache-Control: private` responses
    /// and answers to credentials are stored too. Requests for which it returns `None` use
    /// the shared entries, with a shared cache's rules.
    ///
    /// The key may borrow from the request (an identity an authentication layer put in the
    /// extensions, say), so looking an entry up copies nothing per request.
    pub fn key_fn<F>(mut self, key: F) -> Self
    where
        F: for<'a> Fn(&RequestHead<'a>) -> Option<Cow<'a, str>> + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(key));
        self
    }

    /// Requests for which `bypass` is true are neither answered from nor stored in the cache.
    pub fn bypass<F>(mut self, bypass: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.bypass = Some(Arc::new(bypass));
        self
    }

    /// Times entries on tokio's clock, so tests can pause and advance it.
    pub fn tokio_clock(mut self) -> Self {
        self.tokio_clock = true;
        self
    }

    /// Validates the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn build(self) -> Result<ResponseCacheLayer, BuildError> {
        let config = self.config;
        config.validate()?;
        let clock = if self.tokio_clock {
            AnyClock::Tokio(TokioClock::new())
        } else {
            AnyClock::Fast(FastClock::new())
        };
        let mut store = TtlCache::builder()
            .name(config.name.clone())
            .metrics_prefix(config.metrics_prefix.clone())
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
            .metrics_prefix(config.metrics_prefix.clone())
            .capacity(VARY_INDEX_ENTRIES)
            .ttl(Duration::from_secs(24 * 3600))
            .clock(clock.clone())
            .build()?;
        Ok(ResponseCacheLayer {
            shared: Arc::new(Shared {
                store,
                vary,
                config,
                key: self.key,
                bypass: self.bypass,
                clock,
            }),
        })
    }
}

impl fmt::Debug for ResponseCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheBuilder")
            .field("config", &self.config)
            .field("key_fn", &self.key.is_some())
            .field("bypass", &self.bypass.is_some())
            .field("tokio_clock", &self.tokio_clock)
            .finish()
    }
}

impl ResponseCacheLayer {
    /// A response cache with `config`; [`builder`](Self::builder) adds a key function or a
    /// bypass.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an invalid setting.
    pub fn new(config: ResponseCacheConfig) -> Result<Self, BuildError> {
        ResponseCacheBuilder::from_config(config).build()
    }

    /// A builder starting from the defaults of [`ResponseCacheConfig`].
    pub fn builder() -> ResponseCacheBuilder {
        ResponseCacheBuilder::from_config(ResponseCacheConfig::default())
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
        ResponseCache::new(inner, self.clone())
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

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use foldhash::fast::RandomState;
use metrics::Counter;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{Equivalent, Lifecycle, Weighter};

use super::config::TtlConfig;
use super::entry::{Entry, Freshness, Windows};
use super::stats::{CacheStats, Counters, Telemetry};
use crate::BuildError;
use crate::clock::{Clock, FastClock};

type Weigh<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;
type Store<K, V> = Cache<K, Entry<V>, EntryWeight<K, V>, RandomState, CountEvictions>;

/// A TTL cache on quick_cache: per-entry lifetimes with jitter, weights, single-flight
/// loading, stale-while-revalidate and stale-if-error, invalidation by key, prefix and tag,
/// a capacity that can shrink and grow back at run time, and stats. No background thread:
/// entries are checked on read and dead ones swept out lazily on writes.
///
/// `Clone` shares the cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use perf_cache::ttl::TtlCache;
///
/// let cache: TtlCache<String, String> = TtlCache::builder()
///     .name("transcripts")
///     .ttl(Duration::from_secs(300))
///     .build()
///     .unwrap();
/// let value = cache
///     .get_or_load(&"transcript:42".to_owned(), || async { Ok::<_, std::io::Error>("hello".to_owned()) })
///     .await
///     .unwrap();
/// assert_eq!(value, "hello");
/// assert_eq!(cache.get("transcript:42").as_deref(), Some("hello"));
/// assert_eq!(cache.stats().hits, 1);
/// # }
/// ```
pub struct TtlCache<K, V, C = FastClock> {
    inner: Arc<Inner<K, V, C>>,
}

struct Inner<K, V, C> {
    store: Store<K, V>,
    config: TtlConfig,
    capacity: AtomicU64,
    clock: C,
    counters: Counters,
    windows: Windows,
    evictions: Arc<AtomicU64>,
    telemetry: Telemetry,
    last_sweep: AtomicU64,
}

impl<K, V, C> Clone for TtlCache<K, V, C> {
    fn clone(&self) -> Self {
        TtlCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What a lookup under the entry lock found.
enum Found<V> {
    Fresh(V),
    Stale(V),
    /// Stale, and this caller was chosen to reload it.
    Refresh(V),
}

impl<K, V> TtlCache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache with `config`, counting entries; [`builder`](Self::builder) adds a weigher,
    /// shards or another clock.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid field.
    pub fn new(config: TtlConfig) -> Result<Self, BuildError> {
        TtlCacheBuilder::from_config(config).build()
    }

    /// A builder with the defaults of [`TtlConfig`].
    pub fn builder() -> TtlCacheBuilder<K, V> {
        TtlCacheBuilder::from_config(TtlConfig::default())
    }
}

impl<K, V> TtlCacheBuilder<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: TtlConfig) -> Self {
        TtlCacheBuilder {
            config,
            weigher: None,
            shards: None,
            clock: FastClock::new(),
        }
    }
}

impl<K, V, C> TtlCache<K, V, C>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// The fresh value of `key`, if any. A stale value is not returned here; use
    /// [`get_or_load`](Self::get_or_load) for the stale windows.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let inner = &*self.inner;
        match inner.store.get(key) {
            Some(entry) if entry.fresh_until > inner.clock.now_nanos() => {
                self.hit();
                Some(entry.value)
            }
            _ => {
                self.miss();
                None
            }
        }
    }

    /// The fresh value of `key`, if any, without counting a hit or a miss: for a caller
    /// that decides what counts (the response cache, which may not serve what it finds).
    pub(crate) fn get_uncounted<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let inner = &*self.inner;
        inner
            .store
            .get(key)
            .filter(|entry| entry.fresh_until > inner.clock.now_nanos())
            .map(|entry| entry.value)
    }

    /// Counts a lookup the caller made through [`get_uncounted`](Self::get_uncounted).
    pub(crate) fn count_lookup(&self, hit: bool) {
        if hit {
            self.hit();
        } else {
            self.miss();
        }
    }

    /// The value of `key` even if expired, as long as it is within a stale window: for a
    /// caller whose fresh source just failed. Counted as a stale hit.
    pub fn get_stale<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let inner = &*self.inner;
        let entry = inner.store.get(key)?;
        if entry.freshness(inner.clock.now_nanos(), inner.windows) == Freshness::Dead {
            return None;
        }
        Counters::add(&inner.counters.stale_hits);
        Some(entry.value)
    }

    /// Stores `value` for the default TTL.
    pub fn insert(&self, key: K, value: V) {
        self.insert_with(key, value, self.inner.config.ttl, &[]);
    }

    /// Stores `value` for `ttl` (with the configured jitter) and under `tags`, for
    /// [`invalidate_tag`](Self::invalidate_tag).
    pub fn insert_with(&self, key: K, value: V, ttl: Duration, tags: &[&str]) {
        let entry = self.entry(value, ttl, tags);
        self.inner.store.insert(key, entry);
        self.inserted(self.inner.clock.now_nanos());
    }

    /// The value of `key`, loading it with `load` when there is none fresh.
    ///
    /// One load per key at a time: concurrent callers for a missing or expired key wait for
    /// the first caller's load and share its value. Within the stale-while-revalidate
    /// window the old value is served to everyone while one caller reloads it; within the
    /// stale-if-error window a failed load serves the old value instead of the error.
    ///
    /// # Errors
    ///
    /// The loader's error, when no usable old value exists.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let inner = &*self.inner;
        let windows = inner.windows;
        let mut load = Some(load);
        loop {
            let now = inner.clock.now_nanos();
            let found = inner
                .store
                .entry_async(key, |_, entry| match entry.freshness(now, windows) {
                    Freshness::Fresh => EntryAction::Retain(Found::Fresh(entry.value.clone())),
                    Freshness::Stale if entry.refreshing => {
                        EntryAction::Retain(Found::Stale(entry.value.clone()))
                    }
                    Freshness::Stale => {
                        entry.refreshing = true;
                        EntryAction::Retain(Found::Refresh(entry.value.clone()))
                    }
                    Freshness::ErrorOnly | Freshness::Dead => EntryAction::ReplaceWithGuard,
                })
                .await;
            return match found {
                EntryResult::Retained(Found::Fresh(value)) => {
                    self.hit();
                    Ok(value)
                }
                EntryResult::Retained(Found::Stale(value)) => {
                    self.stale_hit();
                    Ok(value)
                }
                EntryResult::Retained(Found::Refresh(old)) => {
                    self.miss();
                    match self.run(take(&mut load)).await {
                        Ok(value) => {
                            self.insert(key.clone(), value.clone());
                            Ok(value)
                        }
                        Err(_) => {
                            // The old value is still within its stale window: serve it, and
                            // let the next caller try the reload again.
                            inner.store.entry(key, None, |_, entry| {
                                entry.refreshing = false;
                                EntryAction::Retain(())
                            });
                            Ok(old)
                        }
                    }
                }
                EntryResult::Replaced(guard, old) => {
                    Counters::add(&inner.counters.expirations);
                    self.miss();
                    match self.run(take(&mut load)).await {
                        Ok(value) => {
                            let _ = guard.insert(self.entry(value.clone(), inner.config.ttl, &[]));
                            self.inserted(now);
                            Ok(value)
                        }
                        Err(error) => {
                            let now = inner.clock.now_nanos();
                            if old.freshness(now, windows) == Freshness::Dead {
                                return Err(error);
                            }
                            // Stale-if-error: the old value goes back for everyone waiting.
                            let value = old.value.clone();
                            let _ = guard.insert(Entry {
                                refreshing: false,
                                ..old
                            });
                            Counters::add(&inner.counters.stale_hits);
                            Ok(value)
                        }
                    }
                }
                EntryResult::Vacant(guard) => {
                    self.miss();
                    let value = self.run(take(&mut load)).await?;
                    let _ = guard.insert(self.entry(value.clone(), inner.config.ttl, &[]));
                    self.inserted(now);
                    Ok(value)
                }
                // Neither is produced by `entry_async` with this callback; look again.
                EntryResult::Removed(..) | EntryResult::Timeout => continue,
            };
        }
    }

    async fn run<F, Fut, E>(&self, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        Counters::add(&self.inner.counters.loads);
        let result = load().await;
        if result.is_err() {
            Counters::add(&self.inner.counters.load_errors);
        }
        result
    }

    /// Removes `key`; true if it was there.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.inner.store.remove(key).is_some()
    }

    /// Removes every key starting with `prefix` (`transcript:42:` drops every variant of a
    /// session); returns how many.
    pub fn invalidate_prefix(&self, prefix: &str) -> usize
    where
        K: AsRef<str>,
    {
        self.remove_where(|key, _| key.as_ref().starts_with(prefix))
    }

    /// Removes every entry inserted with `tag`; returns how many.
    pub fn invalidate_tag(&self, tag: &str) -> usize {
        self.remove_where(|_, entry| entry.has_tag(tag))
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.inner.store.clear();
    }

    /// Removes every entry past all its windows now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.now_nanos();
        let windows = self.inner.windows;
        let removed = self.remove_where(|_, entry| entry.dead_at(windows) <= now);
        self.inner
            .counters
            .expirations
            .fetch_add(removed as u64, Relaxed);
        removed
    }

    fn remove_where(&self, doomed: impl Fn(&K, &Entry<V>) -> bool) -> usize {
        let removed = std::cell::Cell::new(0);
        self.inner.store.retain(|key, entry| {
            let doom = doomed(key, entry);
            removed.set(removed.get() + usize::from(doom));
            !doom
        });
        removed.get()
    }

    /// Changes the capacity (in weight) at run time; shrinking evicts at once. Used under
    /// memory pressure; [`restore_capacity`](Self::restore_capacity) undoes it.
    pub fn set_capacity(&self, capacity: u64) {
        let capacity = capacity.max(1);
        self.inner.capacity.store(capacity, Relaxed);
        self.inner.store.set_capacity(capacity);
    }

    /// Back to the configured capacity.
    pub fn restore_capacity(&self) {
        self.set_capacity(self.inner.config.capacity);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.inner.store.is_empty()
    }

    /// The configuration the cache was built with.
    pub fn config(&self) -> &TtlConfig {
        &self.inner.config
    }

    /// A snapshot of the counters; also published as gauges.
    pub fn stats(&self) -> CacheStats {
        let inner = &*self.inner;
        let counters = &inner.counters;
        let hits = counters.hits.sum();
        let stale_hits = counters.stale_hits.load(Relaxed);
        let misses = counters.misses.sum();
        let served = hits + stale_hits;
        let stats = CacheStats {
            hits,
            stale_hits,
            misses,
            inserts: counters.inserts.load(Relaxed),
            evictions: inner.evictions.load(Relaxed),
            expirations: counters.expirations.load(Relaxed),
            loads: counters.loads.load(Relaxed),
            load_errors: counters.load_errors.load(Relaxed),
            entries: inner.store.len() as u64,
            weight: inner.store.weight(),
            capacity: inner.capacity.load(Relaxed),
            hit_rate: if served + misses == 0 {
                0.0
            } else {
                served as f64 / (served + misses) as f64
            },
        };
        inner.telemetry.publish(&stats);
        stats
    }

    #[inline]
    fn hit(&self) {
        self.inner.counters.hits.increment();
    }

    fn stale_hit(&self) {
        Counters::add(&self.inner.counters.stale_hits);
    }

    #[inline]
    fn miss(&self) {
        self.inner.counters.misses.increment();
    }

    fn entry(&self, value: V, ttl: Duration, tags: &[&str]) -> Entry<V> {
        let config = &self.inner.config;
        let now = self.inner.clock.now_nanos();
        let spread = 1.0 + config.ttl_jitter * (2.0 * fastrand::f64() - 1.0);
        let fresh_until = now.saturating_add((ttl.as_nanos() as f64 * spread) as u64);
        Entry {
            value,
            fresh_until,
            tags: (!tags.is_empty())
                .then(|| Arc::new(tags.iter().map(|t| Box::from(*t)).collect())),
            refreshing: false,
        }
    }

    /// Counts an insert and sweeps dead entries if the last sweep is old enough.
    fn inserted(&self, now: u64) {
        let inner = &*self.inner;
        Counters::add(&inner.counters.inserts);
        let interval = u64::try_from(inner.config.sweep_interval.as_nanos()).unwrap_or(u64::MAX);
        let last = inner.last_sweep.load(Relaxed);
        if now.saturating_sub(last) >= interval
            && inner
                .last_sweep
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.purge_expired();
            self.stats();
        }
    }
}

/// The loader, which each call runs at most once: every branch that loads also returns.
fn take<F>(load: &mut Option<F>) -> F {
    load.take().expect("the loader runs at most once per call")
}

impl<K, V, C> fmt::Debug for TtlCache<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlCache")
            .field("name", &self.inner.config.name)
            .field("capacity", &self.inner.capacity.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Weighs entries with the user's weigher (at least 1: quick_cache never evicts weight 0).
struct EntryWeight<K, V>(Option<Weigh<K, V>>);

impl<K, V> Clone for EntryWeight<K, V> {
    fn clone(&self) -> Self {
        EntryWeight(self.0.clone())
    }
}

impl<K, V> Weighter<K, Entry<V>> for EntryWeight<K, V> {
    #[inline]
    fn weight(&self, key: &K, entry: &Entry<V>) -> u64 {
        self.0
            .as_ref()
            .map_or(1, |weigh| weigh(key, &entry.value).max(1))
    }
}

/// Counts evictions as they happen.
#[derive(Clone)]
struct CountEvictions {
    count: Arc<AtomicU64>,
    metric: Counter,
}

impl<K, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: K, _value: V) {
        self.count.fetch_add(1, Relaxed);
        self.metric.increment(1);
    }
}

/// Builds a [`TtlCache`].
#[must_use = "builder does nothing itself, call build()"]
pub struct TtlCacheBuilder<K, V, C = FastClock> {
    config: TtlConfig,
    weigher: Option<Weigh<K, V>>,
    shards: Option<usize>,
    clock: C,
}

impl<K, V, C> TtlCacheBuilder<K, V, C>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    C: Clock,
{
    /// See [`TtlConfig::sweep_interval`].
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.config.sweep_interval = interval;
        self
    }

    /// See [`TtlConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// See [`TtlConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`TtlConfig::capacity`].
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.config.capacity = capacity;
        self
    }

    /// See [`TtlConfig::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// See [`TtlConfig::ttl_jitter`].
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.config.ttl_jitter = jitter;
        self
    }

    /// See [`TtlConfig::stale_while_revalidate`].
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.config.stale_while_revalidate = Some(window);
        self
    }

    /// See [`TtlConfig::stale_if_error`].
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.config.stale_if_error = Some(window);
        self
    }

    /// Weighs each entry (in bytes, say) instead of counting entries; capacity is then in
    /// the same unit.
    pub fn weigher<F>(mut self, weigh: F) -> Self
    where
        F: Fn(&K, &V) -> u64 + Send + Sync + 'static,
    {
        self.weigher = Some(Arc::new(weigh));
        self
    }

    /// Splits the cache into `shards` independently locked parts (a power of two; by
    /// default quick_cache picks one from the core count). Each shard holds an equal share of
    /// the capacity and never admits an item heavier than its share, so with large items
    /// (whole responses) and a small capacity, use fewer shards.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Reads time from `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> TtlCacheBuilder<K, V, C2> {
        TtlCacheBuilder {
            config: self.config,
            weigher: self.weigher,
            shards: self.shards,
            clock,
        }
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid field.
    pub fn build(self) -> Result<TtlCache<K, V, C>, BuildError> {
        let config = self.config;
        config.validate()?;
        let telemetry = Telemetry::new(&config.metrics_prefix, &config.name);
        let evictions = Arc::new(AtomicU64::new(0));
        let nanos = |window: Option<Duration>| {
            window.map_or(0, |w| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX))
        };
        let windows = Windows {
            revalidate: nanos(config.stale_while_revalidate),
            on_error: nanos(config.stale_if_error),
        };
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .estimated_items_capacity(config.capacity.min(1 << 20) as usize)
            .weight_capacity(config.capacity);
        if let Some(shards) = self.shards {
            options.shards(shards.max(1).next_power_of_two());
        }
        let options = options
            .build()
            .map_err(|error| BuildError::new("capacity", error.to_string()))?;
        let store = Cache::with_options(
            options,
            EntryWeight(self.weigher),
            RandomState::default(),
            CountEvictions {
                count: Arc::clone(&evictions),
                metric: telemetry.evictions.clone(),
            },
        );
        Ok(TtlCache {
            inner: Arc::new(Inner {
                store,
                capacity: AtomicU64::new(config.capacity),
                config,
                clock: self.clock,
                counters: Counters::new(),
                windows,
                evictions,
                telemetry,
                last_sweep: AtomicU64::new(0),
            }),
        })
    }
}

impl<K, V, C> fmt::Debug for TtlCacheBuilder<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlCacheBuilder")
            .field("config", &self.config)
            .field("weigher", &self.weigher.is_some())
            .finish_non_exhaustive()
    }
}

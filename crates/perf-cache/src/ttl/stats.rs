use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::{Counter, Gauge, Label};

use perf_core::per_thread::ThreadCounter;

/// A snapshot of a cache's counters, taken by [`TtlCache::stats`](super::TtlCache::stats).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered with a fresh value.
    pub hits: u64,
    /// Lookups answered with a stale value (stale-while-revalidate or stale-if-error).
    pub stale_hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Values stored.
    pub inserts: u64,
    /// Values pushed out to make room.
    pub evictions: u64,
    /// Values found or swept out dead.
    pub expirations: u64,
    /// Loader calls made by `get_or_load`.
    pub loads: u64,
    /// Loader calls that failed.
    pub load_errors: u64,
    /// Entries held.
    pub entries: u64,
    /// Weight held (bytes, with a byte weigher).
    pub weight: u64,
    /// The current capacity in weight.
    pub capacity: u64,
    /// `hits / (hits + misses)`, stale hits counted as hits; 0 before any lookup.
    pub hit_rate: f64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    /// Bumped on the hot path, so without a locked instruction.
    pub(crate) hits: ThreadCounter,
    pub(crate) misses: ThreadCounter,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) inserts: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            hits: ThreadCounter::new(),
            misses: ThreadCounter::new(),
            stale_hits: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            load_errors: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The cache's metrics. Hits and misses are counted on the hot path by the cache's own
/// counters and published here as absolute values, with the gauges, by every `stats()` call
/// and every sweep: a shared metrics counter bumped on every hit would make every thread
/// write the same cache line.
#[derive(Debug)]
pub(crate) struct Telemetry {
    hits: Counter,
    misses: Counter,
    pub(crate) evictions: Counter,
    bytes: Gauge,
    entries: Gauge,
    hit_rate: Gauge,
}

impl Telemetry {
    pub(crate) fn new(prefix: &str, name: &str) -> Self {
        metrics::describe_counter!(
            format!("{prefix}_hits_total"),
            "Cache lookups answered from the cache"
        );
        metrics::describe_counter!(
            format!("{prefix}_misses_total"),
            "Cache lookups that found nothing usable"
        );
        metrics::describe_counter!(
            format!("{prefix}_evictions_total"),
            "Cache entries pushed out to make room"
        );
        metrics::describe_gauge!(
            format!("{prefix}_size_bytes"),
            metrics::Unit::Bytes,
            "Weight held by the cache (bytes with a byte weigher)"
        );
        metrics::describe_gauge!(format!("{prefix}_entries"), "Entries held by the cache");
        metrics::describe_gauge!(
            format!("{prefix}_hit_rate"),
            "Share of cache lookups that hit"
        );
        let labels = vec![Label::new("cache", name.to_owned())];
        Telemetry {
            hits: metrics::counter!(format!("{prefix}_hits_total"), labels.clone()),
            misses: metrics::counter!(format!("{prefix}_misses_total"), labels.clone()),
            evictions: metrics::counter!(format!("{prefix}_evictions_total"), labels.clone()),
            bytes: metrics::gauge!(format!("{prefix}_size_bytes"), labels.clone()),
            entries: metrics::gauge!(format!("{prefix}_entries"), labels.clone()),
            hit_rate: metrics::gauge!(format!("{prefix}_hit_rate"), labels),
        }
    }

    pub(crate) fn publish(&self, stats: &CacheStats) {
        self.hits.absolute(stats.hits + stats.stale_hits);
        self.misses.absolute(stats.misses);
        self.bytes.set(stats.weight as f64);
        self.entries.set(stats.entries as f64);
        self.hit_rate.set(stats.hit_rate);
    }
}

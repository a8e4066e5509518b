//! The snapshot every pool reports, so a registry can list them side by side.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::{Counter, Gauge, Label};

use crate::BuildError;

/// Counters of one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Items asked for.
    pub gets: u64,
    /// Asks answered from the pool (allocations avoided).
    pub hits: u64,
    /// Asks that had to create a new item.
    pub misses: u64,
    /// Items given back and kept.
    pub returns: u64,
    /// Items given back and dropped: too large, or the pool was full.
    pub dropped: u64,
    /// Items held now.
    pub retained: u64,
    /// Bytes held now, for pools that know.
    pub retained_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) returns: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, retained: u64, retained_bytes: u64) -> PoolStats {
        let hits = self.hits.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        PoolStats {
            gets: hits + misses,
            hits,
            misses,
            returns: self.returns.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retained,
            retained_bytes,
        }
    }
}

/// What a pool reports through the `metrics` facade, published by every `stats()` call (the
/// counters as absolute values), so the hot path writes no shared metric.
///
/// | metric | kind |
/// |---|---|
/// | `{prefix}_gets_total`, `_hits_total`, `_misses_total`, `_returns_total`, `_dropped_total` | counters |
/// | `{prefix}_retained`, `{prefix}_retained_bytes` | gauges |
///
/// Every series carries `pool` = the pool's name.
#[derive(Debug)]
pub(crate) struct PoolTelemetry {
    gets: Counter,
    hits: Counter,
    misses: Counter,
    returns: Counter,
    dropped: Counter,
    retained: Gauge,
    retained_bytes: Gauge,
}

impl PoolTelemetry {
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Self, BuildError> {
        perf_core::metric_name::validate_prefix("metrics_prefix", prefix)?;
        for (what, help) in [
            ("gets", "Items asked of the pool"),
            ("hits", "Asks answered from the pool"),
            ("misses", "Asks that created a new item"),
            ("returns", "Items given back and kept"),
            (
                "dropped",
                "Items given back and dropped (too large, or the pool was full)",
            ),
        ] {
            metrics::describe_counter!(format!("{prefix}_{what}_total"), help);
        }
        metrics::describe_gauge!(format!("{prefix}_retained"), "Items held by the pool");
        metrics::describe_gauge!(
            format!("{prefix}_retained_bytes"),
            metrics::Unit::Bytes,
            "Bytes held by the pool"
        );
        let labels = vec![Label::new("pool", name.to_owned())];
        let counter =
            |what: &str| metrics::counter!(format!("{prefix}_{what}_total"), labels.clone());
        let gauge = |what: &str| metrics::gauge!(format!("{prefix}_{what}"), labels.clone());
        Ok(PoolTelemetry {
            gets: counter("gets"),
            hits: counter("hits"),
            misses: counter("misses"),
            returns: counter("returns"),
            dropped: counter("dropped"),
            retained: gauge("retained"),
            retained_bytes: gauge("retained_bytes"),
        })
    }

    pub(crate) fn publish(&self, stats: &PoolStats) {
        self.gets.absolute(stats.gets);
        self.hits.absolute(stats.hits);
        self.misses.absolute(stats.misses);
        self.returns.absolute(stats.returns);
        self.dropped.absolute(stats.dropped);
        self.retained.set(stats.retained as f64);
        self.retained_bytes.set(stats.retained_bytes as f64);
    }
}

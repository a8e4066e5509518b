//! The snapshot every pool reports, so a registry can list them side by side.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

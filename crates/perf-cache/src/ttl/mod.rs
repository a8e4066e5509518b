//! [`TtlCache`]: quick_cache's speed with per-entry TTLs, single-flight loading, stale
//! windows, invalidation by key, prefix and tag, run-time capacity, and stats.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `{prefix}_hits_total`, `{prefix}_misses_total` | counter, published by `stats()` and sweeps | `cache` |
//! | `{prefix}_evictions_total` | counter, as evictions happen | `cache` |
//! | `{prefix}_size_bytes`, `{prefix}_entries`, `{prefix}_hit_rate` | gauge, published by `stats()` and sweeps | `cache` |
//!
//! Call `stats()` before a scrape (the exposition handler is a good place) for current
//! values.

mod cache;
mod config;
mod entry;
mod stats;

pub use cache::{TtlCache, TtlCacheBuilder};
pub use config::TtlConfig;
pub use stats::CacheStats;

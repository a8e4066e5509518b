//! Caching for async services. **Planned, no code yet**: the scope
//! below is what it will provide (tracked as the perf-cache issue).
//!
//! - `TtlCache<K, V>` on quick_cache: byte weights, per-entry TTL with jitter and no
//!   background thread, single-flight loading, stale-while-revalidate and stale-if-error,
//!   invalidation by key, prefix and tag, a run-time adjustable capacity, and hit/miss stats.
//! - `ResponseCacheLayer`: a tower layer caching GET/HEAD responses with `Vary` enforced,
//!   `Cache-Control` respected, body-hash ETags answering `If-None-Match` with 304, and one
//!   stored variant per `Accept-Encoding`.
//! - `CacheWarmer`: warm-up functions run on a schedule and on demand.
//! - An L2 trait for a shared cache, which the in-process cache does not depend on.

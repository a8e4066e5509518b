//! Resource pools for async services. **Planned, no code yet**: the
//! scope below is what it will provide (tracked as the perf-pool issue), so that nothing
//! depends on it by mistake before then.
//!
//! - `BufferPool`: pooled `bytes::BytesMut` in size classes, reset on return, a cap on
//!   retained bytes with shrinking, a guard that returns the buffer on drop and can `freeze()`
//!   into `Bytes`, with hit/miss statistics.
//! - `ObjectPool<T>` on the `object-pool` crate with a reset hook, a capacity cap and stats,
//!   and a `PoolManager` that reports every named pool in one snapshot.
//! - `TaskPool`: a bounded priority queue (higher first, FIFO within a priority) with
//!   per-kind concurrency limits, queue timeouts, cancellation and typed "full" errors.
//! - `PgPool`: deadpool-postgres with Go's `max_open_conns`, `max_idle_conns`,
//!   `conn_max_lifetime` and `conn_max_idle_time` enforced, min-idle warm-up, default
//!   timeouts so that `get()` never hangs, a bounded statement cache and slow-query counting.

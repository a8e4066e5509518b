//! Tower layers for HTTP services. **Planned, no code yet**: the
//! scope below is what it will provide (tracked as the perf-middleware issue).
//!
//! - Rate limiting (GCRA per key, bounded keyed state, `RateLimit-*` and `Retry-After`).
//! - Load shedding: an immediate-reject concurrency limit and an adaptive limit from latency.
//! - Compression on async-compression with fast defaults for dynamic JSON.
//! - Request metrics on `metrics` with route-template labels and a cardinality cap.
//! - Request ids, `Server-Timing`, timeouts, streaming body limits and security headers, and a
//!   `PerformanceLayer` stacking them in a documented order.

//! A snapshot: named figures taken at one moment.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// The figures' names used across the crate, the API's and the dashboard's.
pub mod names {
    /// Process CPU use since the previous snapshot, percent of one core.
    pub const CPU_USAGE_PERCENT: &str = "cpu_usage_percent";
    /// OS threads of the process.
    pub const THREAD_COUNT: &str = "thread_count";
    /// Open file descriptors.
    pub const OPEN_FDS: &str = "open_fds";
    /// Resident memory.
    pub const RESIDENT_BYTES: &str = "resident_bytes";
    /// Resident memory as a percentage of the memory limit.
    pub const MEMORY_USAGE_PERCENT: &str = "memory_usage_percent";
    /// tokio worker threads.
    pub const TOKIO_WORKERS: &str = "tokio_workers";
    /// Tasks alive on the runtime (what a Go server reports as its goroutine count).
    pub const TOKIO_ALIVE_TASKS: &str = "tokio_alive_tasks";
    /// Tasks waiting in the runtime's global queue.
    pub const TOKIO_GLOBAL_QUEUE_DEPTH: &str = "tokio_global_queue_depth";
    /// Requests in progress.
    pub const ACTIVE_REQUESTS: &str = "active_requests";
    /// Median request latency.
    pub const LATENCY_P50_MS: &str = "request_latency_p50_ms";
    /// 95th percentile request latency.
    pub const LATENCY_P95_MS: &str = "request_latency_p95_ms";
    /// 99th percentile request latency.
    pub const LATENCY_P99_MS: &str = "request_latency_p99_ms";
    /// Requests per second.
    pub const THROUGHPUT_RPS: &str = "throughput_rps";
    /// Share of requests that failed.
    pub const ERROR_RATE: &str = "error_rate";
    /// Cache hit rate (from a probe).
    pub const CACHE_HIT_RATE: &str = "cache_hit_rate";
    /// Slow database queries so far (from a probe).
    pub const DB_SLOW_QUERIES: &str = "db_slow_queries_count";

    /// The help text of a figure's gauge: what it is, for the names above; a generic line
    /// naming it for figures a probe adds.
    pub fn describe(name: &str) -> String {
        let known = match name {
            CPU_USAGE_PERCENT => "Process CPU use since the previous snapshot, percent of one core",
            THREAD_COUNT => "OS threads of the process",
            OPEN_FDS => "Open file descriptors",
            RESIDENT_BYTES => "Resident memory, bytes",
            MEMORY_USAGE_PERCENT => "Resident memory as a percentage of the memory limit",
            TOKIO_WORKERS => "tokio worker threads",
            TOKIO_ALIVE_TASKS => "Tasks alive on the tokio runtime",
            TOKIO_GLOBAL_QUEUE_DEPTH => "Tasks waiting in the runtime's global queue",
            ACTIVE_REQUESTS => "Requests in progress",
            LATENCY_P50_MS => "Median request latency over the latency window, milliseconds",
            LATENCY_P95_MS => "95th percentile request latency, milliseconds",
            LATENCY_P99_MS => "99th percentile request latency, milliseconds",
            THROUGHPUT_RPS => "Requests per second over the latency window",
            ERROR_RATE => "Share of requests that failed over the latency window",
            CACHE_HIT_RATE => "Cache hit rate",
            DB_SLOW_QUERIES => "Slow database queries so far",
            "heap_alloc_bytes" => "Bytes allocated by the application (jemalloc)",
            "heap_inuse_bytes" => "Bytes in pages the allocator has in use (jemalloc)",
            "heap_sys_bytes" => "Bytes the allocator has mapped from the OS (jemalloc)",
            "heap_resident_bytes" => "Bytes of the allocator's pages resident in memory (jemalloc)",
            "heap_retained_bytes" => "Bytes the allocator keeps mapped for reuse (jemalloc)",
            _ => return format!("Snapshot figure {name}"),
        };
        known.to_owned()
    }
}

/// Figures taken at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// When.
    pub taken_at: SystemTime,
    /// Figure name to value.
    pub values: BTreeMap<String, f64>,
}

impl Snapshot {
    /// An empty snapshot taken at `taken_at`.
    pub fn at(taken_at: SystemTime) -> Self {
        Snapshot {
            taken_at,
            values: BTreeMap::new(),
        }
    }

    /// Adds a figure.
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.values.insert(name.into(), value);
        }
    }

    /// A figure, if taken.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

//! Collectors: the process, the tokio runtime, request latency, and probes.

#[cfg(feature = "jemalloc")]
mod allocator;
mod latency;
mod layer;
mod probe;
mod process;
mod runtime;

#[cfg(feature = "jemalloc")]
pub use allocator::{
    HEAP_ALLOC_BYTES, HEAP_INUSE_BYTES, HEAP_RESIDENT_BYTES, HEAP_RETAINED_BYTES, HEAP_SYS_BYTES,
    PurgeError, collect_allocator, purge_arenas,
};
pub use latency::{LatencyRecorder, RequestTimer};
pub use layer::{Latency, LatencyLayer, ResponseFuture};
pub use probe::Probe;
pub use process::ProcessCollector;
pub use runtime::collect_runtime;

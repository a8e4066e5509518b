//! Collectors: the process, the tokio runtime, request latency, and probes.

mod latency;
mod layer;
mod probe;
mod process;
mod runtime;

pub use latency::{LatencyRecorder, RequestTimer};
pub use layer::{Latency, LatencyLayer, ResponseFuture};
pub use probe::Probe;
pub use process::ProcessCollector;
pub use runtime::collect_runtime;

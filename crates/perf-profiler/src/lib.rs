//! Performance profiling for a running service. **Planned, no code yet**: the
//! scope below is what it will provide (tracked as the perf-profiler issue). Every
//! figure it will report comes from samples it took.
//!
//! - Collectors: process CPU, memory, threads and file descriptors; jemalloc figures; tokio
//!   runtime figures; windowed latency percentiles; and probes the application registers.
//! - A bounded snapshot history, health thresholds with hysteresis, trend and change-point
//!   detection, reports (JSON, Markdown, CSV), an optimizer running registered actions, and
//!   time-limited CPU profile capture.

//! Performance profiling for a running service.

pub mod collect;
#[cfg(feature = "cpu-profile")]
pub mod cpu;
mod error;
pub mod health;
pub mod optimizer;
mod profiler;
pub mod report;
pub mod snapshot;
pub mod trends;

pub use error::BuildError;
pub use profiler::{Profiler, ProfilerConfig, SamplerHandle};

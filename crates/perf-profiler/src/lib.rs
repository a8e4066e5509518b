#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod collect;
#[cfg(feature = "cpu-profile")]
pub mod cpu;
pub mod health;
pub mod optimizer;
mod profiler;
pub mod report;
pub mod snapshot;
pub mod trends;

pub use perf_core::BuildError;
pub use profiler::{Profiler, ProfilerBuilder, ProfilerConfig, SamplerHandle};

#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod buffer;
pub mod manager;
pub mod object;
pub mod pg;
mod stats;
pub mod task;

pub use perf_core::BuildError;
pub use stats::PoolStats;

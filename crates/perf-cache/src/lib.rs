#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use perf_core::clock;
pub mod l2;
pub mod response;
pub mod ttl;
pub mod warmer;

pub use perf_core::BuildError;

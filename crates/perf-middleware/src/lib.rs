#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body_limit;
pub mod body_timeout;
pub use perf_core::clock;
pub mod compression;
pub mod load_shed;
pub mod metrics;
pub mod normalize_path;
pub mod performance;
pub mod rate_limit;
pub mod request_id;
mod response;
pub mod security_headers;
pub mod server_timing;
pub mod timeout;

pub use perf_core::BuildError;

/// The error type of bodies that may fail in more than one way (the inner body, an encoder).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

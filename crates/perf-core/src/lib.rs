//! What the PocWhisp-rs perf crates share, and nothing else: the [`BuildError`] every
//! builder returns, the [`clock`]s of time-based layers, the [`metric_name`] rule, [`per_thread`] counters, the [`RequestHead`] that key,
//! priority and bypass functions look at, and the poison-tolerant [`sync`] locks the crates
//! use inside. Each perf crate re-exports what its users need, so they never name this crate.

pub mod clock;
mod error;
pub mod metric_name;
pub mod per_thread;
#[cfg(feature = "redis")]
pub mod redis;
mod request;
pub mod sync;

pub use error::BuildError;
pub use request::RequestHead;

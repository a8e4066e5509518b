//! What the PocWhisp-rs perf crates share, and nothing else: the [`BuildError`] every
//! builder returns, the [`clock`]s of time-based layers, and the [`RequestHead`] that key,
//! priority and bypass functions look at. Each perf crate re-exports what it uses, so users
//! never need this crate by name.

pub mod clock;
mod error;
mod request;

pub use error::BuildError;
pub use request::RequestHead;

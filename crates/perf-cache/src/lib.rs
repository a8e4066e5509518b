//! Caching for async services.

pub mod clock;
mod error;
pub mod l2;
pub mod response;
pub mod ttl;
pub mod warmer;

pub use error::BuildError;

//! Caching for async services.

pub mod clock;
mod error;
pub mod response;
pub mod ttl;

pub use error::BuildError;

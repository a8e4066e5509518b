//! Tower layers for HTTP services: rate limiting, load shedding, compression, request
//! metrics, request ids and `Server-Timing`, timeouts, body limits and security headers,
//! each usable alone.

pub mod clock;
mod error;
pub mod rate_limit;
mod response;

pub use error::BuildError;

//! A rate limiter shared between processes through Redis (feature `redis`).
//!
//! [`RedisRateLimiter`] runs the same GCRA as the in-process [`RateLimiter`] as one
//! server-side script per check (one round trip, atomic, on the Redis server's clock), so
//! several instances behind a load balancer enforce one quota between them instead of each
//! its own. A [`RateLimitLayer`] takes it in place of the in-process limiter, with the same
//! headers and the same `429`.
//!
//! It degrades instead of failing: a check that Redis does not answer within the timeout, or
//! that a [`CircuitBreaker`](perf_breaker::CircuitBreaker) around Redis refuses while Redis is
//! known to be down, is decided by a local limiter holding the quota divided by the number of
//! instances, so the instances together still stay within it. When Redis answers again the
//! breaker closes and checks go back to it by themselves.
//!
//! Keys are named `{prefix}:{key}` ([`RedisKey`]); tokens and identities are digests keyed with
//! a secret that every instance must share ([`share_key_secret`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use perf_middleware::rate_limit::redis::{Client, RedisRateLimiter};
//! use perf_middleware::rate_limit::{ConfiguredKey, KeyValue, Quota, RateLimitKey, RateLimitLayer};
//!
//! perf_middleware::rate_limit::share_key_secret(b"the same secret on every instance")?;
//! let client = Client::open("redis://127.0.0.1:6379")?;
//! let limiter = RedisRateLimiter::builder(Quota::per_second(100).burst(200))
//!     .prefix("myapp:api")
//!     .instances(3)
//!     .build::<KeyValue>(client)?;
//! let layer = RateLimitLayer::new(limiter, ConfiguredKey::new(&RateLimitKey::default())?);
//! # Ok(())
//! # }
//! ```
//!
//! [`RateLimiter`]: super::RateLimiter
//! [`RateLimitLayer`]: super::RateLimitLayer
//! [`share_key_secret`]: super::share_key_secret

mod key;
mod limiter;
mod service;

/// The Redis client the limiter is built from (the `redis` crate's).
pub use ::redis::Client;
pub use key::RedisKey;
pub use limiter::{RedisRateLimiter, RedisRateLimiterBuilder};
pub use service::SharedResponseFuture;

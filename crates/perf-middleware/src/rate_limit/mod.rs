//! Rate limiting with GCRA: a token bucket per key in one atomic word, lock-free on the
//! check, with a bounded, self-cleaning key set.
//!
//! A [`RateLimiter`] decides; a [`RateLimitLayer`] applies it to HTTP requests, keyed by a
//! [`KeyExtractor`]: [`IdentityOrPeerIp`] (the [`Identity`] an authentication layer
//! verified, else the client address), [`GlobalKey`], [`PeerIp`] (with trusted proxies for
//! `X-Forwarded-For`), [`BearerToken`], [`HeaderKey`], or any closure. Client-supplied
//! values (tokens, header values, identities) are kept as 64-bit digests keyed with a
//! per-process secret, so the key map's memory does not depend on what clients send. Every response
//! carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (and the
//! `X-RateLimit-*` names); a request over its quota is answered `429 Too Many Requests` with
//! `Retry-After`, without reaching the inner service.
//!
//! Keys are bounded by `max_keys`. A key whose bucket has refilled is exactly as good as a
//! key never seen, so it is dropped whenever its shard needs room: idle keys leave without
//! a cleanup task, and a flood of new keys cannot grow memory past the bound.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use perf_middleware::rate_limit::{BearerToken, Quota, RateLimitLayer, RateLimiter};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let limiter = RateLimiter::builder(Quota::per_second(100).burst(1)).build()?;
//! let mut service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter, BearerToken))
//!     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//!
//! let request = || Request::get("/").header("authorization", "Bearer t1").body(()).unwrap();
//! let first = service.ready().await?.call(request()).await?;
//! assert_eq!(first.headers()["ratelimit-remaining"], "0");
//! let second = service.ready().await?.call(request()).await?;
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(second.headers()["retry-after"], "1");
//! # Ok(())
//! # }
//! ```

mod config;
mod future;
mod gcra;
mod headers;
mod key;
mod layer;
mod limiter;
mod quota;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod service;
mod store;

pub use config::RateLimitConfig;
pub use future::ResponseFuture;
pub use gcra::Decision;
pub use headers::RateLimitHeaders;
pub use key::{
    BearerToken, ConfiguredKey, GlobalKey, HeaderKey, Identity, IdentityOrPeerIp, KeyExtractor,
    KeyValue, PeerAddr, PeerIp, RateLimitKey, RequestHead, share_key_secret,
};
pub use layer::RateLimitLayer;
pub use limiter::{RateLimiter, RateLimiterBuilder, RateLimiterStats};
pub use quota::Quota;
pub use service::RateLimit;

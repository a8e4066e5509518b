use std::fmt;

use tower_layer::Layer;

use super::{
    ConfiguredKey, KeyExtractor, RateLimit, RateLimitConfig, RateLimitHeaders, RateLimiter,
};
use crate::BuildError;

/// Rate-limits requests by the key `X` extracts, with the limiter `L`: the in-process
/// [`RateLimiter`] (the default) or, with the `redis` feature, a
/// [`RedisRateLimiter`](super::redis::RedisRateLimiter); see the [module docs](super).
pub struct RateLimitLayer<X: KeyExtractor, L = RateLimiter<<X as KeyExtractor>::Key>> {
    limiter: L,
    extractor: X,
    headers: RateLimitHeaders,
}

impl RateLimitLayer<ConfiguredKey> {
    /// A keyed limiter, its key and its headers from `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, BuildError> {
        Ok(RateLimitLayer::new(
            RateLimiter::new(config)?,
            ConfiguredKey::new(&config.key).map_err(|error| error.within("key"))?,
        )
        .headers(config.headers))
    }
}

impl<X: KeyExtractor, L> RateLimitLayer<X, L> {
    /// The limiter, to read its stats.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }

    /// Limits each request by `limiter`'s bucket for `extractor`'s key. The limiter is
    /// shared, not copied: give two layers the same limiter and they share buckets.
    pub fn new(limiter: L, extractor: X) -> Self {
        RateLimitLayer {
            limiter,
            extractor,
            headers: RateLimitHeaders::default(),
        }
    }

    /// Which rate-limit fields responses carry (default: standard and legacy names).
    #[must_use]
    pub fn headers(mut self, headers: RateLimitHeaders) -> Self {
        self.headers = headers;
        self
    }
}

impl<X: KeyExtractor + Clone, L: Clone> Clone for RateLimitLayer<X, L> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            headers: self.headers,
        }
    }
}

impl<S, X: KeyExtractor + Clone, L: Clone> Layer<S> for RateLimitLayer<X, L> {
    type Service = RateLimit<S, X, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone(), self.extractor.clone()).headers(self.headers)
    }
}

impl<X: KeyExtractor + fmt::Debug, L: fmt::Debug> fmt::Debug for RateLimitLayer<X, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("extractor", &self.extractor)
            .field("headers", &self.headers)
            .finish()
    }
}

use std::fmt;

use tower_layer::Layer;

use super::{
    ConfiguredKey, KeyExtractor, RateLimit, RateLimitConfig, RateLimitHeaders, RateLimiter,
};
use crate::BuildError;
use crate::clock::FastClock;

/// Rate-limits requests by the key `X` extracts; see the [module docs](super).
pub struct RateLimitLayer<X: KeyExtractor, C = FastClock> {
    limiter: RateLimiter<X::Key, C>,
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

impl<X: KeyExtractor, C> RateLimitLayer<X, C> {
    /// The limiter, to read its stats.
    pub fn limiter(&self) -> &RateLimiter<X::Key, C> {
        &self.limiter
    }

    /// Limits each request by `limiter`'s bucket for `extractor`'s key. The limiter is
    /// shared, not copied: give two layers the same limiter and they share buckets.
    pub fn new(limiter: RateLimiter<X::Key, C>, extractor: X) -> Self {
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

impl<X: KeyExtractor + Clone, C> Clone for RateLimitLayer<X, C> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            headers: self.headers,
        }
    }
}

impl<S, X: KeyExtractor + Clone, C> Layer<S> for RateLimitLayer<X, C> {
    type Service = RateLimit<S, X, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone(), self.extractor.clone()).headers(self.headers)
    }
}

impl<X: KeyExtractor + fmt::Debug, C> fmt::Debug for RateLimitLayer<X, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("extractor", &self.extractor)
            .field("headers", &self.headers)
            .finish()
    }
}

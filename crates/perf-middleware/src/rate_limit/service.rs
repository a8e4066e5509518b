use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{
    KeyExtractor, RateLimitHeaders, RateLimitLayer, RateLimiter, RequestHead, ResponseFuture,
};
use crate::clock::Clock;

/// A service whose requests are rate-limited; built by [`RateLimitLayer`].
///
/// `L` is the limiter: the in-process [`RateLimiter`] (the default), or, with the `redis`
/// feature, a [`RedisRateLimiter`](super::redis::RedisRateLimiter) shared between processes.
pub struct RateLimit<S, X: KeyExtractor, L = RateLimiter<<X as KeyExtractor>::Key>> {
    pub(crate) inner: S,
    pub(crate) limiter: L,
    pub(crate) extractor: X,
    pub(crate) headers: RateLimitHeaders,
}

impl<S, X: KeyExtractor, L> RateLimit<S, X, L> {
    /// Limits `inner` with `limiter`, keyed by `extractor`.
    pub fn new(inner: S, limiter: L, extractor: X) -> Self {
        RateLimit {
            inner,
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

    /// A layer doing the same.
    pub fn layer(limiter: L, extractor: X) -> RateLimitLayer<X, L> {
        RateLimitLayer::new(limiter, extractor)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, X: KeyExtractor + Clone, L: Clone> Clone for RateLimit<S, X, L> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            headers: self.headers,
        }
    }
}

impl<S, X, C, ReqBody, ResBody> Service<Request<ReqBody>>
    for RateLimit<S, X, RateLimiter<X::Key, C>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    X: KeyExtractor,
    C: Clock,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = self.extractor.extract(&RequestHead::of(&request));
        let decision = self.limiter.check(&key);
        if decision.is_allowed() {
            ResponseFuture::allowed(self.inner.call(request), decision, self.headers)
        } else {
            ResponseFuture::limited(decision, self.headers)
        }
    }
}

impl<S: fmt::Debug, X: KeyExtractor + fmt::Debug, L: fmt::Debug> fmt::Debug for RateLimit<S, X, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("extractor", &self.extractor)
            .field("headers", &self.headers)
            .finish()
    }
}

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{
    KeyExtractor, RateLimitHeaders, RateLimitLayer, RateLimiter, RequestHead, ResponseFuture,
};
use crate::clock::{Clock, FastClock};

/// A service whose requests are rate-limited; built by [`RateLimitLayer`].
pub struct RateLimit<S, X: KeyExtractor, C = FastClock> {
    inner: S,
    limiter: RateLimiter<X::Key, C>,
    extractor: X,
    headers: RateLimitHeaders,
}

impl<S, X: KeyExtractor, C> RateLimit<S, X, C> {
    /// Limits `inner` with `limiter`, keyed by `extractor`.
    pub fn new(inner: S, limiter: RateLimiter<X::Key, C>, extractor: X) -> Self {
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
    pub fn layer(limiter: RateLimiter<X::Key, C>, extractor: X) -> RateLimitLayer<X, C> {
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

impl<S: Clone, X: KeyExtractor + Clone, C> Clone for RateLimit<S, X, C> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            headers: self.headers,
        }
    }
}

impl<S, X, C, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, X, C>
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

impl<S: fmt::Debug, X: KeyExtractor + fmt::Debug, C> fmt::Debug for RateLimit<S, X, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("extractor", &self.extractor)
            .field("headers", &self.headers)
            .finish()
    }
}

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{RedisKey, RedisRateLimiter};
use crate::rate_limit::{KeyExtractor, RateLimit, RequestHead, ResponseFuture};

/// The response future of a [`RateLimit`] on a [`RedisRateLimiter`]: the check is a round
/// trip, so the request waits for it before reaching the inner service.
pub type SharedResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The inner service is cloned per request (tower's pattern for services that call their
/// inner one from a future: the clone stays behind, the service that was ready goes with the
/// request), so it must be `Clone`.
impl<S, X, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, X, RedisRateLimiter<X::Key>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    X: KeyExtractor,
    X::Key: RedisKey + Send + Sync,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SharedResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = self.extractor.extract(&RequestHead::of(&request));
        let limiter = self.limiter.clone();
        let headers = self.headers;
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let decision = limiter.check(&key).await;
            if decision.is_allowed() {
                ResponseFuture::allowed(ready.call(request), decision, headers).await
            } else {
                ResponseFuture::<S::Future>::limited(decision, headers).await
            }
        })
    }
}

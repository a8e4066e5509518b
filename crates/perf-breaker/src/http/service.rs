use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{HttpCircuitBreakerLayer, HttpClassifier, ResponseFuture};
use crate::breaker::CircuitBreaker;
use crate::classify::Classify;
use crate::select::SelectBreaker;

/// An HTTP service guarded by a circuit breaker; built by [`HttpCircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct HttpCircuitBreaker<S, B = CircuitBreaker, C = HttpClassifier> {
    inner: S,
    breakers: B,
    classify: C,
}

impl<S> HttpCircuitBreaker<S> {
    /// Guards `inner` with `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        HttpCircuitBreaker::with_parts(inner, breaker, HttpClassifier)
    }

    /// A layer that guards HTTP services with `breaker`.
    pub fn layer(breaker: CircuitBreaker) -> HttpCircuitBreakerLayer {
        HttpCircuitBreakerLayer::new(breaker)
    }
}

impl<S, B, C> HttpCircuitBreaker<S, B, C> {
    pub(crate) fn with_parts(inner: S, breakers: B, classify: C) -> Self {
        HttpCircuitBreaker {
            inner,
            breakers,
            classify,
        }
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

impl<S, B, C, ReqBody, ResBody> Service<Request<ReqBody>> for HttpCircuitBreaker<S, B, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    B: SelectBreaker<Request<ReqBody>>,
    C: Classify<Response<ResBody>, S::Error> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.breakers.acquire(&request) {
            Ok(permit) => {
                ResponseFuture::admitted(self.inner.call(request), permit, self.classify.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

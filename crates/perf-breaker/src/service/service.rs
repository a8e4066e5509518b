use std::task::{Context, Poll};

use tower_service::Service;

use super::{BoxError, CircuitBreakerLayer, ResponseFuture};
use crate::breaker::CircuitBreaker;
use crate::classify::{Classify, ErrorsFail};
use crate::select::SelectBreaker;

/// A service guarded by a circuit breaker; built by [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, B = CircuitBreaker, C = ErrorsFail> {
    inner: S,
    breakers: B,
    classify: C,
}

impl<S> CircuitBreakerService<S> {
    /// Guards `inner` with `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        CircuitBreakerService::with_parts(inner, breaker, ErrorsFail)
    }

    /// A layer that guards services with `breaker`.
    pub fn layer(breaker: CircuitBreaker) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(breaker)
    }
}

impl<S, B, C> CircuitBreakerService<S, B, C> {
    pub(crate) fn with_parts(inner: S, breakers: B, classify: C) -> Self {
        CircuitBreakerService {
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

impl<S, B, C, Request> Service<Request> for CircuitBreakerService<S, B, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    B: SelectBreaker<Request>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.breakers.acquire(&request) {
            Ok(permit) => {
                ResponseFuture::admitted(self.inner.call(request), permit, self.classify.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

use std::task::{Context, Poll};

use tower_service::Service;

use super::{Answer, BreakerLayer, RejectWithError, ResponseFuture};
use crate::breaker::CircuitBreaker;
use crate::classify::{Classify, ErrorsFail};
use crate::select::SelectBreaker;

/// A service guarded by a circuit breaker; built by [`BreakerLayer`].
#[derive(Debug, Clone)]
pub struct Breaker<S, B = CircuitBreaker, C = ErrorsFail, A = RejectWithError> {
    inner: S,
    breakers: B,
    classify: C,
    answer: A,
}

impl<S> Breaker<S> {
    /// Guards `inner` with `breaker`.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Breaker::with_parts(inner, breaker, ErrorsFail, RejectWithError)
    }

    /// A layer that guards services with `breaker`.
    pub fn layer(breaker: CircuitBreaker) -> BreakerLayer {
        BreakerLayer::new(breaker)
    }
}

impl<S, B, C, A> Breaker<S, B, C, A> {
    pub(crate) fn with_parts(inner: S, breakers: B, classify: C, answer: A) -> Self {
        Breaker {
            inner,
            breakers,
            classify,
            answer,
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

impl<S, B, C, A, Request> Service<Request> for Breaker<S, B, C, A>
where
    S: Service<Request>,
    B: SelectBreaker<Request>,
    C: Classify<S::Response, S::Error> + Clone,
    A: Answer<S::Response, S::Error> + Clone,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = ResponseFuture<S::Future, C, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(A::not_ready)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.breakers.acquire(&request) {
            Ok(permit) => {
                ResponseFuture::admitted(self.inner.call(request), permit, self.classify.clone())
            }
            Err(open) => ResponseFuture::rejected(open, self.answer.clone()),
        }
    }
}

use tower_layer::Layer;

use super::{Breaker, RejectWithError};
use crate::breaker::CircuitBreaker;
use crate::classify::ErrorsFail;
use crate::keyed::KeyedCircuitBreaker;
use crate::select::ByKey;

/// Applies a circuit breaker to a service; see the [module docs](crate::service).
///
/// `B` picks the breaker per request ([`CircuitBreaker`] or [`ByKey`]), `C` classifies
/// results, `A` turns outcomes into the service's result (see [`Answer`](super::Answer)).
#[derive(Debug, Clone)]
pub struct BreakerLayer<B = CircuitBreaker, C = ErrorsFail, A = RejectWithError> {
    breakers: B,
    classify: C,
    answer: A,
}

impl BreakerLayer {
    /// Every request goes through `breaker`; every `Err` is a failure.
    pub const fn new(breaker: CircuitBreaker) -> Self {
        BreakerLayer::with_parts(breaker, ErrorsFail, RejectWithError)
    }
}

impl<K, F> BreakerLayer<ByKey<K, F>> {
    /// Each request goes through the breaker of `key(&request)`.
    pub fn keyed(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        BreakerLayer::with_parts(ByKey::new(breakers, key), ErrorsFail, RejectWithError)
    }
}

impl<B, C, A> BreakerLayer<B, C, A> {
    pub(crate) const fn with_parts(breakers: B, classify: C, answer: A) -> Self {
        BreakerLayer {
            breakers,
            classify,
            answer,
        }
    }

    /// Classifies results with `classify` instead.
    pub fn classifier<C2>(self, classify: C2) -> BreakerLayer<B, C2, A> {
        BreakerLayer::with_parts(self.breakers, classify, self.answer)
    }

    /// Turns outcomes into results with `answer` instead.
    pub fn answer<A2>(self, answer: A2) -> BreakerLayer<B, C, A2> {
        BreakerLayer::with_parts(self.breakers, self.classify, answer)
    }
}

impl<S, B: Clone, C: Clone, A: Clone> Layer<S> for BreakerLayer<B, C, A> {
    type Service = Breaker<S, B, C, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::with_parts(
            inner,
            self.breakers.clone(),
            self.classify.clone(),
            self.answer.clone(),
        )
    }
}

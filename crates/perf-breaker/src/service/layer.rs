use tower_layer::Layer;

use super::CircuitBreakerService;
use crate::breaker::CircuitBreaker;
use crate::classify::ErrorsFail;
use crate::keyed::KeyedCircuitBreaker;
use crate::select::ByKey;

/// Applies a circuit breaker to any service; see the [module docs](crate::service).
///
/// `B` picks the breaker per request ([`CircuitBreaker`] or [`ByKey`]); `C` classifies
/// results.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<B = CircuitBreaker, C = ErrorsFail> {
    breakers: B,
    classify: C,
}

impl CircuitBreakerLayer {
    /// Every request goes through `breaker`; every `Err` is a failure.
    pub const fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breakers: breaker,
            classify: ErrorsFail,
        }
    }
}

impl<K, F> CircuitBreakerLayer<ByKey<K, F>> {
    /// Each request goes through the breaker of `key(&request)`.
    pub fn keyed(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        CircuitBreakerLayer {
            breakers: ByKey::new(breakers, key),
            classify: ErrorsFail,
        }
    }
}

impl<B, C> CircuitBreakerLayer<B, C> {
    /// Classifies results with `classify` instead.
    pub fn classifier<C2>(self, classify: C2) -> CircuitBreakerLayer<B, C2> {
        CircuitBreakerLayer {
            breakers: self.breakers,
            classify,
        }
    }
}

impl<S, B: Clone, C: Clone> Layer<S> for CircuitBreakerLayer<B, C> {
    type Service = CircuitBreakerService<S, B, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::with_parts(inner, self.breakers.clone(), self.classify.clone())
    }
}

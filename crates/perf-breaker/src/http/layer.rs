use tower_layer::Layer;

use super::{HttpCircuitBreaker, HttpClassifier};
use crate::breaker::CircuitBreaker;
use crate::keyed::KeyedCircuitBreaker;
use crate::select::ByKey;

/// Applies a circuit breaker to an HTTP service; see the [module docs](crate::http).
#[derive(Debug, Clone)]
pub struct HttpCircuitBreakerLayer<B = CircuitBreaker, C = HttpClassifier> {
    breakers: B,
    classify: C,
}

impl HttpCircuitBreakerLayer {
    /// Every request goes through `breaker`, classified by [`HttpClassifier`].
    pub const fn new(breaker: CircuitBreaker) -> Self {
        HttpCircuitBreakerLayer {
            breakers: breaker,
            classify: HttpClassifier,
        }
    }
}

impl<K, F> HttpCircuitBreakerLayer<ByKey<K, F>> {
    /// Each request goes through the breaker of `key(&request)`: per upstream host, per
    /// route, per tenant.
    pub fn keyed(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        HttpCircuitBreakerLayer {
            breakers: ByKey::new(breakers, key),
            classify: HttpClassifier,
        }
    }
}

impl<B, C> HttpCircuitBreakerLayer<B, C> {
    /// Classifies responses with `classify` instead.
    pub fn classifier<C2>(self, classify: C2) -> HttpCircuitBreakerLayer<B, C2> {
        HttpCircuitBreakerLayer {
            breakers: self.breakers,
            classify,
        }
    }
}

impl<S, B: Clone, C: Clone> Layer<S> for HttpCircuitBreakerLayer<B, C> {
    type Service = HttpCircuitBreaker<S, B, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpCircuitBreaker::with_parts(inner, self.breakers.clone(), self.classify.clone())
    }
}

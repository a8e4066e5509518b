use tower_layer::Layer;

use super::{HttpCircuitBreaker, HttpClassifier, RespondUnavailable};
use crate::breaker::CircuitBreaker;
use crate::keyed::KeyedCircuitBreaker;
use crate::select::ByKey;
use crate::service::CircuitBreakerLayer;

/// Applies a circuit breaker to an HTTP service; see the [module docs](crate::http).
///
/// The [generic layer](CircuitBreakerLayer) set up with [`HttpClassifier`] and
/// [`RespondUnavailable`].
#[derive(Debug, Clone)]
pub struct HttpCircuitBreakerLayer<B = CircuitBreaker, C = HttpClassifier> {
    layer: CircuitBreakerLayer<B, C, RespondUnavailable>,
}

impl HttpCircuitBreakerLayer {
    /// Every request goes through `breaker`, classified by [`HttpClassifier`].
    pub const fn new(breaker: CircuitBreaker) -> Self {
        HttpCircuitBreakerLayer {
            layer: CircuitBreakerLayer::with_parts(breaker, HttpClassifier, RespondUnavailable),
        }
    }
}

impl<K, F> HttpCircuitBreakerLayer<ByKey<K, F>> {
    /// Each request goes through the breaker of `key(&request)`: per upstream host, per
    /// route, per tenant.
    pub fn keyed(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        HttpCircuitBreakerLayer {
            layer: CircuitBreakerLayer::with_parts(
                ByKey::new(breakers, key),
                HttpClassifier,
                RespondUnavailable,
            ),
        }
    }
}

impl<B, C> HttpCircuitBreakerLayer<B, C> {
    /// Classifies responses with `classify` instead.
    pub fn classifier<C2>(self, classify: C2) -> HttpCircuitBreakerLayer<B, C2> {
        HttpCircuitBreakerLayer {
            layer: self.layer.classifier(classify),
        }
    }
}

impl<S, B: Clone, C: Clone> Layer<S> for HttpCircuitBreakerLayer<B, C> {
    type Service = HttpCircuitBreaker<S, B, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.layer.layer(inner)
    }
}

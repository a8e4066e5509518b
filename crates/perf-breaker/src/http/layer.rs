use tower_layer::Layer;

use super::{HttpBreaker, HttpClassifier, RespondUnavailable};
use crate::breaker::CircuitBreaker;
use crate::keyed::KeyedCircuitBreaker;
use crate::select::ByKey;
use crate::service::BreakerLayer;

/// Applies a circuit breaker to an HTTP service; see the [module docs](crate::http).
///
/// The [generic layer](BreakerLayer) set up with [`HttpClassifier`] and
/// [`RespondUnavailable`].
#[derive(Debug, Clone)]
pub struct HttpBreakerLayer<B = CircuitBreaker, C = HttpClassifier> {
    layer: BreakerLayer<B, C, RespondUnavailable>,
}

impl HttpBreakerLayer {
    /// Every request goes through `breaker`, classified by [`HttpClassifier`].
    pub const fn new(breaker: CircuitBreaker) -> Self {
        HttpBreakerLayer {
            layer: BreakerLayer::with_parts(breaker, HttpClassifier, RespondUnavailable),
        }
    }
}

impl<K, F> HttpBreakerLayer<ByKey<K, F>> {
    /// Each request goes through the breaker of `key(&request)`: per upstream host, per
    /// route, per tenant.
    pub fn keyed(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        HttpBreakerLayer {
            layer: BreakerLayer::with_parts(
                ByKey::new(breakers, key),
                HttpClassifier,
                RespondUnavailable,
            ),
        }
    }
}

impl<B, C> HttpBreakerLayer<B, C> {
    /// Classifies responses with `classify` instead.
    pub fn classifier<C2>(self, classify: C2) -> HttpBreakerLayer<B, C2> {
        HttpBreakerLayer {
            layer: self.layer.classifier(classify),
        }
    }
}

impl<S, B: Clone, C: Clone> Layer<S> for HttpBreakerLayer<B, C> {
    type Service = HttpBreaker<S, B, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.layer.layer(inner)
    }
}

//! Which breaker guards a request: one for all, or one per key.

use std::fmt;
use std::hash::Hash;

use crate::breaker::CircuitBreaker;
use crate::error::CircuitOpen;
use crate::keyed::KeyedCircuitBreaker;
use crate::permit::OwnedPermit;

/// Picks the breaker for a request and asks it for a permit. Implemented by
/// [`CircuitBreaker`] (every request shares it) and [`ByKey`] (a breaker per key).
pub trait SelectBreaker<Request> {
    /// A permit from the breaker that guards `request`.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when that breaker rejects the call.
    fn acquire(&self, request: &Request) -> Result<OwnedPermit, CircuitOpen>;
}

impl<Request> SelectBreaker<Request> for CircuitBreaker {
    #[inline]
    fn acquire(&self, _request: &Request) -> Result<OwnedPermit, CircuitOpen> {
        self.try_acquire_owned()
    }
}

/// A breaker per key: `key` maps each request to its key (host, route, tenant), and the
/// [`KeyedCircuitBreaker`] holds the breakers.
#[derive(Clone)]
pub struct ByKey<K, F> {
    breakers: KeyedCircuitBreaker<K>,
    key: F,
}

impl<K, F> ByKey<K, F> {
    /// Guards each request with the breaker of `key(request)`.
    pub fn new(breakers: KeyedCircuitBreaker<K>, key: F) -> Self {
        ByKey { breakers, key }
    }

    /// The breakers, to read their states or force one.
    pub fn breakers(&self) -> &KeyedCircuitBreaker<K> {
        &self.breakers
    }
}

impl<Request, K, F> SelectBreaker<Request> for ByKey<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Request) -> K,
{
    #[inline]
    fn acquire(&self, request: &Request) -> Result<OwnedPermit, CircuitOpen> {
        self.breakers.get(&(self.key)(request)).into_owned_permit()
    }
}

impl<K: Hash + Eq + Clone, F> fmt::Debug for ByKey<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByKey")
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

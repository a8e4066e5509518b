//! How a guarded service turns each outcome into its own result.

use super::BoxError;
use crate::error::CircuitOpen;

/// Turns the outcome of a guarded call into the service's result: the inner result of an
/// admitted call, or the breaker's rejection.
///
/// Two answers ship with the crate: [`RejectWithError`] (the generic layer: errors boxed,
/// rejections a boxed [`CircuitOpen`]) and, with the `http` feature,
/// [`RespondUnavailable`](crate::http::RespondUnavailable) (HTTP: the inner service's types
/// unchanged, rejections a `503` response). Implement it to answer differently, for example
/// with a JSON error body in an API's own format.
pub trait Answer<T, E> {
    /// The guarded service's response type.
    type Response;
    /// The guarded service's error type.
    type Error;

    /// The result of a call that the breaker admitted and the inner service answered.
    ///
    /// # Errors
    ///
    /// The inner error, converted to [`Self::Error`](Answer::Error).
    fn admitted(result: Result<T, E>) -> Result<Self::Response, Self::Error>;

    /// The result of a call that the breaker rejected without calling the inner service.
    ///
    /// # Errors
    ///
    /// Whatever this answer makes of a rejection.
    fn rejected(&self, open: CircuitOpen) -> Result<Self::Response, Self::Error>;

    /// The inner service's readiness error, converted.
    fn not_ready(error: E) -> Self::Error;
}

/// The generic layer's answer: inner errors are boxed into [`BoxError`], a rejection is a
/// boxed [`CircuitOpen`] that callers find with `downcast_ref`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectWithError;

impl<T, E> Answer<T, E> for RejectWithError
where
    E: Into<BoxError>,
{
    type Response = T;
    type Error = BoxError;

    #[inline]
    fn admitted(result: Result<T, E>) -> Result<T, BoxError> {
        result.map_err(Into::into)
    }

    fn rejected(&self, open: CircuitOpen) -> Result<T, BoxError> {
        Err(open.into())
    }

    fn not_ready(error: E) -> BoxError {
        error.into()
    }
}

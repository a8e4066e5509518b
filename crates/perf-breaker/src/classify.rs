//! Deciding which results count as failures.

/// Decides whether a call's result counts as a failure for the breaker.
///
/// Implemented for closures `Fn(&Result<T, E>) -> bool`, so a one-off rule needs no type.
pub trait Classify<T, E> {
    /// Whether `result` counts as a failure.
    fn is_failure(&self, result: &Result<T, E>) -> bool;
}

/// Every `Err` is a failure, every `Ok` a success: the default of the generic layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsFail;

impl<T, E> Classify<T, E> for ErrorsFail {
    #[inline]
    fn is_failure(&self, result: &Result<T, E>) -> bool {
        result.is_err()
    }
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> bool,
{
    #[inline]
    fn is_failure(&self, result: &Result<T, E>) -> bool {
        self(result)
    }
}

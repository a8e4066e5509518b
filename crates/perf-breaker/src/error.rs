//! Errors: an invalid configuration, a rejected call, and a call that failed either way.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::state::State;

pub use perf_core::BuildError;

/// The breaker rejected a call without running it.
///
/// The tower layer returns it boxed; find it with
/// `error.downcast_ref::<CircuitOpen>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    state: State,
    retry_after: Duration,
}

impl CircuitOpen {
    pub(crate) fn new(state: State, retry_after: Duration) -> Self {
        CircuitOpen { state, retry_after }
    }

    /// The state that rejected the call: open, forced open, or half-open with every probe
    /// slot taken.
    pub fn state(&self) -> State {
        self.state
    }

    /// How long until the breaker may admit a call again. For an open circuit this is the
    /// rest of the open period; for a forced-open one it is the configured open duration, a
    /// polite guess; for a half-open one with its probe slots taken it is a second.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            State::HalfOpen => {
                f.write_str("circuit breaker is half-open and its probe slots are taken")
            }
            _ => f.write_str("circuit breaker is open"),
        }
    }
}

impl Error for CircuitOpen {}

/// The outcome of [`CircuitBreaker::call`](crate::CircuitBreaker::call) when it is not a
/// success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker rejected the call; the operation did not run.
    Rejected(CircuitOpen),
    /// The operation ran and returned this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// The operation's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(error) => Some(error),
            CallError::Rejected(_) => None,
        }
    }

    /// Whether the breaker rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(open) => open.fmt(f),
            CallError::Inner(error) => error.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for CallError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CallError::Rejected(open) => Some(open),
            CallError::Inner(error) => Some(error),
        }
    }
}

//! State transitions as listeners see them.

use std::fmt;
use std::sync::Arc;

use crate::state::State;

/// One change of state, passed to the listeners registered with
/// [`Builder::on_transition`](crate::Builder::on_transition).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's configured name.
    pub name: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// `failure_threshold` failures in a row while closed.
    ConsecutiveFailures,
    /// The failure rate over the sliding window reached its threshold.
    FailureRate,
    /// The open period ended; probes are admitted.
    OpenPeriodElapsed,
    /// A probe failed while half-open.
    ProbeFailed,
    /// Enough probes succeeded while half-open.
    ProbesSucceeded,
    /// An operator forced the state.
    Forced,
    /// An operator reset the breaker.
    Reset,
}

impl Reason {
    /// A lowercase name, as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::FailureRate => "failure_rate",
            Reason::OpenPeriodElapsed => "open_period_elapsed",
            Reason::ProbeFailed => "probe_failed",
            Reason::ProbesSucceeded => "probes_succeeded",
            Reason::Forced => "forced",
            Reason::Reset => "reset",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition listener. Listeners run on the thread that made the transition, so they
/// should be quick (log, count, send on a channel).
pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

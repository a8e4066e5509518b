//! The breaker's state and the single atomic word it lives in.
//!
//! Everything a call needs to decide "admit or reject" sits in one `u64`, so admission is one
//! atomic load in the closed state and one compare-and-swap in the others; no lock is taken in
//! any state. The layout is
//!
//! ```text
//!  63      61 60            45 44                                  0
//! [ state:3 ][ generation:16  ][ payload:45                         ]
//! ```
//!
//! * `generation` changes on every transition. A permit remembers the generation it was issued
//!   in, so the outcome of a call that started before a transition cannot move the new state
//!   (a slow call admitted while closed must not close a circuit that has since reopened).
//! * `payload` is the open deadline (milliseconds since the breaker was built) when open, and
//!   the in-flight probe count plus the probe success count when half-open.

use std::fmt;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass through; failures are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A limited number of probe calls test whether the dependency recovered.
    HalfOpen,
    /// Forced open by an operator: every call is rejected until reset.
    ForcedOpen,
    /// Forced closed by an operator: every call passes and outcomes never trip the breaker.
    ForcedClosed,
}

impl State {
    /// The value of the state gauge: 0 closed, 1 open, 2 half-open, 3 forced open,
    /// 4 forced closed.
    pub const fn as_gauge(self) -> f64 {
        self.code() as f64
    }

    /// A lowercase name, as used in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
        }
    }

    const fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::ForcedClosed => 4,
        }
    }

    const fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::ForcedClosed,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATE_SHIFT: u32 = 61;
const GENERATION_SHIFT: u32 = 45;
const GENERATION_MASK: u64 = 0xFFFF;
const PAYLOAD_MASK: u64 = (1 << GENERATION_SHIFT) - 1;
/// Half-open payload: in-flight probes in the low 16 bits, successes in the next 16.
const PROBE_BITS: u32 = 16;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;

/// The largest open deadline the payload can hold, in milliseconds (about 1,100 years).
pub(crate) const MAX_DEADLINE_MS: u64 = PAYLOAD_MASK;
/// The largest probe count or success threshold the payload can hold.
pub(crate) const MAX_PROBES: u32 = PROBE_MASK as u32;

/// One decoded value of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn new(state: State, generation: u16, payload: u64) -> Word {
        debug_assert!(payload <= PAYLOAD_MASK);
        Word(
            (state.code() << STATE_SHIFT)
                | ((generation as u64) << GENERATION_SHIFT)
                | (payload & PAYLOAD_MASK),
        )
    }

    pub(crate) fn state(self) -> State {
        State::from_code(self.0 >> STATE_SHIFT)
    }

    pub(crate) fn generation(self) -> u16 {
        ((self.0 >> GENERATION_SHIFT) & GENERATION_MASK) as u16
    }

    /// The word for entering `state`, one generation on.
    pub(crate) fn next(self, state: State, payload: u64) -> Word {
        Word::new(state, self.generation().wrapping_add(1), payload)
    }

    /// Open: the deadline in milliseconds since the breaker's epoch.
    pub(crate) fn deadline_ms(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }

    /// Half-open: probes admitted and not yet finished.
    pub(crate) fn probes_in_flight(self) -> u32 {
        (self.0 & PROBE_MASK) as u32
    }

    /// Half-open: probes that finished successfully.
    pub(crate) fn probe_successes(self) -> u32 {
        ((self.0 >> PROBE_BITS) & PROBE_MASK) as u32
    }

    /// Half-open: the same generation with other probe counts.
    pub(crate) fn with_probes(self, in_flight: u32, successes: u32) -> Word {
        Word::new(
            State::HalfOpen,
            self.generation(),
            (u64::from(successes) << PROBE_BITS) | u64::from(in_flight),
        )
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("payload", &(self.0 & PAYLOAD_MASK))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::ForcedClosed,
        ] {
            let word = Word::new(state, 0xBEEF, MAX_DEADLINE_MS);
            assert_eq!(word.state(), state);
            assert_eq!(word.generation(), 0xBEEF);
            assert_eq!(word.deadline_ms(), MAX_DEADLINE_MS);
        }
    }

    #[test]
    fn probe_counts_are_independent() {
        let word = Word::new(State::HalfOpen, 7, 0).with_probes(MAX_PROBES, 3);
        assert_eq!(word.probes_in_flight(), MAX_PROBES);
        assert_eq!(word.probe_successes(), 3);
        assert_eq!(word.generation(), 7);
        assert_eq!(word.state(), State::HalfOpen);
    }

    #[test]
    fn generation_wraps_instead_of_spilling_into_the_state() {
        let word = Word::new(State::Closed, u16::MAX, 0).next(State::Open, 5);
        assert_eq!(word.generation(), 0);
        assert_eq!(word.state(), State::Open);
        assert_eq!(word.deadline_ms(), 5);
    }
}

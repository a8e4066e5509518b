//! The breaker clock: perf-core's [`FastClock`] (or [`TokioClock`] where tests pause time),
//! read as whole milliseconds since the clock's epoch so that times fit in the state word.

use perf_core::clock::{AnyClock, Clock, FastClock, TokioClock};

/// The clock a builder asked for.
pub(crate) fn new(tokio: bool) -> AnyClock {
    if tokio {
        AnyClock::Tokio(TokioClock::new())
    } else {
        AnyClock::Fast(FastClock::new())
    }
}

/// Milliseconds since `clock`'s epoch.
#[inline]
pub(crate) fn millis(clock: &AnyClock) -> u64 {
    clock.now_nanos() / 1_000_000
}

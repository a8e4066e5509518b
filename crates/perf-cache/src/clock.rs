//! The cache clock: nanoseconds on a monotonic clock. [`FastClock`] (the default) reads the
//! CPU's time-stamp counter through quanta, a few nanoseconds per read, which matters on a
//! path that reads the clock on every hit; [`TokioClock`] follows tokio's clock so tests
//! can pause and advance it.

use std::fmt;

/// A monotonic clock in nanoseconds since an arbitrary epoch of its own.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Nanoseconds since this clock's epoch.
    fn now_nanos(&self) -> u64;
}

/// The CPU's time-stamp counter through quanta, calibrated against the OS clock.
#[derive(Clone)]
pub struct FastClock {
    clock: quanta::Clock,
    epoch: u64,
}

impl FastClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let epoch = clock.raw();
        FastClock { clock, epoch }
    }
}

impl Default for FastClock {
    fn default() -> Self {
        FastClock::new()
    }
}

impl Clock for FastClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.epoch, self.clock.raw())
    }
}

impl fmt::Debug for FastClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastClock").finish_non_exhaustive()
    }
}

/// tokio's clock: pauses and advances with `tokio::time::pause` and `advance` in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        TokioClock {
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        u64::try_from(
            tokio::time::Instant::now()
                .saturating_duration_since(self.epoch)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }
}

/// One of the two clocks, chosen at run time: for types that should not carry a clock type
/// parameter (the response-cache layer) yet must be testable on tokio's paused clock.
#[derive(Debug, Clone)]
pub enum AnyClock {
    /// [`FastClock`].
    Fast(FastClock),
    /// [`TokioClock`].
    Tokio(TokioClock),
}

impl Clock for AnyClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        match self {
            AnyClock::Fast(clock) => clock.now_nanos(),
            AnyClock::Tokio(clock) => clock.now_nanos(),
        }
    }
}

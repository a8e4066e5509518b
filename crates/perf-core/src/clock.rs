//! The clocks of the time-based layers and caches: nanoseconds on a monotonic clock.
//! [`FastClock`] (the default) reads the CPU's time-stamp counter through quanta, 2.6× faster
//! than `std::time::Instant` on the project's machine (`cargo bench -p pocwhisp-benches
//! --bench clock`), which matters on paths that read the clock on every request or hit; [`TokioClock`] follows tokio's clock so tests
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_the_paused_clock() {
        let clock = TokioClock::new();
        assert_eq!(clock.now_nanos(), 0);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now_nanos(), 1_500_000_000);
        assert_eq!(AnyClock::Tokio(clock).now_nanos(), 1_500_000_000);
    }

    #[test]
    fn the_fast_clock_moves_forward_in_step_with_the_os_clock() {
        let clock = FastClock::new();
        let started = std::time::Instant::now();
        let first = clock.now_nanos();
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.now_nanos() - first;
        let os = started.elapsed().as_nanos() as u64;
        assert!(elapsed >= 19_000_000, "{elapsed}");
        assert!(elapsed <= os + 2_000_000, "{elapsed} vs {os}");
    }
}

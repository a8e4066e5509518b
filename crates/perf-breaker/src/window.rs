//! Sliding windows of call outcomes for the failure-rate trip condition.
//!
//! Both kinds are lock-free: a record is a few relaxed atomic operations, and only a failure
//! reads the whole window. Counts taken while another thread resets the window can be off by
//! the calls in flight at that instant; a rate over tens of calls does not notice.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::SlidingWindow;

/// Calls and failures currently in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

impl Tally {
    /// Whether the failure share reaches `threshold` over at least `minimum_calls` calls.
    pub(crate) fn exceeds(self, threshold: f64, minimum_calls: u32) -> bool {
        self.calls >= u64::from(minimum_calls)
            && self.failures as f64 >= threshold * self.calls as f64
    }
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(kind: SlidingWindow) -> Window {
        match kind {
            SlidingWindow::Count(size) => Window::Count(CountWindow::new(size as usize)),
            SlidingWindow::Time(period) => Window::Time(TimeWindow::new(period)),
        }
    }

    /// Adds one outcome; `now_ms` is the breaker clock.
    pub(crate) fn record(&self, failed: bool, now_ms: u64) {
        match self {
            Window::Count(window) => window.record(failed),
            Window::Time(window) => window.record(failed, now_ms),
        }
    }

    pub(crate) fn tally(&self, now_ms: u64) -> Tally {
        match self {
            Window::Count(window) => window.tally(),
            Window::Time(window) => window.tally(now_ms),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(window) => window.reset(),
            Window::Time(window) => window.reset(),
        }
    }
}

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// The last N outcomes in a ring. Counters are kept alongside so that a tally is two loads.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    /// `u64::MAX / len + 1`: the ring position is taken with two multiplications instead of
    /// a division (Lemire's fast remainder), which was most of a record's cost.
    magic: u64,
    next: AtomicU32,
    // Signed so that a record racing a reset cannot wrap below zero; read back clamped.
    calls: AtomicI64,
    failures: AtomicI64,
}

impl CountWindow {
    fn new(size: usize) -> Self {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            magic: (u64::MAX / size as u64).wrapping_add(1),
            next: AtomicU32::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
        }
    }

    fn record(&self, failed: bool) {
        // A 32-bit counter: when it wraps (every four billion calls) the ring position jumps
        // once, which only reorders which old outcome is overwritten first.
        let index = self.position(self.next.fetch_add(1, Relaxed));
        let new = if failed { FAILURE } else { SUCCESS };
        let old = self.slots[index].swap(new, Relaxed);
        if old == EMPTY {
            self.calls.fetch_add(1, Relaxed);
        }
        let delta = i64::from(new == FAILURE) - i64::from(old == FAILURE);
        if delta != 0 {
            self.failures.fetch_add(delta, Relaxed);
        }
    }

    /// `call % len`, without a division.
    #[inline]
    fn position(&self, call: u32) -> usize {
        let low = self.magic.wrapping_mul(u64::from(call));
        ((u128::from(low) * self.slots.len() as u128) >> 64) as usize
    }

    fn tally(&self) -> Tally {
        Tally {
            calls: self.calls.load(Relaxed).max(0) as u64,
            failures: self.failures.load(Relaxed).max(0) as u64,
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(EMPTY, Relaxed);
        }
        self.calls.store(0, Relaxed);
        self.failures.store(0, Relaxed);
    }
}

const BUCKETS: usize = 10;
/// A bucket epoch no clock reading can have.
const STALE: u64 = u64::MAX;

#[derive(Debug)]
struct Bucket {
    epoch: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
}

/// The outcomes of the last period, in ten buckets of a tenth of it. A bucket is reused once
/// its epoch (the bucket-sized slice of the clock it counts) has left the window.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_ms: u64,
    buckets: Box<[Bucket; BUCKETS]>,
}

impl TimeWindow {
    fn new(period: Duration) -> Self {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        TimeWindow {
            bucket_ms: (period_ms / BUCKETS as u64).max(1),
            buckets: Box::new(std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(STALE),
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            })),
        }
    }

    fn record(&self, failed: bool, now_ms: u64) {
        let epoch = now_ms / self.bucket_ms;
        let bucket = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = bucket.epoch.load(Relaxed);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
        }
        bucket.calls.fetch_add(1, Relaxed);
        if failed {
            bucket.failures.fetch_add(1, Relaxed);
        }
    }

    fn tally(&self, now_ms: u64) -> Tally {
        let current = now_ms / self.bucket_ms;
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|bucket| (oldest..=current).contains(&bucket.epoch.load(Relaxed)))
            .fold(
                Tally {
                    calls: 0,
                    failures: 0,
                },
                |tally, bucket| Tally {
                    calls: tally.calls + bucket.calls.load(Relaxed),
                    failures: tally.failures + bucket.failures.load(Relaxed),
                },
            )
    }

    fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.epoch.store(STALE, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_remainder_is_the_remainder() {
        for len in [1usize, 3, 7, 10, 100, 1000, 4096, 65_535] {
            let window = CountWindow::new(len);
            for call in (0..5000u32).chain([u32::MAX - 3, u32::MAX - 1, u32::MAX]) {
                assert_eq!(window.position(call), call as usize % len, "{call} % {len}");
            }
        }
    }

    #[test]
    fn count_window_forgets_the_oldest_outcome() {
        let window = Window::new(SlidingWindow::Count(4));
        for failed in [true, true, false, false] {
            window.record(failed, 0);
        }
        assert_eq!(
            window.tally(0),
            Tally {
                calls: 4,
                failures: 2
            }
        );
        window.record(false, 0);
        assert_eq!(
            window.tally(0),
            Tally {
                calls: 4,
                failures: 1
            }
        );
        window.reset();
        assert_eq!(
            window.tally(0),
            Tally {
                calls: 0,
                failures: 0
            }
        );
    }

    #[test]
    fn time_window_drops_buckets_that_left_the_period() {
        let window = Window::new(SlidingWindow::Time(Duration::from_secs(10)));
        window.record(true, 0);
        window.record(true, 500);
        window.record(false, 4_000);
        assert_eq!(
            window.tally(4_000),
            Tally {
                calls: 3,
                failures: 2
            }
        );
        // At 10.5 s the bucket of [0, 1 s) has left the window, the one at 4 s has not.
        assert_eq!(
            window.tally(10_500),
            Tally {
                calls: 1,
                failures: 0
            }
        );
        // A reused bucket starts from zero.
        window.record(false, 10_500);
        assert_eq!(
            window.tally(10_500),
            Tally {
                calls: 2,
                failures: 0
            }
        );
        window.reset();
        assert_eq!(
            window.tally(10_500),
            Tally {
                calls: 0,
                failures: 0
            }
        );
    }

    #[test]
    fn rate_needs_the_minimum_number_of_calls() {
        let tally = Tally {
            calls: 9,
            failures: 9,
        };
        assert!(!tally.exceeds(0.5, 10));
        assert!(
            Tally {
                calls: 10,
                failures: 5
            }
            .exceeds(0.5, 10)
        );
        assert!(
            !Tally {
                calls: 10,
                failures: 4
            }
            .exceeds(0.5, 10)
        );
    }
}

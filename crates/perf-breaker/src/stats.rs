//! Call counters, striped across cache lines so that threads calling through one breaker do
//! not fight over a single atomic, and the [`Stats`] snapshot read from them.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::state::State;

/// A snapshot of one breaker's counters, taken by
/// [`CircuitBreaker::stats`](crate::CircuitBreaker::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The state when the snapshot was taken.
    pub state: State,
    /// Calls admitted: successes, failures and calls cancelled before they finished.
    pub calls: u64,
    /// Calls that finished successfully, slow ones included.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Successful calls slower than `slow_call_threshold`; the breaker counted each as a
    /// failure.
    pub slow_calls: u64,
    /// Calls dropped before they finished (their future was cancelled).
    pub cancelled: u64,
    /// Calls rejected without running.
    pub rejections: u64,
    /// State transitions since the breaker was built.
    pub transitions: u64,
    /// How long the breaker has been in its current state.
    pub time_in_state: Duration,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// Trips since the circuit last closed; the open period grows with it.
    pub consecutive_trips: u32,
}

/// One stripe of counters, alone on its cache lines (128 bytes covers the adjacent-line
/// prefetcher of current x86 parts).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    successes: AtomicU64,
    failures: AtomicU64,
    slow_calls: AtomicU64,
    cancelled: AtomicU64,
    rejections: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
}

/// The counters' fields, summed over stripes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) slow_calls: u64,
    pub(crate) cancelled: u64,
    pub(crate) rejections: u64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: (0..stripe_count()).map(|_| Stripe::default()).collect(),
        }
    }

    #[inline]
    fn stripe(&self) -> &Stripe {
        // The stripe count is a power of two.
        &self.stripes[thread_slot() & (self.stripes.len() - 1)]
    }

    #[inline]
    pub(crate) fn success(&self, slow: bool) {
        let stripe = self.stripe();
        stripe.successes.fetch_add(1, Relaxed);
        if slow {
            stripe.slow_calls.fetch_add(1, Relaxed);
        }
    }

    #[inline]
    pub(crate) fn failure(&self) {
        self.stripe().failures.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn cancelled(&self) {
        self.stripe().cancelled.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn rejection(&self) {
        self.stripe().rejections.fetch_add(1, Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        self.stripes
            .iter()
            .fold(Totals::default(), |sum, stripe| Totals {
                successes: sum.successes + stripe.successes.load(Relaxed),
                failures: sum.failures + stripe.failures.load(Relaxed),
                slow_calls: sum.slow_calls + stripe.slow_calls.load(Relaxed),
                cancelled: sum.cancelled + stripe.cancelled.load(Relaxed),
                rejections: sum.rejections + stripe.rejections.load(Relaxed),
            })
    }
}

/// One stripe per core, rounded up to a power of two, at most 16: enough that two threads
/// rarely share a stripe without making a breaker (and a map of keyed ones) large.
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(4, |cores| cores.get())
            .next_power_of_two()
            .min(16)
    })
}

/// A small number fixed per thread, handed out round-robin so that threads spread over the
/// stripes. A const-initialised thread local with a sentinel avoids the lazy-init check of a
/// non-const one on every call.
#[inline]
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| {
        let mut value = slot.get();
        if value == usize::MAX {
            value = NEXT.fetch_add(1, Relaxed) & (usize::MAX >> 1);
            slot.set(value);
        }
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_across_threads() {
        let counters = Counters::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        counters.success(i % 10 == 0);
                        counters.failure();
                    }
                    counters.rejection();
                    counters.cancelled();
                });
            }
        });
        assert_eq!(
            counters.totals(),
            Totals {
                successes: 4000,
                failures: 4000,
                slow_calls: 400,
                cancelled: 4,
                rejections: 4,
            }
        );
    }
}

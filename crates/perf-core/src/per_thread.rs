//! Per-thread state without locked instructions: a number for each thread, and counters that
//! each thread bumps in a slot of its own.
//!
//! Hot paths that count every call (a cache hit, a pool checkout) would otherwise make every
//! thread write one cache line with an atomic add (~20 cycles, and contention). Each of the
//! first [`OWNED_SLOTS`] threads of the process gets a slot of its own in every
//! [`ThreadCounter`], and only that thread ever writes it, so an increment is a plain load
//! and store: exact, and a few cycles. Threads beyond those (a process that keeps creating
//! threads) share the last slot with atomic adds. A reader sums the slots; a thread's
//! increment is visible to it as soon as the store lands.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Threads with a counter slot of their own.
pub const OWNED_SLOTS: usize = 64;

/// This thread's number: 0 for the first thread that asks, 1 for the next, and so on. Read
/// from a thread-local after the first call. Stripe a structure by it (`number % stripes`)
/// to give threads their own part.
#[inline]
pub fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    NUMBER.with(|number| {
        let mut value = number.get();
        if value == usize::MAX {
            // Never usize::MAX itself, which marks "not yet numbered".
            value = NEXT.fetch_add(1, Relaxed) & (usize::MAX >> 1);
            number.set(value);
        }
        value
    })
}

/// One counter, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// A counter each thread increments in a slot of its own; see the [module docs](self).
#[derive(Debug)]
pub struct ThreadCounter {
    /// `OWNED_SLOTS` owned slots, then the shared one.
    slots: Box<[Slot]>,
}

impl Default for ThreadCounter {
    fn default() -> Self {
        ThreadCounter::new()
    }
}

impl ThreadCounter {
    /// A counter at zero (about 8 KiB: a cache-line pair per slot).
    pub fn new() -> Self {
        ThreadCounter {
            slots: (0..=OWNED_SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds one.
    #[inline]
    pub fn increment(&self) {
        let index = thread_number();
        if index < OWNED_SLOTS {
            // Single writer: this thread is the only one that writes this slot.
            let slot = &self.slots[index].0;
            slot.store(slot.load(Relaxed) + 1, Relaxed);
        } else {
            self.slots[OWNED_SLOTS].0.fetch_add(1, Relaxed);
        }
    }

    /// The total over every thread.
    pub fn sum(&self) -> u64 {
        self.slots.iter().map(|slot| slot.0.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_across_many_threads() {
        let counter = ThreadCounter::new();
        // More threads than owned slots: the late ones share the atomic slot.
        std::thread::scope(|scope| {
            for _ in 0..(OWNED_SLOTS + 16) {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.increment();
                    }
                });
            }
        });
        assert_eq!(counter.sum(), (OWNED_SLOTS as u64 + 16) * 1000);
    }

    #[test]
    fn a_thread_keeps_its_number_and_threads_differ() {
        let mine = thread_number();
        assert_eq!(thread_number(), mine);
        let other = std::thread::spawn(thread_number).join().unwrap();
        assert_ne!(other, mine);
    }
}

//! GCRA (the generic cell rate algorithm): a token bucket kept as one number per key, the
//! theoretical arrival time (TAT) of the next request, updated with one compare-and-swap.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::time::Duration;

use super::Quota;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset: Duration,
    retry_after: Duration,
}

impl Decision {
    /// An admitted request that left the key's TAT `ahead_ns` past now.
    pub(crate) fn allowed(quota: &Quota, ahead_ns: u64) -> Self {
        Decision {
            allowed: true,
            limit: quota.burst,
            remaining: u32::try_from(
                quota.tolerance_ns().saturating_sub(ahead_ns) / quota.interval_ns,
            )
            .unwrap_or(u32::MAX),
            reset: Duration::from_nanos(ahead_ns),
            retry_after: Duration::ZERO,
        }
    }

    /// A refused request: the bucket is full again in `reset_ns`, one request fits in
    /// `retry_ns`.
    pub(crate) fn refused(quota: &Quota, reset_ns: u64, retry_ns: u64) -> Self {
        Decision {
            allowed: false,
            limit: quota.burst,
            remaining: 0,
            reset: Duration::from_nanos(reset_ns),
            retry_after: Duration::from_nanos(retry_ns),
        }
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The burst size: the `RateLimit-Limit` header.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests that could still be made right now: `RateLimit-Remaining`.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the bucket is full again: `RateLimit-Reset`.
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// For a rejected request, how long until one would be allowed: `Retry-After`. Zero for
    /// an allowed one.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Takes one token from the bucket whose TAT is `tat`, at the time `clock` reads (in
/// nanoseconds).
///
/// The clock is read after the TAT, and again whenever another request changed the TAT
/// first: a time read before the TAT it is compared with may be older than the time of the
/// request that set it (this thread was descheduled in between), which would make a client
/// well within its quota look a whole scheduling delay ahead of it, and be refused.
#[inline]
pub(crate) fn check(tat: &AtomicU64, quota: &Quota, clock: impl Fn() -> u64) -> Decision {
    let tolerance = quota.tolerance_ns();
    // Acquire pairs with the exchange's release: the time of the request that set the TAT
    // was read before this thread's.
    let mut current = tat.load(Acquire);
    loop {
        let now = clock();
        let start = current.max(now);
        let next = start.saturating_add(quota.interval_ns);
        let ahead = next - now;
        if ahead > tolerance {
            return Decision::refused(quota, start - now, ahead - tolerance);
        }
        match tat.compare_exchange_weak(current, next, AcqRel, Acquire) {
            Ok(_) => return Decision::allowed(quota, ahead),
            Err(actual) => current = actual,
        }
    }
}

/// Whether a bucket with this TAT is full at `now`, so its state equals a fresh key's and it
/// can be forgotten without changing any answer.
#[inline]
pub(crate) fn is_replenished(tat: u64, now: u64) -> bool {
    tat <= now
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let quota = Quota::per_second(10).burst(3);
        let tat = AtomicU64::new(0);
        let now = 5 * SECOND;
        let remaining: Vec<u32> = (0..3)
            .map(|_| check(&tat, &quota, || now).remaining())
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let rejected = check(&tat, &quota, || now);
        assert!(!rejected.is_allowed());
        assert_eq!(rejected.retry_after(), Duration::from_millis(100));
        assert_eq!(rejected.reset(), Duration::from_millis(300));
        // 100 ms later exactly one more token is there.
        assert!(check(&tat, &quota, || now + SECOND / 10).is_allowed());
        assert!(!check(&tat, &quota, || now + SECOND / 10).is_allowed());
    }

    #[test]
    fn a_long_pause_refills_no_more_than_the_burst() {
        let quota = Quota::per_second(1).burst(2);
        let tat = AtomicU64::new(0);
        let now = 3600 * SECOND;
        assert!(check(&tat, &quota, || now).is_allowed());
        assert!(check(&tat, &quota, || now).is_allowed());
        assert!(!check(&tat, &quota, || now).is_allowed());
        assert!(is_replenished(tat.load(Relaxed), now + 2 * SECOND));
        assert!(!is_replenished(tat.load(Relaxed), now + SECOND));
    }

    #[test]
    fn a_request_delayed_after_reading_the_clock_is_judged_at_the_time_it_takes_its_token() {
        // 1 000 per second with a burst of 4: a tolerance of 4 ms. Between this request's
        // first clock reading and its exchange, another request (the clock's own, standing
        // for a thread that ran while this one was descheduled) takes a token 10 ms later.
        // Judged at its first reading, this request would look 10 ms ahead of its quota
        // and be refused; it is judged again at a fresh reading, and admitted.
        let quota = Quota::per_second(1000).burst(4);
        let tat = AtomicU64::new(0);
        let start = 5 * SECOND;
        let later = start + 10 * SECOND / 1000;
        let readings = std::cell::Cell::new(0);
        let decision = check(&tat, &quota, || {
            readings.set(readings.get() + 1);
            if readings.get() == 1 {
                assert!(check(&tat, &quota, || later).is_allowed());
                start
            } else {
                later
            }
        });
        assert!(decision.is_allowed(), "{decision:?}");
        assert_eq!(
            decision.remaining(),
            2,
            "two tokens taken at the later time"
        );
        assert_eq!(readings.get(), 2);
    }
}

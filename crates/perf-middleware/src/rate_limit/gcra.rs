//! GCRA (the generic cell rate algorithm): a token bucket kept as one number per key, the
//! theoretical arrival time (TAT) of the next request, updated with one compare-and-swap.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// Takes one token from the bucket whose TAT is `tat`, at time `now` (nanoseconds).
#[inline]
pub(crate) fn check(tat: &AtomicU64, quota: &Quota, now: u64) -> Decision {
    let tolerance = quota.tolerance_ns();
    let mut current = tat.load(Relaxed);
    loop {
        let start = current.max(now);
        let next = start.saturating_add(quota.interval_ns);
        let ahead = next - now;
        if ahead > tolerance {
            return Decision::refused(quota, start - now, ahead - tolerance);
        }
        match tat.compare_exchange_weak(current, next, Relaxed, Relaxed) {
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
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let quota = Quota::per_second(10).burst(3);
        let tat = AtomicU64::new(0);
        let now = 5 * SECOND;
        let remaining: Vec<u32> = (0..3)
            .map(|_| check(&tat, &quota, now).remaining())
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let rejected = check(&tat, &quota, now);
        assert!(!rejected.is_allowed());
        assert_eq!(rejected.retry_after(), Duration::from_millis(100));
        assert_eq!(rejected.reset(), Duration::from_millis(300));
        // 100 ms later exactly one more token is there.
        assert!(check(&tat, &quota, now + SECOND / 10).is_allowed());
        assert!(!check(&tat, &quota, now + SECOND / 10).is_allowed());
    }

    #[test]
    fn a_long_pause_refills_no_more_than_the_burst() {
        let quota = Quota::per_second(1).burst(2);
        let tat = AtomicU64::new(0);
        let now = 3600 * SECOND;
        assert!(check(&tat, &quota, now).is_allowed());
        assert!(check(&tat, &quota, now).is_allowed());
        assert!(!check(&tat, &quota, now).is_allowed());
        assert!(is_replenished(tat.load(Relaxed), now + 2 * SECOND));
        assert!(!is_replenished(tat.load(Relaxed), now + SECOND));
    }
}

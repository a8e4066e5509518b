use std::fmt;
use std::time::Duration;

use crate::BuildError;

/// How many requests a key may make: `count` per `period`, with bursts of up to `burst`.
///
/// Under GCRA this is a token bucket holding `burst` tokens, refilled by one token every
/// `period / count`. The default (100 requests a second, bursts of 200) is
/// `Quota::per_second(100).burst(200)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Nanoseconds between two tokens.
    pub(crate) interval_ns: u64,
    pub(crate) burst: u32,
}

impl Quota {
    /// `count` requests per `period`, burst `count`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero count, or a period that is zero or makes the interval
    /// between tokens shorter than a nanosecond.
    pub fn new(count: u32, period: Duration) -> Result<Self, BuildError> {
        if count == 0 {
            return Err(BuildError::new("quota", "count must be at least 1"));
        }
        let interval_ns = u64::try_from(period.as_nanos() / u128::from(count)).unwrap_or(u64::MAX);
        if interval_ns == 0 {
            return Err(BuildError::new(
                "quota",
                "period / count must be at least 1ns",
            ));
        }
        Ok(Quota {
            interval_ns,
            burst: count,
        })
    }

    /// `count` requests a second (at least 1), burst `count`.
    pub fn per_second(count: u32) -> Self {
        Self::from_interval(1_000_000_000, count)
    }

    /// `count` requests a minute (at least 1), burst `count`.
    pub fn per_minute(count: u32) -> Self {
        Self::from_interval(60_000_000_000, count)
    }

    /// `count` requests an hour (at least 1), burst `count`: the original's presets were
    /// 1000/h per API client and 50/h per transcribing user.
    pub fn per_hour(count: u32) -> Self {
        Self::from_interval(3_600_000_000_000, count)
    }

    fn from_interval(period_ns: u64, count: u32) -> Self {
        let count = count.max(1);
        Quota {
            interval_ns: (period_ns / u64::from(count)).max(1),
            burst: count,
        }
    }

    /// Allows bursts of up to `burst` requests (at least 1) at once.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// The most requests admitted at once.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The time between two tokens.
    pub fn replenish_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// This quota shared out among `instances` processes that cannot coordinate (a shared
    /// store that is down): each gets `1/instances` of the rate and of the burst (at least one
    /// request), so together they admit no more than the whole quota.
    #[must_use]
    pub fn divided_among(&self, instances: u32) -> Self {
        let instances = instances.max(1);
        Quota {
            interval_ns: self.interval_ns.saturating_mul(u64::from(instances)),
            burst: (self.burst / instances).max(1),
        }
    }

    /// How far ahead of now a key's theoretical arrival time may run: the whole bucket.
    pub(crate) fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(u64::from(self.burst))
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("replenish_interval", &self.replenish_interval())
            .field("burst", &self.burst)
            .finish()
    }
}

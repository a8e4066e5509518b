//! AIMD on latency: the limit grows by one for every `limit` requests that finish near the
//! no-load latency, and shrinks by a tenth when one takes well over it.
//!
//! The no-load latency is not configured but observed: the smallest latency of the current
//! and the previous window of samples, so it follows a service that gets slower or faster
//! over time instead of clinging to one lucky early sample.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Settings of the adaptive limit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AdaptiveConfig {
    /// The limit before any sample.
    pub initial_limit: u32,
    /// The limit never goes below this.
    pub min_limit: u32,
    /// Nor above this.
    pub max_limit: u32,
    /// A request slower than `tolerance` × the no-load latency signals overload.
    pub tolerance: f64,
    /// The factor applied to the limit on overload.
    pub backoff: f64,
    /// Samples per window of the no-load latency.
    pub window: u32,
    /// At most one decrease per this long, so that one burst of slow requests (all
    /// admitted under the old limit) does not collapse the limit.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub decrease_interval: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            tolerance: 2.0,
            backoff: 0.9,
            window: 500,
            decrease_interval: Duration::from_millis(50),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Aimd {
    config: AdaptiveConfig,
    /// Good completions since the last increase.
    good: AtomicU32,
    samples: AtomicU64,
    window_min_ns: AtomicU64,
    previous_min_ns: AtomicU64,
    last_decrease_ns: AtomicU64,
}

impl Aimd {
    pub(crate) fn new(config: AdaptiveConfig) -> Self {
        Aimd {
            config,
            good: AtomicU32::new(0),
            samples: AtomicU64::new(0),
            window_min_ns: AtomicU64::new(u64::MAX),
            previous_min_ns: AtomicU64::new(u64::MAX),
            last_decrease_ns: AtomicU64::new(0),
        }
    }

    /// The no-load latency estimate, if any sample was seen.
    pub(crate) fn baseline_ns(&self) -> Option<u64> {
        let baseline = self
            .window_min_ns
            .load(Relaxed)
            .min(self.previous_min_ns.load(Relaxed));
        (baseline != u64::MAX).then_some(baseline)
    }

    /// Feeds one completed request; returns the new limit when it changes.
    pub(crate) fn observe(&self, latency_ns: u64, now_ns: u64, limit: &AtomicU32) {
        let latency_ns = latency_ns.max(1);
        self.window_min_ns.fetch_min(latency_ns, Relaxed);
        if self
            .samples
            .fetch_add(1, Relaxed)
            .is_multiple_of(u64::from(self.config.window.max(1)))
        {
            let finished = self.window_min_ns.swap(latency_ns, Relaxed);
            self.previous_min_ns.store(finished, Relaxed);
        }
        let baseline = self.baseline_ns().unwrap_or(latency_ns);
        let current = limit.load(Relaxed);
        if latency_ns as f64 > baseline as f64 * self.config.tolerance {
            let last = self.last_decrease_ns.load(Relaxed);
            let interval =
                u64::try_from(self.config.decrease_interval.as_nanos()).unwrap_or(u64::MAX);
            if now_ns.saturating_sub(last) >= interval
                && self
                    .last_decrease_ns
                    .compare_exchange(last, now_ns, Relaxed, Relaxed)
                    .is_ok()
            {
                let lowered =
                    ((f64::from(current) * self.config.backoff) as u32).max(self.config.min_limit);
                limit.store(lowered, Relaxed);
                self.good.store(0, Relaxed);
            }
        } else if self.good.fetch_add(1, Relaxed) + 1 >= current {
            self.good.store(0, Relaxed);
            let _ = limit.compare_exchange(
                current,
                (current + 1).min(self.config.max_limit),
                Relaxed,
                Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn fast_samples_grow_the_limit_additively() {
        let aimd = Aimd::new(AdaptiveConfig::default());
        let limit = AtomicU32::new(4);
        // 4 + 5 + 6 good samples: three increases.
        for i in 0..15 {
            aimd.observe(10 * MS, i * MS, &limit);
        }
        assert_eq!(limit.load(Relaxed), 7);
    }

    #[test]
    fn slow_samples_shrink_it_once_per_interval() {
        let aimd = Aimd::new(AdaptiveConfig::default());
        let limit = AtomicU32::new(100);
        aimd.observe(10 * MS, 0, &limit);
        // A burst of slow completions at one instant: one decrease only.
        for _ in 0..10 {
            aimd.observe(50 * MS, 100 * MS, &limit);
        }
        assert_eq!(limit.load(Relaxed), 90);
        aimd.observe(50 * MS, 200 * MS, &limit);
        assert_eq!(limit.load(Relaxed), 81);
    }

    #[test]
    fn the_limit_stays_within_its_bounds() {
        let config = AdaptiveConfig {
            min_limit: 5,
            max_limit: 6,
            ..AdaptiveConfig::default()
        };
        let aimd = Aimd::new(config);
        let limit = AtomicU32::new(5);
        for i in 0..100 {
            aimd.observe(MS, i, &limit);
        }
        assert_eq!(limit.load(Relaxed), 6);
        for i in 0..100 {
            aimd.observe(1000 * MS, (i + 1) * 1000 * MS, &limit);
        }
        assert_eq!(limit.load(Relaxed), 5);
    }
}

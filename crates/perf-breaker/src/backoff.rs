//! How long the circuit stays open on its n-th trip in a row.

use std::time::Duration;

use crate::config::Config;

/// The open period of trip number `trip` (1 for the first trip after the circuit was closed).
///
/// The first trip opens for exactly `open_duration`, so a configured "30 s" means 30 s. Each
/// further trip in a row (a probe failed) multiplies it by `backoff_multiplier`, spreads it by
/// ±`jitter` so that instances that tripped together probe at different moments, and caps it
/// at `max_open_duration`.
pub(crate) fn open_period(config: &Config, trip: u32) -> Duration {
    if trip <= 1 {
        return config.open_duration;
    }
    let cap = config.max_open_duration.as_secs_f64();
    let grown = config.open_duration.as_secs_f64()
        * config
            .backoff_multiplier
            .powi(i32::try_from(trip - 1).unwrap_or(i32::MAX));
    let spread = 1.0 + config.jitter * (2.0 * fastrand::f64() - 1.0);
    Duration::from_secs_f64((grown.min(cap) * spread).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jitter: f64) -> Config {
        Config {
            open_duration: Duration::from_secs(10),
            max_open_duration: Duration::from_secs(60),
            backoff_multiplier: 2.0,
            jitter,
            ..Config::default()
        }
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let config = config(0.0);
        let periods: Vec<u64> = (1..=5)
            .map(|trip| open_period(&config, trip).as_secs())
            .collect();
        assert_eq!(periods, [10, 20, 40, 60, 60]);
        assert_eq!(open_period(&config, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spreads_repeated_trips_within_bounds() {
        let config = config(0.25);
        assert_eq!(open_period(&config, 1), Duration::from_secs(10));
        let periods: Vec<f64> = (0..200)
            .map(|_| open_period(&config, 2).as_secs_f64())
            .collect();
        assert!(
            periods.iter().all(|p| (15.0..=25.0).contains(p)),
            "{periods:?}"
        );
        let distinct = periods
            .iter()
            .map(|p| (p * 1000.0) as u64)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 100, "jitter should spread periods");
        // At the cap, jitter can only shorten the period.
        assert!((0..200).all(|_| open_period(&config, 10) <= Duration::from_secs(60)));
    }
}

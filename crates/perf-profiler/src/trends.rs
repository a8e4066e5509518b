//! Trends over a series of samples: least-squares slope, EWMA, and a change-point check.

use std::time::SystemTime;

use serde::Serialize;

use crate::snapshot::{Snapshot, names};

/// A figure's trend over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// The figure.
    pub metric: String,
    /// Samples used.
    pub samples: usize,
    /// Mean of the samples.
    pub mean: f64,
    /// Least-squares slope, in units per hour.
    pub slope_per_hour: f64,
    /// Exponentially weighted moving average (α = 0.3), the smoothed latest value.
    pub ewma: f64,
    /// Whether the last third of the series departs from the rest by more than three
    /// standard deviations of the rest.
    pub changed: bool,
    /// The samples, as (seconds since the first, value).
    pub points: Vec<(f64, f64)>,
}

/// The smoothing factor of the EWMA.
const ALPHA: f64 = 0.3;

/// The trend of `metric` across `snapshots` (in time order); `None` with fewer than two
/// samples of it.
pub fn trend(metric: &str, snapshots: &[Snapshot]) -> Option<Trend> {
    let first = snapshots.first()?.taken_at;
    let points: Vec<(f64, f64)> = snapshots
        .iter()
        .filter_map(|s| Some((seconds_between(first, s.taken_at), s.get(metric)?)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|(t, v)| (t - mean_t) * (v - mean)).sum();
    let variance_t: f64 = points.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    let slope = if variance_t > 0.0 {
        covariance / variance_t
    } else {
        0.0
    };
    let ewma = points
        .iter()
        .skip(1)
        .fold(points[0].1, |average, (_, value)| {
            ALPHA * value + (1.0 - ALPHA) * average
        });
    Some(Trend {
        metric: metric.to_owned(),
        samples: points.len(),
        mean,
        slope_per_hour: slope * 3600.0,
        ewma,
        changed: changed(&points),
        points,
    })
}

/// Compares the last third with the first two thirds; needs six samples.
fn changed(points: &[(f64, f64)]) -> bool {
    if points.len() < 6 {
        return false;
    }
    let split = points.len() * 2 / 3;
    let (before, after) = points.split_at(split);
    let mean = |part: &[(f64, f64)]| part.iter().map(|p| p.1).sum::<f64>() / part.len() as f64;
    let (mean_before, mean_after) = (mean(before), mean(after));
    let deviation = (before
        .iter()
        .map(|p| (p.1 - mean_before).powi(2))
        .sum::<f64>()
        / before.len() as f64)
        .sqrt();
    // A flat history makes any move a change; a tiny floor keeps noise from counting.
    let floor = mean_before.abs() * 0.01 + f64::EPSILON;
    (mean_after - mean_before).abs() > 3.0 * deviation.max(floor)
}

fn seconds_between(first: SystemTime, then: SystemTime) -> f64 {
    then.duration_since(first).unwrap_or_default().as_secs_f64()
}

/// Plain-language flags for the trends that matter, by fixed rules:
///
/// - resident memory growing faster than 10 MB an hour (a leak, or a cache without a cap);
/// - P95 latency rising by more than 10 % of its mean an hour;
/// - the error rate rising by more than a percentage point an hour;
/// - the cache hit rate falling by more than five points an hour;
/// - any of them changing abruptly (the change-point check).
pub fn flags(snapshots: &[Snapshot]) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(t) = trend(names::RESIDENT_BYTES, snapshots) {
        let mb_per_hour = t.slope_per_hour / 1e6;
        if mb_per_hour > 10.0 {
            flags.push(format!("resident memory growing {mb_per_hour:.0} MB/h"));
        }
    }
    if let Some(t) = trend(names::LATENCY_P95_MS, snapshots)
        && t.slope_per_hour > 0.1 * t.mean.abs()
        && t.slope_per_hour > 0.0
    {
        flags.push(format!("p95 rising {:.1} ms/h", t.slope_per_hour));
    }
    if let Some(t) = trend(names::ERROR_RATE, snapshots)
        && t.slope_per_hour > 0.01
    {
        flags.push(format!(
            "error rate rising {:.1} points/h",
            t.slope_per_hour * 100.0
        ));
    }
    if let Some(t) = trend(names::CACHE_HIT_RATE, snapshots)
        && t.slope_per_hour < -0.05
    {
        flags.push(format!(
            "cache hit rate falling {:.1} points/h",
            -t.slope_per_hour * 100.0
        ));
    }
    for metric in [
        names::RESIDENT_BYTES,
        names::LATENCY_P95_MS,
        names::ERROR_RATE,
        names::CPU_USAGE_PERCENT,
    ] {
        if trend(metric, snapshots).is_some_and(|t| t.changed) {
            flags.push(format!("{metric} changed abruptly"));
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// A series of `metric`, one sample every `step` seconds.
    fn series(metric: &str, step: u64, values: &[f64]) -> Vec<Snapshot> {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let mut snapshot =
                    Snapshot::at(UNIX_EPOCH + Duration::from_secs(1_000 + step * i as u64));
                snapshot.set(metric, *value);
                snapshot
            })
            .collect()
    }

    #[test]
    fn the_slope_of_a_line_is_its_rate_per_hour() {
        // 2 units a minute: 120 an hour, mean at the middle.
        let values: Vec<f64> = (0..10).map(|i| 5.0 + 2.0 * i as f64).collect();
        let t = trend("x", &series("x", 60, &values)).unwrap();
        assert!(
            (t.slope_per_hour - 120.0).abs() < 1e-9,
            "{}",
            t.slope_per_hour
        );
        assert!((t.mean - 14.0).abs() < 1e-9);
        assert_eq!(t.samples, 10);
        assert_eq!(t.points[3], (180.0, 11.0));
        let flat = trend("x", &series("x", 60, &[3.0; 5])).unwrap();
        assert_eq!(flat.slope_per_hour, 0.0);
    }

    #[test]
    fn the_ewma_weights_the_latest_samples() {
        let t = trend("x", &series("x", 1, &[10.0, 20.0, 20.0])).unwrap();
        // 10 -> 0.3*20 + 0.7*10 = 13 -> 0.3*20 + 0.7*13 = 15.1
        assert!((t.ewma - 15.1).abs() < 1e-9, "{}", t.ewma);
    }

    #[test]
    fn a_step_is_a_change_point_and_noise_is_not() {
        let step = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 30.0, 30.1, 29.9];
        assert!(trend("x", &series("x", 30, &step)).unwrap().changed);
        let noise = [10.0, 10.4, 9.7, 10.2, 9.9, 10.3, 9.8, 10.1, 10.0];
        assert!(!trend("x", &series("x", 30, &noise)).unwrap().changed);
        let short = [1.0, 1.0, 50.0, 50.0, 50.0];
        assert!(
            !trend("x", &series("x", 30, &short)).unwrap().changed,
            "needs six"
        );
    }

    #[test]
    fn too_few_samples_give_no_trend() {
        assert!(trend("x", &series("x", 1, &[1.0])).is_none());
        assert!(trend("y", &series("x", 1, &[1.0, 2.0])).is_none());
        assert!(trend("x", &[]).is_none());
    }

    #[test]
    fn each_flag_fires_on_its_rule_and_not_below_it() {
        // 20 MB an hour of growth over an hour of minute samples.
        let leak: Vec<f64> = (0..61).map(|i| 1e8 + 20e6 * i as f64 / 60.0).collect();
        assert!(
            flags(&series(names::RESIDENT_BYTES, 60, &leak))
                .iter()
                .any(|f| f.starts_with("resident memory growing 20 MB/h"))
        );
        let slow_growth: Vec<f64> = (0..61).map(|i| 1e8 + 5e6 * i as f64 / 60.0).collect();
        assert!(flags(&series(names::RESIDENT_BYTES, 60, &slow_growth)).is_empty());

        let rising: Vec<f64> = (0..61).map(|i| 100.0 + i as f64).collect();
        assert!(
            flags(&series(names::LATENCY_P95_MS, 60, &rising))
                .iter()
                .any(|f| f.starts_with("p95 rising"))
        );
        let errors: Vec<f64> = (0..61).map(|i| 0.02 * i as f64 / 60.0).collect();
        assert!(
            flags(&series(names::ERROR_RATE, 60, &errors))
                .iter()
                .any(|f| f.starts_with("error rate rising 2.0 points/h"))
        );
        let falling: Vec<f64> = (0..61).map(|i| 0.9 - 0.1 * i as f64 / 60.0).collect();
        assert!(
            flags(&series(names::CACHE_HIT_RATE, 60, &falling))
                .iter()
                .any(|f| f.starts_with("cache hit rate falling 10.0 points/h"))
        );
        let jump = [40.0, 41.0, 39.0, 40.0, 40.5, 39.5, 95.0, 96.0, 94.0];
        assert_eq!(
            flags(&series(names::CPU_USAGE_PERCENT, 30, &jump)),
            ["cpu_usage_percent changed abruptly"]
        );
    }
}

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

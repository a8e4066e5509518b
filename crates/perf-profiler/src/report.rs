//! Reports on a period of history: per-figure statistics, threshold breaches, trend flags
//! and recommendations, as JSON, Markdown or CSV. Every number comes from the snapshots in
//! the period.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::health::{Status, Threshold};
use crate::snapshot::{Snapshot, names};
use crate::trends;

/// One figure over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSummary {
    /// The figure.
    pub metric: String,
    /// Samples with it.
    pub samples: usize,
    /// Mean.
    pub average: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Median of the samples.
    pub p50: f64,
    /// 95th percentile of the samples.
    pub p95: f64,
    /// The newest value.
    pub last: f64,
    /// Least-squares slope, per hour.
    pub slope_per_hour: f64,
}

/// Samples past a threshold in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    /// The figure.
    pub metric: String,
    /// Samples at the warning level or worse.
    pub warning_samples: usize,
    /// Samples at the critical level.
    pub critical_samples: usize,
}

/// A report on a period of history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The period asked for, in seconds.
    pub period_seconds: u64,
    /// The oldest sample, in seconds since the Unix epoch.
    pub from_unix: u64,
    /// The newest sample, in seconds since the Unix epoch.
    pub to_unix: u64,
    /// Snapshots in the period.
    pub samples: usize,
    /// One per figure seen, by name.
    pub metrics: Vec<MetricSummary>,
    /// Figures that crossed a threshold.
    pub breaches: Vec<Breach>,
    /// Trend flags (see [`trends::flags`]).
    pub flags: Vec<String>,
    /// What to do, by the rules of [`Report::build`].
    pub recommendations: Vec<String>,
    #[serde(skip)]
    snapshots: Vec<Snapshot>,
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Report {
    /// Summarises `snapshots` (oldest first) over `period`.
    ///
    /// Recommendations follow fixed rules, each citing the figure behind it:
    ///
    /// 1. P95 latency averaging at or above 500 ms: look at the slow stages.
    /// 2. CPU averaging at or above 70 %: more cores or less concurrency.
    /// 3. Resident memory growing more than 10 MB/h: a leak or an uncapped cache.
    /// 4. Cache hit rate averaging under the 85 % target: longer TTLs or more warming.
    /// 5. Error rate averaging at or above 1 %: check breakers and logs.
    /// 6. Slow queries counted during the period: `optimize type=db` (ANALYZE), indexes.
    ///
    /// With samples and none of these, the report says no action is needed.
    pub fn build(period: Duration, snapshots: &[Snapshot], thresholds: &[Threshold]) -> Self {
        let names: BTreeSet<&String> = snapshots.iter().flat_map(|s| s.values.keys()).collect();
        let metrics: Vec<MetricSummary> = names
            .into_iter()
            .filter_map(|name| {
                let values: Vec<f64> = snapshots.iter().filter_map(|s| s.get(name)).collect();
                let last = *values.last()?;
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                Some(MetricSummary {
                    metric: name.clone(),
                    samples: values.len(),
                    average: values.iter().sum::<f64>() / values.len() as f64,
                    min: sorted[0],
                    max: sorted[sorted.len() - 1],
                    p50: percentile(&sorted, 0.50),
                    p95: percentile(&sorted, 0.95),
                    last,
                    slope_per_hour: trends::trend(name, snapshots)
                        .map_or(0.0, |t| t.slope_per_hour),
                })
            })
            .collect();
        let breaches = thresholds
            .iter()
            .filter_map(|threshold| {
                let statuses: Vec<Status> = snapshots
                    .iter()
                    .filter_map(|s| s.get(&threshold.metric))
                    .map(|v| threshold.status(v))
                    .collect();
                let warning_samples = statuses.iter().filter(|s| **s >= Status::Warning).count();
                let critical_samples = statuses.iter().filter(|s| **s == Status::Critical).count();
                (warning_samples > 0).then(|| Breach {
                    metric: threshold.metric.clone(),
                    warning_samples,
                    critical_samples,
                })
            })
            .collect();
        let flags = trends::flags(snapshots);
        let mut report = Report {
            period_seconds: period.as_secs(),
            from_unix: snapshots.first().map_or(0, |s| unix(s.taken_at)),
            to_unix: snapshots.last().map_or(0, |s| unix(s.taken_at)),
            samples: snapshots.len(),
            metrics,
            breaches,
            flags,
            recommendations: Vec::new(),
            snapshots: snapshots.to_vec(),
        };
        report.recommendations = report.recommend();
        report
    }

    /// The summary of `metric`, if it was sampled.
    pub fn metric(&self, metric: &str) -> Option<&MetricSummary> {
        self.metrics.iter().find(|m| m.metric == metric)
    }

    fn recommend(&self) -> Vec<String> {
        let average = |metric| self.metric(metric).map(|m| m.average);
        let mut advice = Vec::new();
        if let Some(p95) = average(names::LATENCY_P95_MS).filter(|v| *v >= 500.0) {
            advice.push(format!(
                "P95 latency averaged {p95:.0} ms (target under 100, warning at 500): find the slow stage with X-Trace Server-Timing and the slow-query count"
            ));
        }
        if let Some(cpu) = average(names::CPU_USAGE_PERCENT).filter(|v| *v >= 70.0) {
            advice.push(format!(
                "CPU averaged {cpu:.0}% (target under 70): add cores or lower request_pool.max_concurrent"
            ));
        }
        if let Some(growth) = self
            .metric(names::RESIDENT_BYTES)
            .map(|m| m.slope_per_hour / 1e6)
            .filter(|mb| *mb > 10.0)
        {
            advice.push(format!(
                "resident memory grew {growth:.0} MB/h: look for a leak or an uncapped cache; optimize type=memory returns freed pages"
            ));
        }
        if let Some(hit_rate) = average(names::CACHE_HIT_RATE).filter(|v| *v < 0.85) {
            advice.push(format!(
                "cache hit rate averaged {:.0}% (target 85%): lengthen TTLs or warm more keys",
                hit_rate * 100.0
            ));
        }
        if let Some(errors) = average(names::ERROR_RATE).filter(|v| *v >= 0.01) {
            advice.push(format!(
                "error rate averaged {:.1}% (target under 1%): check breaker states and error logs",
                errors * 100.0
            ));
        }
        if let Some(slow) = self
            .metric(names::DB_SLOW_QUERIES)
            .map(|m| m.max - m.min)
            .filter(|added| *added > 0.0)
        {
            advice.push(format!(
                "{slow:.0} slow queries in the period: run optimize type=db (ANALYZE) and check indexes"
            ));
        }
        if advice.is_empty() && self.samples > 0 {
            advice.push("no action needed: every figure is within its target".to_owned());
        }
        advice
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The report as Markdown, for a person.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Performance report\n\nPeriod: {} s, {} samples (Unix {} to {}).\n",
            self.period_seconds, self.samples, self.from_unix, self.to_unix
        );
        out.push_str("| metric | average | min | max | p50 | p95 | last | slope/h |\n|---|---|---|---|---|---|---|---|\n");
        for m in &self.metrics {
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                m.metric, m.average, m.min, m.max, m.p50, m.p95, m.last, m.slope_per_hour
            );
        }
        let lists = [
            (
                "Threshold breaches",
                self.breaches
                    .iter()
                    .map(|b| {
                        format!(
                            "{}: {} samples at warning or worse, {} critical",
                            b.metric, b.warning_samples, b.critical_samples
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            ("Trends", self.flags.clone()),
            ("Recommendations", self.recommendations.clone()),
        ];
        for (title, items) in lists {
            let _ = writeln!(out, "\n## {title}\n");
            if items.is_empty() {
                out.push_str("- none\n");
            }
            for item in items {
                let _ = writeln!(out, "- {item}");
            }
        }
        out
    }

    /// The samples as CSV: a Unix-seconds column, then one column per figure.
    pub fn to_csv(&self) -> String {
        let columns: Vec<&str> = self.metrics.iter().map(|m| m.metric.as_str()).collect();
        let mut out = format!("timestamp,{}\n", columns.join(","));
        for snapshot in &self.snapshots {
            let row: Vec<String> = columns
                .iter()
                .map(|c| snapshot.get(c).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            let _ = writeln!(out, "{},{}", unix(snapshot.taken_at), row.join(","));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::health::default_thresholds;

    /// Minute samples of one figure.
    fn history(metric: &str, values: &[f64]) -> Vec<Snapshot> {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let mut snapshot = Snapshot::at(UNIX_EPOCH + Duration::from_secs(60 * i as u64));
                snapshot.set(metric, *value);
                snapshot
            })
            .collect()
    }

    fn advice(metric: &str, values: &[f64]) -> Vec<String> {
        Report::build(
            Duration::from_secs(3600),
            &history(metric, values),
            &default_thresholds(),
        )
        .recommendations
    }

    const CALM: &str = "no action needed: every figure is within its target";

    #[test]
    fn each_recommendation_fires_on_its_rule_and_not_just_below_it() {
        let cases: [(&str, Vec<f64>, Vec<f64>, &str); 6] = [
            (
                names::LATENCY_P95_MS,
                vec![500.0; 3],
                vec![499.0; 3],
                "P95 latency averaged 500 ms",
            ),
            (
                names::CPU_USAGE_PERCENT,
                vec![70.0; 3],
                vec![69.9; 3],
                "CPU averaged 70%",
            ),
            (
                names::RESIDENT_BYTES,
                (0..61).map(|i| 1e8 + 11e6 * f64::from(i) / 60.0).collect(),
                (0..61).map(|i| 1e8 + 9e6 * f64::from(i) / 60.0).collect(),
                "resident memory grew 11 MB/h",
            ),
            (
                names::CACHE_HIT_RATE,
                vec![0.84; 3],
                vec![0.85; 3],
                "cache hit rate averaged 84%",
            ),
            (
                names::ERROR_RATE,
                vec![0.01; 3],
                vec![0.009; 3],
                "error rate averaged 1.0%",
            ),
            (
                names::DB_SLOW_QUERIES,
                vec![4.0, 4.0, 7.0],
                vec![4.0, 4.0, 4.0],
                "3 slow queries in the period",
            ),
        ];
        for (metric, firing, calm, expected) in cases {
            let fired = advice(metric, &firing);
            assert_eq!(fired.len(), 1, "{metric}: {fired:?}");
            assert!(fired[0].starts_with(expected), "{metric}: {}", fired[0]);
            assert_eq!(advice(metric, &calm), [CALM], "{metric}");
        }
    }

    #[test]
    fn an_empty_period_recommends_nothing() {
        let report = Report::build(Duration::from_secs(60), &[], &default_thresholds());
        assert!(report.recommendations.is_empty());
        assert_eq!(report.samples, 0);
    }

    #[test]
    fn breaches_count_samples_at_each_level() {
        let report = Report::build(
            Duration::from_secs(3600),
            &history(names::CPU_USAGE_PERCENT, &[50.0, 85.0, 95.0, 91.0]),
            &default_thresholds(),
        );
        assert_eq!(
            report.breaches,
            [Breach {
                metric: names::CPU_USAGE_PERCENT.to_owned(),
                warning_samples: 3,
                critical_samples: 2,
            }]
        );
        let summary = report.metric(names::CPU_USAGE_PERCENT).unwrap();
        assert_eq!((summary.min, summary.max, summary.last), (50.0, 95.0, 91.0));
        assert_eq!((summary.p50, summary.p95), (85.0, 95.0));
    }
}

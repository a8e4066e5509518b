//! The profiler: collects snapshots, keeps a bounded history, exports gauges, evaluates
//! health and alerts.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use perf_core::sync::lock;
use tokio::task::JoinHandle;

use crate::BuildError;
use crate::collect::{LatencyRecorder, Probe, ProcessCollector, collect_runtime};
use crate::health::{self, AlertEngine, AlertEvent, AlertRule, HealthReport, Threshold};
use crate::report::Report;
use crate::snapshot::{Snapshot, names};
use crate::trends::{self, Trend};

/// Settings of a [`Profiler`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ProfilerConfig {
    /// Time between snapshots (the server's `monitoring.metrics_update_interval`: 10 s in development,
    /// 30 s in production).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
    /// How much history to keep (24 h: 2,880 snapshots at 30 s).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retention: Duration,
    /// The latency window.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub latency_window: Duration,
    /// Memory use is a percentage of this; detected (cgroup, then machine) when unset.
    pub memory_limit_bytes: Option<u64>,
    /// Prefix of the exported gauges (`pocwhisp` gives `pocwhisp_cpu_usage_percent`).
    pub metrics_prefix: String,
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig {
            interval: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            latency_window: Duration::from_secs(60),
            memory_limit_bytes: None,
            metrics_prefix: "process".to_owned(),
        }
    }
}

/// Collects, keeps and judges performance figures; `Clone` shares it.
#[derive(Clone)]
pub struct Profiler {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProfilerConfig,
    capacity: usize,
    process: Mutex<ProcessCollector>,
    latency: LatencyRecorder,
    probes: Mutex<Vec<Arc<dyn Probe>>>,
    history: Mutex<VecDeque<Snapshot>>,
    thresholds: Mutex<Vec<Threshold>>,
    alerts: Mutex<AlertEngine>,
    /// Figures whose gauge has its help text.
    described: Mutex<std::collections::HashSet<String>>,
}

/// The gauge of a snapshot figure and the factor its value is exported with:
/// `{prefix}_{name}`, in Prometheus's conventions where the snapshot's names differ from them.
/// `_count` is reserved for histograms and summaries, so `thread_count` is exported as
/// `threads` and `db_queries_count` as `db_queries`; units are base units spelled out, so
/// `request_latency_p95_ms` is exported as `request_latency_p95_seconds`.
fn gauge_of(prefix: &str, name: &str) -> (String, f64) {
    if let Some(base) = name.strip_suffix("_ms") {
        return (format!("{prefix}_{base}_seconds"), 1e-3);
    }
    let name = match name.strip_suffix("_count") {
        Some(base) if base.ends_with('s') => base.to_owned(),
        Some(base) => format!("{base}s"),
        None => name.to_owned(),
    };
    (format!("{prefix}_{name}"), 1.0)
}

/// Builds a [`Profiler`].
#[derive(Debug, Clone)]
#[must_use = "builder does nothing itself, call build()"]
pub struct ProfilerBuilder {
    config: ProfilerConfig,
}

impl ProfilerBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: ProfilerConfig) -> Self {
        ProfilerBuilder { config }
    }

    /// See [`ProfilerConfig::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// See [`ProfilerConfig::retention`].
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// See [`ProfilerConfig::latency_window`].
    pub fn latency_window(mut self, window: Duration) -> Self {
        self.config.latency_window = window;
        self
    }

    /// See [`ProfilerConfig::memory_limit_bytes`].
    pub fn memory_limit_bytes(mut self, bytes: Option<u64>) -> Self {
        self.config.memory_limit_bytes = bytes;
        self
    }

    /// See [`ProfilerConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// As [`Profiler::new`].
    pub fn build(self) -> Result<Profiler, BuildError> {
        Profiler::new(self.config)
    }
}

impl Profiler {
    /// A builder starting from the defaults of [`ProfilerConfig`].
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder::from_config(ProfilerConfig::default())
    }

    /// A profiler with the default thresholds and alert rules.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero interval or a retention shorter than one interval.
    pub fn new(config: ProfilerConfig) -> Result<Self, BuildError> {
        if config.interval.is_zero() {
            return Err(BuildError::new("interval", "must be longer than zero"));
        }
        if config.retention < config.interval {
            return Err(BuildError::new(
                "retention",
                "must hold at least one interval",
            ));
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &config.metrics_prefix)?;
        let capacity =
            (config.retention.as_secs_f64() / config.interval.as_secs_f64()).ceil() as usize;
        Ok(Profiler {
            inner: Arc::new(Inner {
                capacity,
                process: Mutex::new(ProcessCollector::new(config.memory_limit_bytes)),
                latency: LatencyRecorder::new(config.latency_window),
                probes: Mutex::default(),
                history: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
                thresholds: Mutex::new(health::default_thresholds()),
                alerts: Mutex::new(AlertEngine::new(health::default_alert_rules())),
                described: Mutex::default(),
                config,
            }),
        })
    }

    /// The latency recorder: feed it every request (or use its timers).
    pub fn latency(&self) -> &LatencyRecorder {
        &self.inner.latency
    }

    /// Adds a probe for the application's own figures.
    pub fn register_probe<P: Probe + 'static>(&self, probe: P) {
        lock(&self.inner.probes).push(Arc::new(probe));
    }

    /// Replaces the health thresholds.
    pub fn set_thresholds(&self, thresholds: Vec<Threshold>) {
        *lock(&self.inner.thresholds) = thresholds;
    }

    /// Replaces the alert rules (listeners stay).
    pub fn set_alert_rules(&self, rules: Vec<AlertRule>) {
        let mut alerts = lock(&self.inner.alerts);
        let listeners = std::mem::replace(&mut *alerts, AlertEngine::new(rules));
        alerts.take_listeners(listeners);
    }

    /// Calls `listener` when an alert fires or resolves.
    pub fn on_alert<F>(&self, listener: F)
    where
        F: Fn(&AlertEvent) + Send + Sync + 'static,
    {
        lock(&self.inner.alerts).on_alert(listener);
    }

    /// Takes a snapshot now without keeping it.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::at(SystemTime::now());
        lock(&self.inner.process).collect(&mut snapshot);
        collect_runtime(&mut snapshot);
        #[cfg(feature = "jemalloc")]
        crate::collect::collect_allocator(&mut snapshot);
        self.inner.latency.collect(&mut snapshot);
        let probes = lock(&self.inner.probes).clone();
        for probe in probes {
            probe.collect(&mut snapshot);
        }
        snapshot
    }

    /// Takes a snapshot, keeps it, exports it as gauges and evaluates the alert rules.
    pub fn sample(&self) -> Snapshot {
        let snapshot = self.snapshot();
        self.record(snapshot.clone());
        snapshot
    }

    /// Keeps `snapshot` (taken elsewhere, or replayed) as if sampled.
    pub fn record(&self, snapshot: Snapshot) {
        let prefix = &self.inner.config.metrics_prefix;
        let mut described = lock(&self.inner.described);
        for (name, value) in &snapshot.values {
            let (gauge, scale) = gauge_of(prefix, name);
            if !described.contains(name) {
                metrics::describe_gauge!(gauge.clone(), names::describe(name));
                described.insert(name.clone());
            }
            metrics::gauge!(gauge).set(*value * scale);
        }
        drop(described);
        lock(&self.inner.alerts).observe(&snapshot);
        let mut history = lock(&self.inner.history);
        if history.len() == self.inner.capacity {
            history.pop_front();
        }
        history.push_back(snapshot);
    }

    /// Samples now and every interval on the current tokio runtime, until the handle drops.
    pub fn spawn(&self) -> SamplerHandle {
        let profiler = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(profiler.inner.config.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                profiler.sample();
            }
        });
        SamplerHandle { task }
    }

    /// The kept snapshots of the last `period` (relative to the newest), oldest first.
    pub fn history(&self, period: Duration) -> Vec<Snapshot> {
        let history = lock(&self.inner.history);
        let Some(newest) = history.back().map(|s| s.taken_at) else {
            return Vec::new();
        };
        let since = newest.checked_sub(period).unwrap_or(SystemTime::UNIX_EPOCH);
        history
            .iter()
            .filter(|s| s.taken_at >= since)
            .cloned()
            .collect()
    }

    /// The newest snapshot against the thresholds (a fresh one if none is kept yet).
    pub fn health(&self) -> HealthReport {
        let latest = lock(&self.inner.history).back().cloned();
        let snapshot = latest.unwrap_or_else(|| self.snapshot());
        health::check(&snapshot, &lock(&self.inner.thresholds))
    }

    /// The alert rules firing now.
    pub fn firing_alerts(&self) -> Vec<String> {
        lock(&self.inner.alerts)
            .firing()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The trend of `metric` over the last `period`.
    pub fn trend(&self, metric: &str, period: Duration) -> Option<Trend> {
        trends::trend(metric, &self.history(period))
    }

    /// A report on the last `period`.
    pub fn report(&self, period: Duration) -> Report {
        Report::build(period, &self.history(period), &lock(&self.inner.thresholds))
    }
}

impl fmt::Debug for Profiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiler")
            .field("config", &self.inner.config)
            .field("kept", &lock(&self.inner.history).len())
            .finish_non_exhaustive()
    }
}

/// Stops [`Profiler::spawn`]'s sampling when dropped.
#[derive(Debug)]
#[must_use = "sampling stops when the handle is dropped"]
pub struct SamplerHandle {
    task: JoinHandle<()>,
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_prometheus_conventions() {
        assert_eq!(gauge_of("p", "thread_count"), ("p_threads".to_owned(), 1.0));
        assert_eq!(
            gauge_of("p", "db_queries_count"),
            ("p_db_queries".to_owned(), 1.0)
        );
        assert_eq!(
            gauge_of("p", "request_latency_p95_ms"),
            ("p_request_latency_p95_seconds".to_owned(), 1e-3)
        );
        assert_eq!(
            gauge_of("p", "resident_bytes"),
            ("p_resident_bytes".to_owned(), 1.0)
        );
    }
}

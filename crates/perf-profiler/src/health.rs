//! Health: each figure against warning and critical levels, and alert rules that fire and
//! resolve with hysteresis.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::snapshot::{Snapshot, names};

/// Which side of a level is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Bad when at or above the level (latency, CPU).
    Above,
    /// Bad when at or below the level (cache hit rate).
    Below,
}

impl Direction {
    fn breaches(self, value: f64, level: f64) -> bool {
        match self {
            Direction::Above => value >= level,
            Direction::Below => value <= level,
        }
    }
}

/// Warning and critical levels of one figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The figure.
    pub metric: String,
    /// Which side is bad.
    pub direction: Direction,
    /// The warning level.
    pub warning: f64,
    /// The critical level.
    pub critical: f64,
}

impl Threshold {
    /// A threshold on `metric`.
    pub fn new(metric: &str, direction: Direction, warning: f64, critical: f64) -> Self {
        Threshold {
            metric: metric.to_owned(),
            direction,
            warning,
            critical,
        }
    }

    /// The level `value` is at.
    pub fn status(&self, value: f64) -> Status {
        if self.direction.breaches(value, self.critical) {
            Status::Critical
        } else if self.direction.breaches(value, self.warning) {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// The default targets: P95 latency warn 500 ms crit 1000; CPU warn 80 % crit 90;
/// memory warn 90 % crit 95; cache hit rate warn below 70 % crit below 50; errors warn 2 %
/// crit 5 %.
pub fn default_thresholds() -> Vec<Threshold> {
    vec![
        Threshold::new(names::LATENCY_P95_MS, Direction::Above, 500.0, 1000.0),
        Threshold::new(names::CPU_USAGE_PERCENT, Direction::Above, 80.0, 90.0),
        Threshold::new(names::MEMORY_USAGE_PERCENT, Direction::Above, 90.0, 95.0),
        Threshold::new(names::CACHE_HIT_RATE, Direction::Below, 0.70, 0.50),
        Threshold::new(names::ERROR_RATE, Direction::Above, 0.02, 0.05),
    ]
}

/// A level of health, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within target.
    Ok,
    /// Past the warning level.
    Warning,
    /// Past the critical level.
    Critical,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        })
    }
}

/// One figure's check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The figure.
    pub metric: String,
    /// Its value, if it was measured.
    pub value: Option<f64>,
    /// Its level.
    pub status: Status,
    /// Why, in words.
    pub reason: String,
}

/// Every check, and the worst status among them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst check's status.
    pub status: Status,
    /// One per threshold.
    pub checks: Vec<Check>,
}

/// Checks `snapshot` against `thresholds`. A figure not measured is reported `ok` with that
/// reason: no data is not an outage.
pub fn check(snapshot: &Snapshot, thresholds: &[Threshold]) -> HealthReport {
    let checks: Vec<Check> = thresholds
        .iter()
        .map(|threshold| match snapshot.get(&threshold.metric) {
            None => Check {
                metric: threshold.metric.clone(),
                value: None,
                status: Status::Ok,
                reason: "not measured".to_owned(),
            },
            Some(value) => {
                let status = threshold.status(value);
                let side = match threshold.direction {
                    Direction::Above => "at or above",
                    Direction::Below => "at or below",
                };
                let reason = match status {
                    Status::Ok => {
                        format!("{value:.3} within the warning level {}", threshold.warning)
                    }
                    Status::Warning => {
                        format!("{value:.3} {side} the warning level {}", threshold.warning)
                    }
                    Status::Critical => format!(
                        "{value:.3} {side} the critical level {}",
                        threshold.critical
                    ),
                };
                Check {
                    metric: threshold.metric.clone(),
                    value: Some(value),
                    status,
                    reason,
                }
            }
        })
        .collect();
    HealthReport {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        checks,
    }
}

/// A condition to alert on: `metric` past `value` for at least `for_at_least`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// The rule's name.
    pub name: String,
    /// The figure.
    pub metric: String,
    /// Which side is bad.
    pub direction: Direction,
    /// The level.
    pub value: f64,
    /// How bad.
    pub severity: Status,
    /// How long the condition must hold before the alert fires, and how long it must be
    /// clear before it resolves: a value flapping around the level raises one alert, not
    /// one per sample.
    pub for_at_least: Duration,
}

/// The original's rules: CPU above 90 % critical, memory above 95 % critical, P95 above
/// 1000 ms warning, errors above 5 % warning; each for a minute.
pub fn default_alert_rules() -> Vec<AlertRule> {
    let rule = |name: &str, metric: &str, value: f64, severity| AlertRule {
        name: name.to_owned(),
        metric: metric.to_owned(),
        direction: Direction::Above,
        value,
        severity,
        for_at_least: Duration::from_secs(60),
    };
    vec![
        rule("high_cpu", names::CPU_USAGE_PERCENT, 90.0, Status::Critical),
        rule(
            "high_memory",
            names::MEMORY_USAGE_PERCENT,
            95.0,
            Status::Critical,
        ),
        rule(
            "slow_responses",
            names::LATENCY_P95_MS,
            1000.0,
            Status::Warning,
        ),
        rule("high_error_rate", names::ERROR_RATE, 0.05, Status::Warning),
    ]
}

/// An alert changing state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// The rule.
    pub rule: String,
    /// The figure.
    pub metric: String,
    /// Its value at the change.
    pub value: f64,
    /// The rule's severity.
    pub severity: Status,
    /// True when firing, false when resolved.
    pub firing: bool,
    /// When.
    pub at: SystemTime,
}

type Listener = Arc<dyn Fn(&AlertEvent) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleState {
    Clear,
    /// Condition true since then, not for long enough yet.
    Pending(SystemTime),
    Firing,
    /// Firing, condition false since then.
    Clearing(SystemTime),
}

/// Evaluates alert rules on each snapshot and tells listeners when an alert fires or
/// resolves.
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    states: BTreeMap<String, RuleState>,
    listeners: Vec<Listener>,
}

impl AlertEngine {
    /// An engine for `rules`.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        AlertEngine {
            states: rules
                .iter()
                .map(|r| (r.name.clone(), RuleState::Clear))
                .collect(),
            rules,
            listeners: Vec::new(),
        }
    }

    /// Calls `listener` on every alert that fires or resolves.
    pub fn on_alert<F>(&mut self, listener: F)
    where
        F: Fn(&AlertEvent) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
    }

    /// Keeps `other`'s listeners (when the rules are replaced).
    pub(crate) fn take_listeners(&mut self, other: AlertEngine) {
        self.listeners.extend(other.listeners);
    }

    /// The rules currently firing.
    pub fn firing(&self) -> Vec<&str> {
        self.states
            .iter()
            .filter(|(_, state)| matches!(state, RuleState::Firing | RuleState::Clearing(_)))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Evaluates every rule on `snapshot`; returns the events it caused (also sent to the
    /// listeners). A figure the snapshot lacks leaves its rule as it was.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Vec<AlertEvent> {
        let now = snapshot.taken_at;
        let mut events = Vec::new();
        for rule in &self.rules {
            let Some(value) = snapshot.get(&rule.metric) else {
                continue;
            };
            let bad = rule.direction.breaches(value, rule.value);
            let held = |since: SystemTime| {
                now.duration_since(since).unwrap_or_default() >= rule.for_at_least
            };
            let state = self
                .states
                .entry(rule.name.clone())
                .or_insert(RuleState::Clear);
            let (next, firing) = match (*state, bad) {
                (RuleState::Clear, true) => (RuleState::Pending(now), None),
                (RuleState::Pending(since), true) if held(since) => (RuleState::Firing, Some(true)),
                (RuleState::Pending(_), false) => (RuleState::Clear, None),
                (RuleState::Firing, false) => (RuleState::Clearing(now), None),
                (RuleState::Clearing(since), false) if held(since) => {
                    (RuleState::Clear, Some(false))
                }
                (RuleState::Clearing(_), true) => (RuleState::Firing, None),
                (same, _) => (same, None),
            };
            // A rule with no delay fires (or resolves) on the sample that breaks it.
            let (next, firing) = match (next, firing) {
                (RuleState::Pending(since), None) if held(since) => (RuleState::Firing, Some(true)),
                (RuleState::Clearing(since), None) if held(since) => {
                    (RuleState::Clear, Some(false))
                }
                other => other,
            };
            *state = next;
            if let Some(firing) = firing {
                events.push(AlertEvent {
                    rule: rule.name.clone(),
                    metric: rule.metric.clone(),
                    value,
                    severity: rule.severity,
                    firing,
                    at: now,
                });
            }
        }
        for event in &events {
            for listener in &self.listeners {
                listener(event);
            }
        }
        events
    }
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertEngine")
            .field("rules", &self.rules)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn snapshot(at: u64, metric: &str, value: f64) -> Snapshot {
        let mut snapshot = Snapshot::at(UNIX_EPOCH + Duration::from_secs(at));
        snapshot.set(metric, value);
        snapshot
    }

    #[test]
    fn each_default_threshold_changes_status_exactly_at_its_levels() {
        let cases = [
            (names::LATENCY_P95_MS, 499.9, 500.0, 999.9, 1000.0),
            (names::CPU_USAGE_PERCENT, 79.9, 80.0, 89.9, 90.0),
            (names::MEMORY_USAGE_PERCENT, 89.9, 90.0, 94.9, 95.0),
            (names::ERROR_RATE, 0.0199, 0.02, 0.0499, 0.05),
            // Below is bad: the levels are approached from above.
            (names::CACHE_HIT_RATE, 0.7001, 0.70, 0.5001, 0.50),
        ];
        let thresholds = default_thresholds();
        for (metric, ok, warning, still_warning, critical) in cases {
            let threshold = thresholds.iter().find(|t| t.metric == metric).unwrap();
            assert_eq!(threshold.status(ok), Status::Ok, "{metric} {ok}");
            assert_eq!(
                threshold.status(warning),
                Status::Warning,
                "{metric} {warning}"
            );
            assert_eq!(
                threshold.status(still_warning),
                Status::Warning,
                "{metric} {still_warning}"
            );
            assert_eq!(
                threshold.status(critical),
                Status::Critical,
                "{metric} {critical}"
            );
        }
    }

    #[test]
    fn the_report_is_as_bad_as_its_worst_check_and_unmeasured_is_ok() {
        let mut snapshot = snapshot(0, names::CPU_USAGE_PERCENT, 85.0);
        snapshot.set(names::ERROR_RATE, 0.06);
        let report = check(&snapshot, &default_thresholds());
        assert_eq!(report.status, Status::Critical);
        let by_metric = |metric: &str| report.checks.iter().find(|c| c.metric == metric).unwrap();
        assert_eq!(by_metric(names::CPU_USAGE_PERCENT).status, Status::Warning);
        assert_eq!(
            by_metric(names::CPU_USAGE_PERCENT).reason,
            "85.000 at or above the warning level 80"
        );
        assert_eq!(by_metric(names::LATENCY_P95_MS).reason, "not measured");
        assert_eq!(by_metric(names::LATENCY_P95_MS).status, Status::Ok);
        assert_eq!(check(&Snapshot::at(UNIX_EPOCH), &[]).status, Status::Ok);
    }

    fn engine(hold: u64) -> AlertEngine {
        AlertEngine::new(vec![AlertRule {
            name: "hot".into(),
            metric: "cpu".into(),
            direction: Direction::Above,
            value: 90.0,
            severity: Status::Critical,
            for_at_least: Duration::from_secs(hold),
        }])
    }

    #[test]
    fn an_alert_fires_only_after_its_hold_time() {
        let mut alerts = engine(60);
        assert!(alerts.observe(&snapshot(0, "cpu", 95.0)).is_empty());
        assert!(alerts.observe(&snapshot(30, "cpu", 95.0)).is_empty());
        assert!(alerts.firing().is_empty(), "pending is not firing");
        let fired = alerts.observe(&snapshot(60, "cpu", 96.0));
        assert_eq!(fired.len(), 1);
        assert!(fired[0].firing);
        assert_eq!(fired[0].value, 96.0);
        assert_eq!(alerts.firing(), ["hot"]);
    }

    #[test]
    fn an_alert_resolves_only_after_being_clear_for_the_hold_time() {
        let mut alerts = engine(60);
        alerts.observe(&snapshot(0, "cpu", 95.0));
        alerts.observe(&snapshot(60, "cpu", 95.0));
        assert!(alerts.observe(&snapshot(90, "cpu", 50.0)).is_empty());
        assert_eq!(alerts.firing(), ["hot"], "clearing still counts as firing");
        let resolved = alerts.observe(&snapshot(150, "cpu", 50.0));
        assert_eq!(resolved.len(), 1);
        assert!(!resolved[0].firing);
        assert!(alerts.firing().is_empty());
    }

    #[test]
    fn a_value_flapping_around_the_level_raises_one_alert() {
        let mut alerts = engine(60);
        let mut events = Vec::new();
        // Flapping while pending never fires...
        for (at, value) in [(0, 95.0), (20, 80.0), (40, 95.0), (60, 80.0), (80, 95.0)] {
            events.extend(alerts.observe(&snapshot(at, "cpu", value)));
        }
        assert!(events.is_empty(), "{events:?}");
        // ...and flapping while firing never resolves.
        for at in (80..=200).step_by(20) {
            events.extend(alerts.observe(&snapshot(at, "cpu", 95.0)));
        }
        for (at, value) in [(220, 80.0), (240, 95.0), (260, 80.0), (280, 95.0)] {
            events.extend(alerts.observe(&snapshot(at, "cpu", value)));
        }
        assert_eq!(events.iter().filter(|e| e.firing).count(), 1);
        assert_eq!(events.iter().filter(|e| !e.firing).count(), 0);
    }

    #[test]
    fn a_rule_without_delay_fires_on_the_breaking_sample_and_listeners_hear_it() {
        let mut alerts = engine(0);
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        alerts.on_alert(move |event| sink.lock().unwrap().push(event.firing));
        assert_eq!(alerts.observe(&snapshot(0, "cpu", 91.0)).len(), 1);
        assert!(
            alerts.observe(&snapshot(1, "other", 1.0)).is_empty(),
            "missing figure"
        );
        assert_eq!(alerts.observe(&snapshot(2, "cpu", 10.0)).len(), 1);
        assert_eq!(*heard.lock().unwrap(), [true, false]);
    }
}

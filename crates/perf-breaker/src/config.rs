//! What a breaker is configured with, its defaults, and the checks that turn a bad value into a
//! [`BuildError`] before any call is made.

use std::time::Duration;

use crate::error::BuildError;
use crate::state::{MAX_DEADLINE_MS, MAX_PROBES};

/// The largest count-based window accepted; larger windows cost memory for no better signal.
const MAX_WINDOW_CALLS: u32 = 1 << 20;

/// Settings of one circuit breaker.
///
/// With the `serde` feature it deserializes from any format serde supports; every field is
/// optional there and takes the default below. Durations are written like `30s`, `500ms` or
/// `5m`.
///
/// | field | default |
/// |---|---|
/// | `failure_threshold` | 5 consecutive failures (0 turns this trip condition off) |
/// | `failure_rate` | off |
/// | `slow_call_threshold` | off |
/// | `open_duration` | 30 s |
/// | `max_open_duration` | 5 min |
/// | `backoff_multiplier` | 2.0 |
/// | `jitter` | 0.2 (±20 % on repeated trips) |
/// | `half_open_max_probes` | 1 |
/// | `half_open_success_threshold` | 1 |
/// | `name` | `default` |
/// | `metrics_prefix` | `circuit_breaker` |
///
/// The struct is `#[non_exhaustive]` so that new settings are not breaking changes: start
/// from [`Config::default`] (or a file) and set fields, or use the [`Builder`](crate::Builder).
///
/// ```
/// use std::time::Duration;
/// use perf_breaker::{CircuitBreaker, Config};
///
/// let mut config = Config::default();
/// config.name = "postgres".into();
/// config.failure_threshold = 3;
/// config.open_duration = Duration::from_secs(5);
/// let breaker = CircuitBreaker::new(config).unwrap();
/// assert_eq!(breaker.config().failure_threshold, 3);
///
/// config_error_is_named();
/// fn config_error_is_named() {
///     let mut config = Config::default();
///     config.jitter = 1.5;
///     let error = CircuitBreaker::new(config).unwrap_err();
///     assert_eq!(error.field(), "jitter");
///     assert_eq!(error.to_string(), "invalid configuration: `jitter` must be in [0, 1)");
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Config {
    /// Trip after this many consecutive failures while closed; 0 disables this condition.
    pub failure_threshold: u32,
    /// Trip when the failure rate over a sliding window reaches a threshold.
    pub failure_rate: Option<FailureRate>,
    /// A successful call that takes at least this long counts as a failure.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub slow_call_threshold: Option<Duration>,
    /// How long the circuit stays open after its first trip.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub open_duration: Duration,
    /// The cap on the open period as it grows on repeated trips.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_open_duration: Duration,
    /// Each trip that follows a failed probe multiplies the open period by this.
    pub backoff_multiplier: f64,
    /// Random spread applied to grown open periods, as a fraction: 0.2 means ±20 %, so that
    /// many instances tripped together do not all probe at the same moment.
    pub jitter: f64,
    /// Probe calls admitted at once while half-open.
    pub half_open_max_probes: u32,
    /// Successful probes needed to close the circuit again.
    pub half_open_success_threshold: u32,
    /// The breaker's name: the `breaker` label on its metrics and the name in transitions.
    pub name: String,
    /// Prefix of the metric names, for example `circuit_breaker_state`.
    pub metrics_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            failure_threshold: 5,
            failure_rate: None,
            slow_call_threshold: None,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            backoff_multiplier: 2.0,
            jitter: 0.2,
            half_open_max_probes: 1,
            half_open_success_threshold: 1,
            name: "default".to_owned(),
            metrics_prefix: "circuit_breaker".to_owned(),
        }
    }
}

/// Trip on the share of failed calls in a sliding window.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct FailureRate {
    /// The failure share, in `(0, 1]`, at or above which the circuit opens.
    pub threshold: f64,
    /// The calls the rate is computed over.
    pub window: SlidingWindow,
    /// No trip on rate until the window holds at least this many calls.
    #[cfg_attr(
        feature = "serde",
        serde(default = "FailureRate::default_minimum_calls")
    )]
    pub minimum_calls: u32,
}

impl FailureRate {
    /// A failure-rate condition with the default minimum of 10 calls.
    pub fn new(threshold: f64, window: SlidingWindow) -> Self {
        FailureRate {
            threshold,
            window,
            minimum_calls: Self::default_minimum_calls(),
        }
    }

    /// Sets the minimum number of calls in the window before the rate is trusted.
    #[must_use]
    pub fn minimum_calls(mut self, minimum_calls: u32) -> Self {
        self.minimum_calls = minimum_calls;
        self
    }

    fn default_minimum_calls() -> u32 {
        10
    }
}

/// The calls a failure rate is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last N calls.
    Count(u32),
    /// The calls of the last period, counted in ten buckets of a tenth of it each.
    Time(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
}

impl Config {
    /// Checks every field, returning the first invalid one.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.failure_threshold == 0 && self.failure_rate.is_none() {
            return Err(BuildError::new(
                "failure_threshold",
                "is 0 and no failure_rate is set, so the breaker could never open",
            ));
        }
        if let Some(rate) = &self.failure_rate {
            rate.validate()?;
        }
        if self.slow_call_threshold == Some(Duration::ZERO) {
            return Err(BuildError::new(
                "slow_call_threshold",
                "is zero, which would count every call as slow",
            ));
        }
        if self.open_duration < Duration::from_millis(1) {
            return Err(BuildError::new("open_duration", "must be at least 1ms"));
        }
        if self.max_open_duration < self.open_duration {
            return Err(BuildError::new(
                "max_open_duration",
                "must not be shorter than open_duration",
            ));
        }
        if self.max_open_duration.as_millis() > u128::from(MAX_DEADLINE_MS) / 2 {
            return Err(BuildError::new(
                "max_open_duration",
                "is too long to represent",
            ));
        }
        if !(self.backoff_multiplier.is_finite() && self.backoff_multiplier >= 1.0) {
            return Err(BuildError::new(
                "backoff_multiplier",
                "must be a finite number of at least 1.0",
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(BuildError::new("jitter", "must be in [0, 1)"));
        }
        if !(1..=MAX_PROBES).contains(&self.half_open_max_probes) {
            return Err(BuildError::new(
                "half_open_max_probes",
                format!("must be between 1 and {MAX_PROBES}"),
            ));
        }
        if !(1..=MAX_PROBES).contains(&self.half_open_success_threshold) {
            return Err(BuildError::new(
                "half_open_success_threshold",
                format!("must be between 1 and {MAX_PROBES}"),
            ));
        }
        if self.name.is_empty() {
            return Err(BuildError::new("name", "must not be empty"));
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &self.metrics_prefix)
    }
}

impl FailureRate {
    fn validate(&self) -> Result<(), BuildError> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(BuildError::new(
                "failure_rate.threshold",
                "must be in (0, 1]",
            ));
        }
        if self.minimum_calls == 0 {
            return Err(BuildError::new(
                "failure_rate.minimum_calls",
                "must be at least 1",
            ));
        }
        match self.window {
            SlidingWindow::Count(0) => Err(BuildError::new(
                "failure_rate.window",
                "must hold at least one call",
            )),
            SlidingWindow::Count(size) if size > MAX_WINDOW_CALLS => Err(BuildError::new(
                "failure_rate.window",
                format!("must hold at most {MAX_WINDOW_CALLS} calls"),
            )),
            SlidingWindow::Count(size) if self.minimum_calls > size => Err(BuildError::new(
                "failure_rate.minimum_calls",
                "is larger than the window, so the rate could never be trusted",
            )),
            SlidingWindow::Time(period) if period < Duration::from_millis(10) => Err(
                BuildError::new("failure_rate.window", "must be at least 10ms long"),
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: Config) -> String {
        config
            .validate()
            .expect_err("config should be rejected")
            .field()
            .to_owned()
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.failure_threshold, 5);
        assert_eq!(config.open_duration, Duration::from_secs(30));
    }

    #[test]
    fn every_invalid_field_is_named() {
        let base = Config::default;
        assert_eq!(
            field_of(Config {
                failure_threshold: 0,
                ..base()
            }),
            "failure_threshold"
        );
        assert_eq!(
            field_of(Config {
                open_duration: Duration::ZERO,
                ..base()
            }),
            "open_duration"
        );
        assert_eq!(
            field_of(Config {
                max_open_duration: Duration::from_secs(1),
                ..base()
            }),
            "max_open_duration"
        );
        assert_eq!(
            field_of(Config {
                backoff_multiplier: f64::NAN,
                ..base()
            }),
            "backoff_multiplier"
        );
        assert_eq!(
            field_of(Config {
                jitter: 1.0,
                ..base()
            }),
            "jitter"
        );
        assert_eq!(
            field_of(Config {
                half_open_max_probes: 0,
                ..base()
            }),
            "half_open_max_probes"
        );
        assert_eq!(
            field_of(Config {
                half_open_success_threshold: MAX_PROBES + 1,
                ..base()
            }),
            "half_open_success_threshold"
        );
        assert_eq!(
            field_of(Config {
                metrics_prefix: "9lives".into(),
                ..base()
            }),
            "metrics_prefix"
        );
        assert_eq!(
            field_of(Config {
                slow_call_threshold: Some(Duration::ZERO),
                ..base()
            }),
            "slow_call_threshold"
        );
        assert_eq!(
            field_of(Config {
                failure_rate: Some(FailureRate::new(1.5, SlidingWindow::Count(10))),
                ..base()
            }),
            "failure_rate.threshold"
        );
        assert_eq!(
            field_of(Config {
                failure_rate: Some(FailureRate::new(0.5, SlidingWindow::Count(5))),
                ..base()
            }),
            "failure_rate.minimum_calls"
        );
        assert_eq!(
            field_of(Config {
                failure_rate: Some(FailureRate::new(
                    0.5,
                    SlidingWindow::Time(Duration::from_millis(1))
                )),
                ..base()
            }),
            "failure_rate.window"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_defaults_and_human_durations() {
        let config: Config = serde_json::from_str(
            r#"{
                "failure_threshold": 3,
                "open_duration": "10s",
                "slow_call_threshold": "250ms",
                "failure_rate": {"threshold": 0.5, "window": {"time": "1m"}}
            }"#,
        )
        .unwrap();
        assert_eq!(config.failure_threshold, 3);
        assert_eq!(config.open_duration, Duration::from_secs(10));
        assert_eq!(config.slow_call_threshold, Some(Duration::from_millis(250)));
        let rate = config.failure_rate.as_ref().unwrap();
        assert_eq!(rate.window, SlidingWindow::Time(Duration::from_secs(60)));
        assert_eq!(rate.minimum_calls, 10);
        assert_eq!(
            config.max_open_duration,
            Config::default().max_open_duration
        );
        config.validate().unwrap();
    }

    #[cfg(feature = "serde")]
    #[test]
    fn unknown_fields_are_rejected() {
        let error = serde_json::from_str::<Config>(r#"{"failure_treshold": 3}"#).unwrap_err();
        assert!(error.to_string().contains("failure_treshold"), "{error}");
    }
}

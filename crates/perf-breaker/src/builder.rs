//! The builder: configuration plus what a serde struct cannot hold (listeners).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::Label;

use perf_core::clock::AnyClock;

use crate::breaker::CircuitBreaker;
use crate::clock;
use crate::config::{Config, FailureRate};
use crate::error::BuildError;
use crate::telemetry::Telemetry;
use crate::transition::{Listener, Transition};

/// Builds a [`CircuitBreaker`] (or, with [`KeyedCircuitBreaker::builder`](crate::KeyedCircuitBreaker::builder),
/// the template for keyed ones).
///
/// ```
/// use std::time::Duration;
/// use perf_breaker::{CircuitBreaker, FailureRate, SlidingWindow};
///
/// let breaker = CircuitBreaker::builder()
///     .name("speech-engine")
///     .failure_threshold(3)
///     .failure_rate(FailureRate::new(0.5, SlidingWindow::Count(20)))
///     .open_duration(Duration::from_secs(10))
///     .half_open_max_probes(2)
///     .on_transition(|t| eprintln!("{} went {} -> {} ({})", t.name, t.from, t.to, t.reason))
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "speech-engine");
/// ```
#[derive(Clone)]
#[must_use = "builder does nothing itself, call build()"]
pub struct Builder {
    config: Config,
    listeners: Vec<Listener>,
    tokio_clock: bool,
}

impl Builder {
    /// A builder with the defaults of [`Config`].
    pub fn new() -> Self {
        Builder::from_config(Config::default())
    }

    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: Config) -> Self {
        Builder {
            config,
            listeners: Vec::new(),
            tokio_clock: false,
        }
    }

    /// Runs the breaker on tokio's clock instead of the CPU's time-stamp counter, so that
    /// tests can pause and advance time (`tokio::time::pause`, `advance`). The default clock
    /// is 2.6× cheaper to read, which the open path and slow-call timing feel.
    pub fn tokio_clock(mut self) -> Self {
        self.tokio_clock = true;
        self
    }

    /// See [`Config::failure_threshold`].
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = failures;
        self
    }

    /// See [`Config::failure_rate`].
    pub fn failure_rate(mut self, rate: FailureRate) -> Self {
        self.config.failure_rate = Some(rate);
        self
    }

    /// See [`Config::slow_call_threshold`].
    pub fn slow_call_threshold(mut self, threshold: Duration) -> Self {
        self.config.slow_call_threshold = Some(threshold);
        self
    }

    /// See [`Config::open_duration`].
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = duration;
        self
    }

    /// See [`Config::max_open_duration`].
    pub fn max_open_duration(mut self, duration: Duration) -> Self {
        self.config.max_open_duration = duration;
        self
    }

    /// See [`Config::backoff_multiplier`].
    pub fn backoff_multiplier(mut self, multiplier: f64) -> Self {
        self.config.backoff_multiplier = multiplier;
        self
    }

    /// See [`Config::jitter`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// See [`Config::half_open_max_probes`].
    pub fn half_open_max_probes(mut self, probes: u32) -> Self {
        self.config.half_open_max_probes = probes;
        self
    }

    /// See [`Config::half_open_success_threshold`].
    pub fn half_open_success_threshold(mut self, successes: u32) -> Self {
        self.config.half_open_success_threshold = successes;
        self
    }

    /// See [`Config::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`Config::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Calls `listener` on every state change, on the thread that made it.
    pub fn on_transition<F>(mut self, listener: F) -> Self
    where
        F: Fn(&Transition) + Send + Sync + 'static,
    {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates the configuration and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid field.
    pub fn build(self) -> Result<CircuitBreaker, BuildError> {
        self.config.validate()?;
        let labels = vec![Label::new("breaker", self.config.name.clone())];
        Ok(self.build_with_labels(labels, true, None))
    }

    /// A clock of the kind this builder's breakers use.
    pub(crate) fn new_clock(&self) -> AnyClock {
        clock::new(self.tokio_clock)
    }

    /// Builds a breaker from an already validated configuration: `own_series` when its
    /// labels tell it from every other breaker, and one more listener if given.
    pub(crate) fn build_with_labels(
        &self,
        labels: Vec<Label>,
        own_series: bool,
        extra_listener: Option<Listener>,
    ) -> CircuitBreaker {
        let telemetry = Telemetry::new(&self.config.metrics_prefix, labels, own_series);
        let mut listeners = self.listeners.clone();
        listeners.extend(extra_listener);
        CircuitBreaker::from_parts(
            self.config.clone(),
            listeners.into_boxed_slice(),
            telemetry,
            self.new_clock(),
        )
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .field("tokio_clock", &self.tokio_clock)
            .finish()
    }
}

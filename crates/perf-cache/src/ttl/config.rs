use std::time::Duration;

use crate::BuildError;

/// Settings of a [`TtlCache`](super::TtlCache).
///
/// | field | default |
/// |---|---|
/// | `name` | `default` (the `cache` label on its metrics) |
/// | `capacity` | 10,000 (in weight units: entries, or bytes with a weigher) |
/// | `ttl` | 5 min (the original's L1 lifetime) |
/// | `ttl_jitter` | 0.1: each entry lives ±10 % of its TTL, so entries written together do not all expire together |
/// | `stale_while_revalidate` | off |
/// | `stale_if_error` | off |
/// | `sweep_interval` | 60 s between lazy sweeps of dead entries |
/// | `metrics_prefix` | `cache` |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TtlConfig {
    /// The cache's name, the `cache` label on its metrics.
    pub name: String,
    /// The most weight held.
    pub capacity: u64,
    /// The lifetime of an entry inserted without its own.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ttl: Duration,
    /// Random spread of lifetimes, as a fraction in `[0, 1)`.
    pub ttl_jitter: f64,
    /// After expiry, keep serving the old value this long while one caller reloads it.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub stale_while_revalidate: Option<Duration>,
    /// After expiry, serve the old value this long if reloading it fails.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub stale_if_error: Option<Duration>,
    /// Dead entries are swept out at most this often, on a write; no background thread.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub sweep_interval: Duration,
    /// Prefix of the metric names.
    pub metrics_prefix: String,
}

impl Default for TtlConfig {
    fn default() -> Self {
        TtlConfig {
            name: "default".to_owned(),
            capacity: 10_000,
            ttl: Duration::from_secs(300),
            ttl_jitter: 0.1,
            stale_while_revalidate: None,
            stale_if_error: None,
            sweep_interval: Duration::from_secs(60),
            metrics_prefix: "cache".to_owned(),
        }
    }
}

impl TtlConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.capacity == 0 {
            return Err(BuildError::new("capacity", "must be at least 1"));
        }
        if self.ttl.is_zero() {
            return Err(BuildError::new("ttl", "must be longer than zero"));
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(BuildError::new("ttl_jitter", "must be in [0, 1)"));
        }
        if self.sweep_interval.is_zero() {
            return Err(BuildError::new(
                "sweep_interval",
                "must be longer than zero",
            ));
        }
        if self.name.is_empty() {
            return Err(BuildError::new("name", "must not be empty"));
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &self.metrics_prefix)
    }
}

use std::time::Duration;

use super::AdaptiveConfig;

/// Settings of load shedding: the [`LoadShedder`](super::LoadShedder) and the priorities of
/// [`LoadShedLayer::from_config`](super::LoadShedLayer::from_config). Defaults follow the
/// server's `request_pool.max_concurrent`, with the health and metrics endpoints exempt.
///
/// | field | default |
/// |---|---|
/// | `max_in_flight` | 1000 (the starting point when adaptive) |
/// | `adaptive` | none: a fixed limit |
/// | `queue` | none: refused at once |
/// | `low_priority_share` | 0.8 of the limit for low-priority requests |
/// | `high_priority_reserve` | a tenth of the limit (at least 1) above it for high priority |
/// | `retry_after` | 1 s |
/// | `exempt_paths` | `/api/v1/health`, `/api/v1/live`, `/api/v1/ready`, `/metrics` |
/// | `low_priority_paths`, `high_priority_paths` | none |
/// | `metrics_prefix` | `load_shed` |
///
/// Path rules are prefixes, optionally after a method (`POST /api/v1/transcribe`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct LoadShedConfig {
    /// Requests in flight at most (the starting point when adaptive).
    pub max_in_flight: u32,
    /// Adapt the limit to observed latency.
    pub adaptive: Option<AdaptiveConfig>,
    /// Let a few requests wait for a slot instead of being refused at once.
    pub queue: Option<QueueConfig>,
    /// Low-priority requests are refused once this share of the limit is in flight.
    pub low_priority_share: f64,
    /// High-priority requests may exceed the limit by this many; `None` for a tenth of it.
    pub high_priority_reserve: Option<u32>,
    /// The `Retry-After` of a refusal.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub retry_after: Duration,
    /// Requests never shed nor counted.
    pub exempt_paths: Vec<String>,
    /// Requests shed first.
    pub low_priority_paths: Vec<String>,
    /// Requests that may use the reserve above the limit.
    pub high_priority_paths: Vec<String>,
    /// Prefix of the shedder's metrics.
    pub metrics_prefix: String,
}

/// A small queue in front of the load-shedding limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct QueueConfig {
    /// Requests waiting at most.
    pub size: u32,
    /// How long one may wait.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
}

impl Default for LoadShedConfig {
    fn default() -> Self {
        LoadShedConfig {
            max_in_flight: 1000,
            adaptive: None,
            queue: None,
            low_priority_share: 0.8,
            high_priority_reserve: None,
            retry_after: Duration::from_secs(1),
            exempt_paths: [
                "/api/v1/health",
                "/api/v1/live",
                "/api/v1/ready",
                "/metrics",
            ]
            .map(String::from)
            .to_vec(),
            low_priority_paths: Vec::new(),
            high_priority_paths: Vec::new(),
            metrics_prefix: "load_shed".to_owned(),
        }
    }
}

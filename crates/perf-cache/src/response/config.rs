use std::time::Duration;

use crate::BuildError;

/// Room for the key and headers of one stored response, on top of its body (the store's
/// weigher charges 64 bytes a header).
pub(crate) const HEAD_ALLOWANCE: u64 = 2048;

/// Settings of the [`ResponseCacheLayer`](super::ResponseCacheLayer).
///
/// | field | default |
/// |---|---|
/// | `name` | `responses` (the `cache` label on its metrics) |
/// | `metrics_prefix` | `cache` (`cache_hits_total`...) |
/// | `capacity_bytes` | 64 MiB of stored bodies |
/// | `default_ttl` | 5 min, for responses that do not say (`max-age`, `s-maxage`) |
/// | `max_body_bytes` | 1 MiB: larger responses stream through untouched |
/// | `stale_if_error` | 60 s: when the origin answers 5xx, an expired copy this recent is served instead, marked `X-Cache: STALE` |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ResponseCacheConfig {
    /// The cache's name, the `cache` label on its metrics.
    pub name: String,
    /// Prefix of its metrics' names.
    pub metrics_prefix: String,
    /// Bytes of stored bodies at most.
    pub capacity_bytes: u64,
    /// The lifetime of a response that does not set its own.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub default_ttl: Duration,
    /// Responses larger than this are neither stored nor tagged.
    pub max_body_bytes: u64,
    /// How long after expiry a stored response may stand in for an origin's 5xx.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub stale_if_error: Option<Duration>,
}

impl Default for ResponseCacheConfig {
    fn default() -> Self {
        ResponseCacheConfig {
            name: "responses".to_owned(),
            metrics_prefix: "cache".to_owned(),
            capacity_bytes: 64 * 1024 * 1024,
            default_ttl: Duration::from_secs(300),
            max_body_bytes: 1024 * 1024,
            stale_if_error: Some(Duration::from_secs(60)),
        }
    }
}

impl ResponseCacheConfig {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.capacity_bytes < self.max_body_bytes.saturating_add(HEAD_ALLOWANCE) {
            return Err(BuildError::new(
                "capacity_bytes",
                "must hold at least one response of max_body_bytes with its headers",
            ));
        }
        if self.default_ttl.is_zero() {
            return Err(BuildError::new("default_ttl", "must be longer than zero"));
        }
        Ok(())
    }
}

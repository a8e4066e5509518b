use super::{RateLimitHeaders, RateLimitKey};

/// Settings of a rate limit: the quota, what a key is, and what responses say. Defaults
/// are a token bucket per client: 100 requests a second with bursts of 200.
///
/// | field | default |
/// |---|---|
/// | `requests_per_second` | 100 |
/// | `burst` | 200 |
/// | `key` | the verified identity, else the client address ([`RateLimitKey::Identity`]) |
/// | `max_keys` | 100,000 keys tracked at most |
/// | `headers` | standard `RateLimit-*` and legacy `X-RateLimit-*` fields |
/// | `metrics_prefix` | `rate_limit` |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RateLimitConfig {
    /// Sustained requests per second per key.
    pub requests_per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
    /// What a key is.
    pub key: RateLimitKey,
    /// Keys tracked at most.
    pub max_keys: usize,
    /// Which rate-limit fields responses carry.
    pub headers: RateLimitHeaders,
    /// Prefix of the limiter's metrics.
    pub metrics_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 100,
            burst: 200,
            key: RateLimitKey::default(),
            max_keys: 100_000,
            headers: RateLimitHeaders::default(),
            metrics_prefix: "rate_limit".to_owned(),
        }
    }
}

//! What instances share through Redis when `redis.url` is set: finished sessions (a
//! [`TieredCache`] whose L2 is Redis, so a session one instance read is a hit on the others,
//! and a delete on one drops every instance's copies) and the rate limits (one quota between
//! the instances). One breaker guards Redis for all of them: when it opens, reads come from
//! memory and the store, limits are enforced locally with each instance's share of the
//! quotas, and `/health` says so; when Redis answers again they go back by themselves.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use perf_breaker::{CircuitBreaker, State};
use perf_cache::clock::FastClock;
use perf_cache::l2::redis::{Client, Invalidation, RedisCache};
use perf_cache::l2::{TieredCache, TieredConfig};
use perf_cache::ttl::TtlCache;
use perf_middleware::rate_limit::redis::RedisRateLimiter;
use perf_middleware::rate_limit::{KeyValue, Quota, share_key_secret};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::config::{Config, Secret};

/// The version of what is cached for a session: raise it when [`CachedSession`]'s bytes
/// change, so that instances of different versions never read each other's entries.
const SESSION_FORMAT: u32 = 1;

/// How long a finished session stays in Redis: an hour, shared by every instance.
const SESSION_L2_TTL: Duration = Duration::from_secs(3600);

/// Sessions held in each instance's memory at most.
const SESSIONS_IN_MEMORY: u64 = 10_000;

/// Redis and what is shared through it.
pub(crate) struct Redis {
    cache: RedisCache,
    breaker: CircuitBreaker,
    /// Finished sessions by id.
    pub(crate) sessions: TieredCache<FastClock>,
    /// Every request's quota (`rate_limit`).
    pub(crate) requests: RedisRateLimiter<KeyValue>,
    /// Uploads per hour (`jobs.uploads_per_hour`).
    pub(crate) uploads: RedisRateLimiter<KeyValue>,
    instances: u32,
}

impl Redis {
    /// Everything shared, when `redis.url` is set. Nothing connects yet: a Redis that is down
    /// at start is a degraded server, not one that fails to start.
    pub(crate) fn new(config: &Config) -> Result<Option<Redis>, String> {
        let Some(url) = &config.redis.url else {
            return Ok(None);
        };
        let redis = &config.redis;
        let client = Client::open(url.expose()).map_err(|error| format!("redis.url: {error}"))?;
        share_key_secret(&key_secret(config)).map_err(|error| error.to_string())?;
        let breaker = CircuitBreaker::new(redis.breaker.clone())
            .map_err(|error| format!("redis.breaker: {error}"))?;
        let cache = RedisCache::builder(client.clone())
            .prefix(format!("{}:sessions", redis.key_prefix))
            .format_version(SESSION_FORMAT)
            .timeout(redis.timeout)
            .breaker(breaker.clone())
            .build()
            .map_err(|error| format!("redis: {error}"))?;
        let memory = TtlCache::builder()
            .name("sessions")
            .metrics_prefix("pocwhisp_session_cache")
            .capacity(SESSIONS_IN_MEMORY)
            .ttl(config.cache.ttl)
            .build()
            .map_err(|error| format!("cache.ttl: {error}"))?;
        let sessions = TieredCache::new(
            memory,
            Arc::new(cache.clone()),
            TieredConfig {
                l2_ttl: SESSION_L2_TTL,
                // The breaker and the client's own timeout come first; this only bounds
                // the worst case.
                l2_timeout: redis.timeout * 2,
            },
        )
        .map_err(|error| format!("redis: {error}"))?;
        let limiter = |name: &str, quota: Quota, metrics: &str| {
            RedisRateLimiter::builder(quota)
                .prefix(format!("{}:{name}", redis.key_prefix))
                .instances(redis.instances)
                .timeout(redis.timeout)
                .breaker(breaker.clone())
                .max_keys(config.rate_limit.max_keys)
                .metrics_prefix(metrics)
                .build::<KeyValue>(client.clone())
                .map_err(|error| error.within(&format!("redis ({name})")).to_string())
        };
        let general = &config.rate_limit;
        let requests = limiter(
            "requests",
            Quota::per_second(general.requests_per_second).burst(general.burst),
            &general.metrics_prefix,
        )?;
        let uploads = limiter(
            "uploads",
            Quota::per_hour(config.jobs.uploads_per_hour),
            "pocwhisp_upload_rate_limit",
        )?;
        Ok(Some(Redis {
            cache,
            breaker,
            sessions,
            requests,
            uploads,
            instances: redis.instances,
        }))
    }

    /// Follows the other instances' deletions, calling `drop_local` with each deleted
    /// session id (`None`: every session, after messages may have been missed).
    pub(crate) fn follow_invalidations(
        self: &Arc<Self>,
        drop_local: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) -> JoinHandle<()> {
        let this = Arc::clone(self);
        self.cache
            .subscribe(move |invalidation| match invalidation {
                Invalidation::Key(id) => {
                    this.sessions.l1().invalidate(id.as_str());
                    drop_local(Some(&id));
                }
                Invalidation::All => {
                    this.sessions.l1().clear();
                    drop_local(None);
                }
            })
    }

    /// `ok` while Redis answers, else `degraded` (the server works on without it) with
    /// what that means.
    pub(crate) async fn health(&self) -> (&'static str, String) {
        use perf_cache::l2::SharedCache;
        let probe = self.cache.get("health-probe").await;
        match (probe, self.breaker.state()) {
            (Ok(_), State::Closed) => ("ok", "Redis answers; cache and limits shared".to_owned()),
            (result, state) => (
                "degraded",
                format!(
                    "Redis is down ({}; breaker {state:?}): sessions cached in this instance only, \
                     limits enforced here with 1/{} of each quota",
                    result
                        .err()
                        .map_or_else(|| "recovering".to_owned(), |error| error.to_string()),
                    self.instances
                ),
            ),
        }
    }

    /// L1 misses answered by Redis, and Redis operations that failed.
    pub(crate) fn figures(&self) -> (u64, u64) {
        (self.sessions.l2_hits(), self.sessions.l2_errors())
    }
}

/// The secret rate-limit keys are hashed with: `redis.key_secret`, else a digest of the
/// configured tokens, which every instance serving the same clients shares.
fn key_secret(config: &Config) -> Vec<u8> {
    if let Some(secret) = &config.redis.key_secret {
        return secret.expose().as_bytes().to_vec();
    }
    let auth = &config.auth;
    let mut parts: Vec<&str> = auth
        .admin_tokens
        .iter()
        .chain(&auth.api_tokens)
        .map(Secret::expose)
        .chain(auth.tokens.iter().map(|token| token.sha256.as_str()))
        .collect();
    parts.sort_unstable();
    let mut digest = Sha256::new();
    digest.update(config.redis.key_prefix.as_bytes());
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().to_vec()
}

/// A finished session as cached: the length of its owner, its owner (for the same check the
/// store makes), then the JSON the read answers with.
pub(crate) fn encode_session(owner: &str, json: &[u8]) -> Bytes {
    let mut bytes = BytesMut::with_capacity(4 + owner.len() + json.len());
    bytes.put_u32(u32::try_from(owner.len()).unwrap_or(u32::MAX));
    bytes.put_slice(owner.as_bytes());
    bytes.put_slice(json);
    bytes.freeze()
}

/// The owner and the JSON of a cached session, or `None` for bytes that are not one.
pub(crate) fn decode_session(bytes: &Bytes) -> Option<(&str, Bytes)> {
    let length = usize::try_from(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
    let owner = std::str::from_utf8(bytes.get(4..4 + length)?).ok()?;
    Some((owner, bytes.slice(4 + length..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_session_reads_back_and_damaged_bytes_are_refused() {
        let bytes = encode_session("env:api-1", b"{\"session_id\":\"x\"}");
        let (owner, json) = decode_session(&bytes).unwrap();
        assert_eq!(
            (owner, &json[..]),
            ("env:api-1", &b"{\"session_id\":\"x\"}"[..])
        );
        assert!(decode_session(&Bytes::from_static(b"\0\0\0\x09short")).is_none());
        assert!(decode_session(&Bytes::from_static(b"\0\0")).is_none());
    }

    #[test]
    fn the_key_secret_is_the_same_for_the_same_tokens_in_any_order() {
        let mut first = Config::default();
        first.auth.api_tokens = vec![Secret::new("a"), Secret::new("b")];
        let mut second = first.clone();
        second.auth.api_tokens.reverse();
        assert_eq!(key_secret(&first), key_secret(&second));
        second.auth.api_tokens.push(Secret::new("c"));
        assert_ne!(key_secret(&first), key_secret(&second));
        second.redis.key_secret = Some(Secret::new("chosen"));
        assert_eq!(key_secret(&second), b"chosen");
    }
}

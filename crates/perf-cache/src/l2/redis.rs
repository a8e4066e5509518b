//! [`SharedCache`] on Redis (feature `redis`): the L2 several processes share.
//!
//! - Values are stored in an envelope naming the envelope version and the caller's format
//!   version ([`RedisCacheBuilder::format_version`]); a value in any other format is a miss,
//!   so an instance never reads bytes written by a version it does not understand (during a
//!   rolling upgrade, say), and overwrites them with its own.
//! - A delete removes the key and publishes it on the cache's channel in one transaction;
//!   [`RedisCache::subscribe`] hands those keys to a callback that drops the local copies,
//!   so an invalidation reaches every process. While the subscription is down messages are
//!   missed, so each (re)subscription first reports [`Invalidation::All`].
//! - Redis going slow or down costs at most one timeout per operation until the
//!   [`CircuitBreaker`] around it opens; then operations fail at once (a
//!   [`TieredCache`](super::TieredCache) treats that as a miss and serves from L1 and the
//!   loader), and go back to Redis by themselves when a probe succeeds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use perf_breaker::{CallError, CircuitBreaker, State};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{SharedCache, SharedCacheError, SharedCacheFuture};
use crate::BuildError;

/// The Redis client a [`RedisCache`] is built from (the `redis` crate's).
pub use ::redis::Client;

/// The first bytes of every stored value: a marker, then the envelope's version.
const ENVELOPE: [u8; 2] = [b'P', 1];

/// An invalidation received from another process (or this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// This key was deleted.
    Key(String),
    /// Messages may have been missed (the subscription was just made or remade): drop every
    /// local copy.
    All,
}

/// A [`SharedCache`] on Redis; see the [module docs](self). `Clone` shares the connection
/// and the breaker.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    connection: ConnectionManager,
    prefix: String,
    channel: String,
    format: [u8; 4],
    timeout: Duration,
    breaker: CircuitBreaker,
}

impl RedisCache {
    /// A builder for a cache on the Redis `client` names.
    pub fn builder(client: Client) -> RedisCacheBuilder {
        RedisCacheBuilder {
            client,
            prefix: "cache".to_owned(),
            format_version: 1,
            timeout: Duration::from_millis(50),
            breaker: None,
        }
    }

    /// Whether Redis is being skipped now: the breaker around it is not closed.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.state() != State::Closed
    }

    /// The breaker around Redis.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// Follows the invalidations every process publishes, calling `on_invalidation` for each
    /// (and [`Invalidation::All`] after each (re)subscription). Runs until the returned task
    /// is aborted, resubscribing after a lost connection (every 100 ms, up to every 5 s).
    pub fn subscribe<F>(&self, on_invalidation: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Invalidation) + Send + Sync + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                if let Ok(mut pubsub) = inner.client.get_async_pubsub().await
                    && pubsub.subscribe(&inner.channel).await.is_ok()
                {
                    pause = Duration::from_millis(100);
                    on_invalidation(Invalidation::All);
                    let mut messages = std::pin::pin!(pubsub.on_message());
                    while let Some(message) =
                        std::future::poll_fn(|cx| messages.as_mut().poll_next(cx)).await
                    {
                        if let Ok(key) = message.get_payload::<String>() {
                            on_invalidation(Invalidation::Key(key));
                        }
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        })
    }

    fn name(&self, key: &str) -> String {
        let mut name = String::with_capacity(self.inner.prefix.len() + 1 + key.len());
        name.push_str(&self.inner.prefix);
        name.push(':');
        name.push_str(key);
        name
    }

    /// Runs one Redis operation through the breaker, within the timeout.
    async fn run<T, F>(
        &self,
        operation: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, SharedCacheError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &*self.inner;
        let connection = inner.connection.clone();
        let result = inner
            .breaker
            .call(|| async {
                match tokio::time::timeout(inner.timeout, operation(connection)).await {
                    Ok(result) => result.map_err(SharedCacheError::from),
                    Err(_) => Err(SharedCacheError::from(format!(
                        "Redis did not answer within {:?}",
                        inner.timeout
                    ))),
                }
            })
            .await;
        result.map_err(|error| match error {
            CallError::Rejected(open) => SharedCacheError::from(open),
            CallError::Inner(error) => error,
        })
    }

    /// The stored value if it is in this instance's format.
    fn open(&self, stored: &[u8]) -> Option<Bytes> {
        let header = ENVELOPE.len() + self.inner.format.len();
        (stored.len() >= header
            && stored[..ENVELOPE.len()] == ENVELOPE
            && stored[ENVELOPE.len()..header] == self.inner.format)
            .then(|| Bytes::copy_from_slice(&stored[header..]))
    }

    fn seal(&self, value: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(ENVELOPE.len() + 4 + value.len());
        sealed.extend_from_slice(&ENVELOPE);
        sealed.extend_from_slice(&self.inner.format);
        sealed.extend_from_slice(value);
        sealed
    }
}

impl SharedCache for RedisCache {
    fn get<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let name = self.name(key);
            let stored: Option<Vec<u8>> = self
                .run(|mut connection| async move { connection.get(name).await })
                .await?;
            Ok(stored.and_then(|stored| self.open(&stored)))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> SharedCacheFuture<'a, ()> {
        Box::pin(async move {
            let name = self.name(key);
            let sealed = self.seal(&value);
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            self.run(|mut connection| async move {
                connection.pset_ex::<_, _, ()>(name, sealed, millis).await
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, ()> {
        Box::pin(async move {
            let name = self.name(key);
            let channel = self.inner.channel.clone();
            let key = key.to_owned();
            self.run(|mut connection| async move {
                redis::pipe()
                    .atomic()
                    .del(name)
                    .ignore()
                    .publish(channel, key)
                    .ignore()
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
        })
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisCache`].
#[must_use = "builder does nothing itself, call build()"]
pub struct RedisCacheBuilder {
    client: Client,
    prefix: String,
    format_version: u32,
    timeout: Duration,
    breaker: Option<CircuitBreaker>,
}

impl RedisCacheBuilder {
    /// The prefix of the keys (default `cache`); the invalidation channel is
    /// `{prefix}:invalidate`. Processes sharing a cache share the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The version of the values' format (default 1): raise it when what is cached changes
    /// shape, and values written in another version are misses.
    pub fn format_version(mut self, version: u32) -> Self {
        self.format_version = version;
        self
    }

    /// The longest wait for one Redis operation (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The breaker around Redis (default: opens after 5 failures in a row, for 5 s); share
    /// one with the other users of the same Redis.
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The cache. The connection is made on first use and remade after failures, so a Redis
    /// that is down at start is not an error.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an empty prefix, a zero timeout, or no Tokio runtime to run the
    /// connection on.
    pub fn build(self) -> Result<RedisCache, BuildError> {
        if self.prefix.is_empty() {
            return Err(BuildError::new("prefix", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(BuildError::new("timeout", "must be longer than zero"));
        }
        let breaker = match self.breaker {
            Some(breaker) => breaker,
            None => CircuitBreaker::builder()
                .name("redis")
                .failure_threshold(5)
                .open_duration(Duration::from_secs(5))
                .build()
                .map_err(|error| BuildError::new("breaker", error.to_string()))?,
        };
        let connection = perf_core::redis::lazy_connection(self.client.clone(), self.timeout)?;
        Ok(RedisCache {
            inner: Arc::new(Inner {
                client: self.client,
                connection,
                channel: format!("{}:invalidate", self.prefix),
                prefix: self.prefix,
                format: self.format_version.to_be_bytes(),
                timeout: self.timeout,
                breaker,
            }),
        })
    }
}

impl fmt::Debug for RedisCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheBuilder")
            .field("prefix", &self.prefix)
            .field("format_version", &self.format_version)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

//! The server's configuration: the model (this file, with its defaults), loading it
//! from a YAML file, its `environments:` section, `POCWHISP_*` variables and flags
//! ([`load`]), and the checks serde cannot express ([`Config::validate`]).
//!
//! Every struct refuses unknown keys, so a misspelt key is an error at start that names it,
//! not a setting silently ignored.

mod load;
mod redact;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use perf_middleware::load_shed::LoadShedConfig;
use perf_middleware::rate_limit::RateLimitConfig;
use serde::{Deserialize, Serialize};

pub use load::{ConfigError, Overrides, load, masked_yaml};
pub use redact::redacted_url;
pub(crate) use units::split_secrets;
pub use units::{ByteSize, Secret};

/// Where the server runs; selects the `environments:` overrides and some defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// A developer's machine: a generated admin token when none is configured.
    #[default]
    Development,
    /// A production-like deployment for testing.
    Staging,
    /// Production: larger pools and a slower sampling interval.
    Production,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which environment this is (`POCWHISP_ENV`).
    pub environment: Environment,
    /// Listening and connections.
    pub server: ServerConfig,
    /// Log lines.
    pub log: LogConfig,
    /// Bearer tokens.
    pub auth: AuthConfig,
    /// PostgreSQL, when set; otherwise the embedded store in the data directory.
    pub database: DatabaseConfig,
    /// Redis, when set: the cache and the rate limits shared between instances.
    pub redis: RedisConfig,
    /// The pool that runs transcription jobs.
    pub request_pool: RequestPoolConfig,
    /// The response cache and its warm-up.
    pub cache: CacheConfig,
    /// Response compression and validators.
    pub response: ResponseConfig,
    /// Per-client rate limits (perf-middleware's own configuration).
    pub rate_limit: RateLimitConfig,
    /// Load shedding (perf-middleware's own configuration).
    pub load_shed: LoadShedConfig,
    /// Circuit breakers around dependencies.
    pub breaker: BreakerConfig,
    /// Sampling and history.
    pub monitoring: MonitoringConfig,
    /// The memory guard.
    pub memory: MemoryConfig,
    /// Health thresholds.
    pub thresholds: ThresholdsConfig,
    /// The speech engine.
    pub engine: EngineConfig,
    /// Where the Whisper models are installed.
    pub models: ModelsConfig,
    /// Upload limits.
    pub audio: AudioConfig,
    /// Transcription jobs.
    pub jobs: JobsConfig,
    /// Alert rules over the profiler's figures, and where to send alerts.
    pub alerts: AlertsConfig,
    /// Overrides per environment, merged over the rest of the file.
    #[serde(skip_serializing)]
    pub environments: BTreeMap<Environment, serde_yaml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config::for_environment(Environment::Development)
    }
}

impl Config {
    /// Jobs decoded at once in this process: `request_pool.workers`, or the engine's choice
    /// when it is 0.
    pub fn workers(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        match (self.request_pool.workers, self.engine.kind) {
            (0, EngineKind::Whisper | EngineKind::Auto) => {
                WhisperEngineConfig::default_workers(cores)
            }
            (0, _) => cores,
            (workers, _) => workers,
        }
    }

    /// The defaults of `environment` (production has larger pools and
    /// samples less often).
    pub fn for_environment(environment: Environment) -> Self {
        let production = environment == Environment::Production;
        Config {
            environment,
            server: ServerConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            database: DatabaseConfig {
                max_open_conns: if production { 100 } else { 25 },
                max_idle_conns: if production { 10 } else { 5 },
                ..DatabaseConfig::default()
            },
            redis: RedisConfig::default(),
            request_pool: RequestPoolConfig::default(),
            cache: CacheConfig::default(),
            response: ResponseConfig::default(),
            rate_limit: RateLimitConfig {
                metrics_prefix: "pocwhisp_rate_limit".to_owned(),
                ..RateLimitConfig::default()
            },
            load_shed: LoadShedConfig {
                max_in_flight: 1000,
                low_priority_paths: vec!["POST /api/v1/transcribe".to_owned()],
                metrics_prefix: "pocwhisp_load_shed".to_owned(),
                ..LoadShedConfig::default()
            },
            breaker: BreakerConfig::default(),
            monitoring: MonitoringConfig {
                metrics_update_interval: Duration::from_secs(if production { 30 } else { 10 }),
                ..MonitoringConfig::default()
            },
            memory: MemoryConfig {
                limit: if production {
                    MemoryLimit::Auto
                } else {
                    MemoryLimit::Unset
                },
            },
            thresholds: ThresholdsConfig::default(),
            engine: EngineConfig::default(),
            models: ModelsConfig::default(),
            audio: AudioConfig::default(),
            jobs: JobsConfig::default(),
            alerts: AlertsConfig::default(),
            environments: BTreeMap::new(),
        }
    }

    /// The checks that need more than one field or more than a type.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key and what was expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, expected: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                expected: expected.to_owned(),
            })
        };
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "at least 1");
        }
        if self.server.max_header_bytes.0 < 8192 {
            return invalid("server.max_header_bytes", "at least 8KiB");
        }
        for (key, value) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.request_timeout", self.server.request_timeout),
            ("server.body_read_timeout", self.server.body_read_timeout),
            (
                "monitoring.metrics_update_interval",
                self.monitoring.metrics_update_interval,
            ),
            ("jobs.lease", self.jobs.lease),
        ] {
            if value.is_zero() {
                return invalid(key, "a duration longer than zero");
            }
        }
        if self.monitoring.retention < self.monitoring.metrics_update_interval {
            return invalid(
                "monitoring.retention",
                "at least one metrics_update_interval",
            );
        }
        if self.request_pool.max_concurrent == 0 || self.request_pool.queue_size == 0 {
            return invalid(
                "request_pool.max_concurrent",
                "at least 1 (and queue_size at least 1)",
            );
        }
        if !(0.0..=1.0).contains(&self.cache.hit_rate_target) {
            return invalid("cache.hit_rate_target", "a share between 0 and 1");
        }
        if self.response.compression_level > 9 {
            return invalid("response.compression_level", "0 to 9");
        }
        if self.audio.min_duration >= self.audio.max_duration {
            return invalid("audio.min_duration", "shorter than audio.max_duration");
        }
        if !(1..=2).contains(&self.audio.max_channels) {
            return invalid("audio.max_channels", "1 or 2");
        }
        if self.jobs.max_attempts == 0 {
            return invalid("jobs.max_attempts", "at least 1");
        }
        let remote = &self.engine.openai;
        let whisper = &self.engine.whisper;
        if crate::models::spec(&whisper.model).is_none() {
            return invalid(
                "engine.whisper.model",
                &format!("a model of the catalog: {}", crate::models::names()),
            );
        }
        if !(1..=16).contains(&whisper.beam_size) || !(1..=16).contains(&whisper.best_of) {
            return invalid("engine.whisper", "beam_size and best_of from 1 to 16");
        }
        if self.engine.kind == EngineKind::Openai && remote.endpoints.is_empty() {
            return invalid(
                "engine.openai.endpoints",
                "at least one server when engine.kind is openai",
            );
        }
        for endpoint in &remote.endpoints {
            if !endpoint.url.starts_with("http://") {
                return invalid(
                    "engine.openai.endpoints.url",
                    "an http:// URL (this build has no TLS client: put a TLS proxy in front of an https server)",
                );
            }
        }
        if let Err(error) = remote.breaker.validate() {
            return invalid(
                &format!("engine.openai.breaker.{}", error.field()),
                error.reason(),
            );
        }
        if remote.max_concurrent == 0 || remote.timeout.is_zero() || remote.retry.tries == 0 {
            return invalid(
                "engine.openai",
                "max_concurrent, timeout and retry.tries of at least 1",
            );
        }
        if !(0.0..=10.0).contains(&remote.retry_budget) {
            return invalid("engine.openai.retry_budget", "a share from 0 to 10");
        }
        for rule in &self.alerts.rules {
            if rule.above.is_some() == rule.below.is_some() {
                return invalid(
                    "alerts.rules",
                    "each rule with one of `above` or `below` (a level)",
                );
            }
        }
        if let Some(url) = &self.alerts.webhook_url
            && !url.starts_with("http://")
        {
            return invalid(
                "alerts.webhook_url",
                "an http:// URL (this build has no TLS client)",
            );
        }
        if let Err(error) = self.database.breaker.validate() {
            return invalid(
                &format!("database.breaker.{}", error.field()),
                error.reason(),
            );
        }
        if self.redis.instances == 0 {
            return invalid("redis.instances", "at least 1");
        }
        if self.redis.timeout.is_zero() {
            return invalid("redis.timeout", "longer than zero");
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(char::is_whitespace) {
            return invalid("redis.key_prefix", "a non-empty name without spaces");
        }
        if let Some(url) = &self.redis.url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("unix://"))
        {
            return invalid(
                "redis.url",
                "a redis:// (or unix://) URL (this build has no TLS client)",
            );
        }
        if let Err(error) = self.redis.breaker.validate() {
            return invalid(&format!("redis.breaker.{}", error.field()), error.reason());
        }
        if self.jobs.uploads_per_hour == 0 {
            return invalid("jobs.uploads_per_hour", "at least 1");
        }
        if !self.jobs.callback_hosts.is_empty() && self.jobs.callback_secret.is_none() {
            return invalid(
                "jobs.callback_secret",
                "a key to sign callbacks with when jobs.callback_hosts is set",
            );
        }
        for token in &self.auth.tokens {
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    "auth.tokens.sha256",
                    "the SHA-256 of the token as 64 hex digits (`printf %s TOKEN | sha256sum`)",
                );
            }
        }
        Ok(())
    }
}

/// Listening and connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on (`POCWHISP_LISTEN`, `--listen`).
    pub listen: SocketAddr,
    /// Where the embedded store and the audio live (`POCWHISP_DATA_DIR`, `--data-dir`).
    pub data_dir: PathBuf,
    /// Space kept in the data directory for deleting sessions and finishing jobs once the
    /// disk is full (0: none); while it is in use, uploads are refused (507).
    pub disk_reserve: ByteSize,
    /// A client has this long to send a request's headers.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The request line and headers together may not exceed this (431 otherwise).
    pub max_header_bytes: ByteSize,
    /// Keep connections open between requests.
    pub keep_alive: bool,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are closed as they are
    /// accepted (0: no cap; behind a reverse proxy every client has the proxy's address).
    pub max_connections_per_client: usize,
    /// A request body must begin within this long of the server starting to read it...
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// ...and then arrive at least this fast on average, per second (0: no rate; each byte
    /// earns time, so a large upload at a good pace is never cut). Answered 408.
    pub min_body_rate: ByteSize,
    /// The deadline of a request (answered 504), uploads excepted.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            disk_reserve: ByteSize(32 << 20),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: ByteSize(64 << 10),
            keep_alive: true,
            max_connections: 10_000,
            max_connections_per_client: 256,
            body_read_timeout: Duration::from_secs(30),
            min_body_rate: ByteSize(1 << 10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json` (`--log-format`).
    pub format: LogFormat,
    /// A tracing filter (`info`, `pocwhisp_server=debug`); `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// A role a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Transcription routes.
    User,
    /// Everything: performance, cache, debug and metrics routes too.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::User => "user",
            Role::Admin => "admin",
        })
    }
}

/// A token configured by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (an identity in logs and rate limits).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
}

/// Bearer tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens stored as hashes.
    pub tokens: Vec<TokenConfig>,
    /// Admin tokens in clear (`POCWHISP_ADMIN_TOKEN`, one or several separated by commas).
    #[serde(deserialize_with = "units::comma_separated")]
    pub admin_tokens: Vec<Secret>,
    /// User tokens in clear (`POCWHISP_API_TOKEN`, likewise).
    #[serde(deserialize_with = "units::comma_separated")]
    pub api_tokens: Vec<Secret>,
}

/// PostgreSQL, when `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db` (`POCWHISP_DATABASE_URL`); unset for the embedded
    /// store.
    pub url: Option<Secret>,
    /// Connections open at most.
    pub max_open_conns: usize,
    /// Idle connections kept at most.
    pub max_idle_conns: usize,
    /// A connection older than this is replaced.
    #[serde(with = "humantime_serde")]
    pub conn_max_lifetime: Duration,
    /// A connection idle longer than this is closed.
    #[serde(with = "humantime_serde")]
    pub conn_max_idle_time: Duration,
    /// The server cancels statements running longer than this.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Queries slower than this are counted as slow.
    #[serde(with = "humantime_serde")]
    pub slow_query_threshold: Duration,
    /// The circuit breaker around the store: it counts the database being unreachable
    /// (not a missing row) and, once open, answers 503 at once instead of queueing.
    pub breaker: perf_breaker::Config,
}

/// The defaults of a breaker around a dependency (the database, Redis): 5
/// consecutive failures, open for 5 s at first (a restart takes seconds), growing to a
/// minute while it stays down.
fn dependency_breaker(name: &str) -> perf_breaker::Config {
    let mut breaker = perf_breaker::Config::default();
    breaker.open_duration = Duration::from_secs(5);
    breaker.max_open_duration = Duration::from_secs(60);
    breaker.name = name.to_owned();
    breaker.metrics_prefix = "pocwhisp_breaker".to_owned();
    breaker
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_open_conns: 25,
            max_idle_conns: 5,
            conn_max_lifetime: Duration::from_secs(3600),
            conn_max_idle_time: Duration::from_secs(600),
            statement_timeout: Duration::from_secs(30),
            slow_query_threshold: Duration::from_millis(100),
            breaker: dependency_breaker("database"),
        }
    }
}

/// Redis, when `url` is set: instances pointed at the same Redis and `key_prefix` share the
/// session cache (a delete on one reaches all within a second) and the rate limits (one quota
/// between them). Without it each instance caches and limits on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host[:port][/db]` (`POCWHISP_REDIS_URL`); unset: nothing shared.
    pub url: Option<Secret>,
    /// The prefix of every key and channel this deployment uses.
    pub key_prefix: String,
    /// How many instances share the quotas: while Redis is down each enforces its share.
    pub instances: u32,
    /// The longest wait for Redis on one operation before deciding without it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The secret rate-limit keys (tokens, identities) are hashed with, the same on every
    /// instance; unset: derived from the configured tokens, which the instances share.
    pub key_secret: Option<Secret>,
    /// The breaker around Redis: once open, the cache serves from memory and the limits
    /// are enforced locally at once instead of waiting on Redis.
    pub breaker: perf_breaker::Config,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            key_prefix: "pocwhisp".to_owned(),
            instances: 1,
            timeout: Duration::from_millis(50),
            key_secret: None,
            breaker: dependency_breaker("redis"),
        }
    }
}

/// The pool that runs transcription jobs (`request_pool`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestPoolConfig {
    /// Tasks running at once.
    pub max_concurrent: usize,
    /// Tasks waiting at most.
    pub queue_size: usize,
    /// Jobs decoded at once; 0 for the engine's choice: one per core for PocketSphinx and the
    /// remote engine, one per four cores for Whisper (whose workers each decode with several
    /// threads: `engine.whisper.threads`).
    pub workers: usize,
    /// Longest wait in the queue.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for RequestPoolConfig {
    fn default() -> Self {
        RequestPoolConfig {
            max_concurrent: 1000,
            queue_size: 5000,
            workers: 0,
            queue_timeout: Duration::from_secs(300),
        }
    }
}

/// The response cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The hit rate the health check expects.
    pub hit_rate_target: f64,
    /// Time between warm-up runs.
    #[serde(with = "humantime_serde")]
    pub warmup_schedule: Duration,
    /// Keep compressed variants of cached responses.
    pub compression_enabled: bool,
    /// Bytes of responses kept at most.
    pub capacity: ByteSize,
    /// Lifetime of a cached response.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            hit_rate_target: 0.85,
            warmup_schedule: Duration::from_secs(300),
            compression_enabled: true,
            capacity: ByteSize::mib(64),
            ttl: Duration::from_secs(300),
        }
    }
}

/// Response compression and validators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    /// Bodies smaller than this are sent as they are.
    pub compression_min_size: usize,
    /// gzip level, 0 to 9.
    pub compression_level: u32,
    /// ETags and `304 Not Modified` on cached reads.
    pub enable_etag: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            compression_min_size: 1024,
            compression_level: 6,
            enable_etag: true,
        }
    }
}

/// Circuit breakers around dependencies (the store, remote engines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open a breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    #[serde(with = "humantime_serde")]
    pub reset_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
        }
    }
}

/// Sampling and history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Time between snapshots.
    #[serde(with = "humantime_serde")]
    pub metrics_update_interval: Duration,
    /// Requests slower than this are logged at warn.
    #[serde(with = "humantime_serde")]
    pub slow_request_threshold: Duration,
    /// How much history to keep.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            metrics_update_interval: Duration::from_secs(10),
            slow_request_threshold: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The memory limit: none, the container's (`auto`), or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryLimit {
    /// No guard.
    #[default]
    Unset,
    /// 90 % of the cgroup's limit, if the process runs under one.
    Auto,
    /// This many bytes.
    Bytes(ByteSize),
}

impl Serialize for MemoryLimit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MemoryLimit::Unset => serializer.serialize_none(),
            MemoryLimit::Auto => serializer.serialize_str("auto"),
            MemoryLimit::Bytes(bytes) => bytes.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Keyword(String),
            Number(u64),
        }
        match Option::<Written>::deserialize(deserializer)? {
            None => Ok(MemoryLimit::Unset),
            Some(Written::Number(bytes)) => Ok(MemoryLimit::Bytes(ByteSize(bytes))),
            Some(Written::Keyword(text)) if text.eq_ignore_ascii_case("auto") => {
                Ok(MemoryLimit::Auto)
            }
            Some(Written::Keyword(text)) if text.eq_ignore_ascii_case("none") => {
                Ok(MemoryLimit::Unset)
            }
            Some(Written::Keyword(text)) => text
                .parse()
                .map(MemoryLimit::Bytes)
                .map_err(|reason| serde::de::Error::custom(format!("{reason}, `auto` or `none`"))),
        }
    }
}

/// The memory guard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Above this, the server purges allocator arenas, shrinks caches and refuses new
    /// uploads (503) until it is back under.
    pub limit: MemoryLimit,
}

/// Warning and critical levels of one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    /// The warning level.
    pub warning: f64,
    /// The critical level.
    pub critical: f64,
}

/// Health thresholds: when a figure is a warning and when critical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// P95 latency, milliseconds (bad above).
    pub latency_p95_ms: Levels,
    /// CPU, percent of one core (bad above).
    pub cpu_percent: Levels,
    /// Resident memory, percent of the limit (bad above).
    pub memory_percent: Levels,
    /// Cache hit rate, a share (bad below).
    pub cache_hit_rate: Levels,
    /// Error rate, a share (bad above).
    pub error_rate: Levels,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        ThresholdsConfig {
            latency_p95_ms: Levels {
                warning: 500.0,
                critical: 1000.0,
            },
            cpu_percent: Levels {
                warning: 80.0,
                critical: 90.0,
            },
            memory_percent: Levels {
                warning: 90.0,
                critical: 95.0,
            },
            cache_hit_rate: Levels {
                warning: 0.70,
                critical: 0.50,
            },
            error_rate: Levels {
                warning: 0.02,
                critical: 0.05,
            },
        }
    }
}

/// Which speech engine transcribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// OpenAI's Whisper in this process (whisper.cpp), with the model `engine.whisper.model`
    /// installed by `pocwhisp-server models install`. Without a verified model the server
    /// starts degraded: reads work, uploads are refused with the command that fixes it.
    #[default]
    Whisper,
    /// Whisper when its model is installed, else PocketSphinx when its library is found,
    /// else none.
    Auto,
    /// CMU PocketSphinx from Debian's packages; an error at start if it is missing.
    Sphinx,
    /// OpenAI-compatible servers (`engine.openai.endpoints`): whisper.cpp's server,
    /// faster-whisper servers, vLLM, another PocWhisp.
    Openai,
    /// No engine: uploads are refused with 503 and the fix.
    None,
}

/// The speech engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `whisper`, `auto`, `sphinx`, `openai` or `none` (`POCWHISP_ENGINE`).
    pub kind: EngineKind,
    /// The Whisper engine's model and threads.
    pub whisper: WhisperEngineConfig,
    /// PocketSphinx's acoustic model, language model and dictionary.
    pub sphinx_model_dir: PathBuf,
    /// The remote engine's servers and how they are called.
    pub openai: OpenAiEngineConfig,
}

/// The remote engine: one or more OpenAI-compatible servers, each behind its own breaker,
/// balanced by load (peak EWMA), with a timeout per request and retries under a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiEngineConfig {
    /// The servers, by base URL (`http://host:port`; `/v1/audio/transcriptions` is added).
    pub endpoints: Vec<RemoteEndpoint>,
    /// The model asked of them, and the one name `/v1/models` lists.
    pub model: String,
    /// The longest a request may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Each server's breaker (3 failures in a row or half of
    /// the last 20 calls).
    pub breaker: perf_breaker::Config,
    /// Requests in flight to one server at most.
    pub max_concurrent: usize,
    /// Retries: 5 tries from 1 s to 30 s, ±25 %.
    pub retry: perf_breaker::retry::Retry,
    /// The retries allowed on top of the requests, as a share of them (the retry budget).
    pub retry_budget: f32,
}

/// One remote server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteEndpoint {
    /// `http://host:port`.
    pub url: String,
    /// Sent as `Authorization: Bearer <key>`.
    #[serde(default)]
    pub api_key: Option<Secret>,
}

/// The remote breaker's defaults.
fn engine_breaker() -> perf_breaker::Config {
    let mut breaker = perf_breaker::Config::default();
    breaker.failure_threshold = 3;
    breaker.failure_rate = Some(
        perf_breaker::FailureRate::new(0.5, perf_breaker::SlidingWindow::Count(20))
            .minimum_calls(10),
    );
    breaker.open_duration = Duration::from_secs(30);
    breaker.max_open_duration = Duration::from_secs(300);
    breaker.name = "engine".to_owned();
    breaker.metrics_prefix = "pocwhisp_breaker".to_owned();
    breaker
}

impl Default for OpenAiEngineConfig {
    fn default() -> Self {
        OpenAiEngineConfig {
            endpoints: Vec::new(),
            model: "whisper-1".to_owned(),
            timeout: Duration::from_secs(120),
            breaker: engine_breaker(),
            max_concurrent: 10,
            retry: perf_breaker::retry::Retry::new(
                5,
                Duration::from_secs(1),
                Duration::from_secs(30),
            ),
            retry_budget: 0.2,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kind: EngineKind::Whisper,
            whisper: WhisperEngineConfig::default(),
            sphinx_model_dir: PathBuf::from("/usr/share/pocketsphinx/model/en-us"),
            openai: OpenAiEngineConfig::default(),
        }
    }
}

/// The Whisper engine. Its workers are `request_pool.workers` (jobs run at once); each has
/// its own decoding state over the one shared model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhisperEngineConfig {
    /// The model, by its catalog name (`pocwhisp-server models list`).
    pub model: String,
    /// Threads each worker decodes with; 0 shares the cores between the workers.
    pub threads: usize,
    /// Beams of the beam search at temperature 0 (1: greedy, faster, a little less
    /// accurate); OpenAI's transcriber and faster-whisper use 5.
    pub beam_size: usize,
    /// Candidates sampled at each fallback temperature above 0.
    pub best_of: usize,
    /// How much audio the encoder takes in to find the words of a clip shorter than
    /// Whisper's 30-second window.
    pub window: WhisperWindow,
}

/// How much audio Whisper's encoder takes in to find the words of a short clip (the
/// language is always detected from the clip's own length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhisperWindow {
    /// The whole 30-second window, the clip padded with silence, as OpenAI's transcriber
    /// and faster-whisper encode.
    #[default]
    Full,
    /// The clip's own length and a second: several times faster on short clips, and a word
    /// or two per hundred heard differently on the recordings here (docs/PERFORMANCE.md).
    Fitted,
}

impl fmt::Display for WhisperWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WhisperWindow::Full => "full",
            WhisperWindow::Fitted => "fitted",
        })
    }
}

impl Default for WhisperEngineConfig {
    fn default() -> Self {
        WhisperEngineConfig {
            model: "base".to_owned(),
            threads: 0,
            beam_size: 5,
            best_of: 5,
            window: WhisperWindow::Full,
        }
    }
}

impl WhisperEngineConfig {
    /// Workers when `request_pool.workers` is 0: one per four cores. A job's latency falls
    /// with the threads it decodes with: on 2 cores two workers of one thread each took twice
    /// as long per file as one of two threads, for no more throughput (docs/PERFORMANCE.md).
    /// Four threads a worker on larger machines is a choice, not yet measured here.
    pub fn default_workers(cores: usize) -> usize {
        (cores / 4).max(1)
    }

    /// The threads each of `workers` decodes with.
    pub fn threads_per_worker(&self, workers: usize) -> usize {
        match self.threads {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, usize::from);
                (cores / workers.max(1)).max(1)
            }
            threads => threads,
        }
    }
}

/// Where models live.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// One directory for every data directory and instance on the machine
    /// (`POCWHISP_MODELS_DIR`); unset, the user's cache directory
    /// (`$XDG_CACHE_HOME/pocwhisp/models`, else `~/.cache/pocwhisp/models`).
    pub dir: Option<PathBuf>,
}

impl ModelsConfig {
    /// The directory models are installed in and loaded from.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(crate::models::default_dir)
    }
}

/// Upload limits (the original's WAV checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// The largest upload.
    pub max_upload: ByteSize,
    /// The shortest audio accepted.
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    /// The longest audio accepted.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// 1 or 2: the channels kept apart, each a speaker. A file with more (up to 8) is mixed
    /// down to one channel.
    pub max_channels: u16,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            max_upload: ByteSize::gib(1),
            min_duration: Duration::from_secs(1),
            max_duration: Duration::from_secs(30 * 60),
            max_channels: 2,
        }
    }
}

/// Transcription jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// How long `?mode=sync` waits for the result before answering 202.
    #[serde(with = "humantime_serde")]
    pub sync_wait: Duration,
    /// A claimed job is another worker's to take once this passes without a renewal.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Attempts before a job is `failed`.
    pub max_attempts: u32,
    /// Uploads each caller may make an hour (in a burst, then one every hour / this); the
    /// original's transcription preset was 50.
    pub uploads_per_hour: u32,
    /// Jobs one user may have queued or running at once; more uploads are refused (429)
    /// until some finish (0: no limit). Admins are not limited.
    pub max_unfinished_per_user: u32,
    /// Hosts a `callback_url` may point at; nothing else is ever called.
    pub callback_hosts: Vec<String>,
    /// The key callbacks are signed with (HMAC-SHA256); without it, no callbacks.
    pub callback_secret: Option<Secret>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            sync_wait: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            max_attempts: 3,
            uploads_per_hour: 50,
            max_unfinished_per_user: 20,
            callback_hosts: Vec::new(),
            callback_secret: None,
        }
    }
}

/// Alerts: rules over the profiler's figures, evaluated at every sample with a hold time
/// (a value flapping around the level raises one alert), and a webhook told of each alert
/// firing or resolving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// `http://...`: each alert firing or resolving is POSTed there as JSON.
    pub webhook_url: Option<String>,
    /// The rules; the defaults are the original's.
    pub rules: Vec<AlertRuleConfig>,
}

/// One alert rule: `metric` at or past a level for `for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// The alert's name.
    pub name: String,
    /// A figure of the snapshot (`cpu_usage_percent`, `request_latency_p95_ms`, ...).
    pub metric: String,
    /// Fires at or above this level...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// ... or at or below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// `warning` or `critical`.
    pub severity: AlertSeverity,
    /// How long the condition must hold before the alert fires (and be clear before it
    /// resolves).
    #[serde(rename = "for", with = "humantime_serde")]
    pub hold: Duration,
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

impl Default for AlertsConfig {
    /// The original's rules: CPU above 90 % and memory above 95 % critical, P95 latency
    /// above 1000 ms and errors above 5 % warnings, each held for a minute.
    fn default() -> Self {
        let rule = |name: &str, metric: &str, above: f64, severity| AlertRuleConfig {
            name: name.to_owned(),
            metric: metric.to_owned(),
            above: Some(above),
            below: None,
            severity,
            hold: Duration::from_secs(60),
        };
        AlertsConfig {
            webhook_url: None,
            rules: vec![
                rule(
                    "high_cpu",
                    "cpu_usage_percent",
                    90.0,
                    AlertSeverity::Critical,
                ),
                rule(
                    "high_memory",
                    "memory_usage_percent",
                    95.0,
                    AlertSeverity::Critical,
                ),
                rule(
                    "slow_responses",
                    "request_latency_p95_ms",
                    1000.0,
                    AlertSeverity::Warning,
                ),
                rule(
                    "high_error_rate",
                    "error_rate",
                    0.05,
                    AlertSeverity::Warning,
                ),
            ],
        }
    }
}

use std::str::FromStr;
use std::time::Duration;

use crate::BuildError;

/// Settings of a [`PgPool`](super::PgPool), with Go's `database/sql` knobs.
///
/// | field | default | Go |
/// |---|---|---|
/// | `url` | none: required (`postgres://user@host:5432/db`) | |
/// | `max_open_conns` | 25 | `SetMaxOpenConns` |
/// | `max_idle_conns` | 5 | `SetMaxIdleConns` |
/// | `min_idle_conns` | 0: connections opened at start and kept | |
/// | `conn_max_lifetime` | 1 h | `SetConnMaxLifetime` |
/// | `conn_max_idle_time` | 10 min | `SetConnMaxIdleTime` |
/// | `wait_timeout`, `create_timeout`, `recycle_timeout` | 5 s each, so `get()` never hangs | |
/// | `statement_timeout` | 30 s, set on every connection | |
/// | `statement_cache_size` | 128 prepared statements per connection | |
/// | `slow_query_threshold` | 100 ms | |
/// | `reaper_interval` | 30 s between sweeps of expired and surplus idle connections; `None` checks at checkout only | |
/// | `verify_on_checkout` | false: a reused connection is checked for a closed socket only; true runs a query on every checkout (a round trip) | |
/// | `name`, `metrics_prefix` | `postgres`, `db_pool`: the `pool` label and prefix of the metrics | |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PgPoolConfig {
    /// The connection URL or key-value string.
    pub url: String,
    /// Connections open at most, idle and in use.
    pub max_open_conns: usize,
    /// Idle connections kept at most; the reaper closes the surplus.
    pub max_idle_conns: usize,
    /// Connections opened at start.
    pub min_idle_conns: usize,
    /// A connection older than this is closed instead of reused.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub conn_max_lifetime: Option<Duration>,
    /// A connection idle longer than this is closed instead of reused.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub conn_max_idle_time: Option<Duration>,
    /// The longest wait for a connection when all are in use.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub wait_timeout: Duration,
    /// The longest wait for a new connection to open.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub create_timeout: Duration,
    /// The longest wait for a reused connection's health check.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub recycle_timeout: Duration,
    /// The server cancels statements running longer than this.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub statement_timeout: Option<Duration>,
    /// Prepared statements cached per connection; the cache is emptied when full.
    pub statement_cache_size: usize,
    /// Queries slower than this are counted as slow.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub slow_query_threshold: Duration,
    /// How often idle connections are swept; `None` for no reaper task.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub reaper_interval: Option<Duration>,
    /// Run a query on every reused connection before handing it out.
    pub verify_on_checkout: bool,
    /// The `pool` label on the metrics.
    pub name: String,
    /// Prefix of the metrics.
    pub metrics_prefix: String,
}

impl Default for PgPoolConfig {
    fn default() -> Self {
        PgPoolConfig {
            url: String::new(),
            max_open_conns: 25,
            max_idle_conns: 5,
            min_idle_conns: 0,
            conn_max_lifetime: Some(Duration::from_secs(3600)),
            conn_max_idle_time: Some(Duration::from_secs(600)),
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            statement_cache_size: 128,
            slow_query_threshold: Duration::from_millis(100),
            reaper_interval: Some(Duration::from_secs(30)),
            verify_on_checkout: false,
            name: "postgres".to_owned(),
            metrics_prefix: "db_pool".to_owned(),
        }
    }
}

impl PgPoolConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgPoolConfig {
            url: url.into(),
            ..PgPoolConfig::default()
        }
    }

    /// Checks the settings and parses the URL.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<tokio_postgres::Config, BuildError> {
        if self.url.trim().is_empty() {
            return Err(BuildError::new("url", "is required"));
        }
        let mut pg = tokio_postgres::Config::from_str(&self.url)
            .map_err(|error| BuildError::new("url", format!("is not a PostgreSQL URL: {error}")))?;
        if self.max_open_conns == 0 {
            return Err(BuildError::new("max_open_conns", "must be at least 1"));
        }
        if self.max_idle_conns > self.max_open_conns {
            return Err(BuildError::new(
                "max_idle_conns",
                "must not exceed max_open_conns",
            ));
        }
        if self.min_idle_conns > self.max_idle_conns {
            return Err(BuildError::new(
                "min_idle_conns",
                "must not exceed max_idle_conns",
            ));
        }
        for (field, timeout) in [
            ("wait_timeout", self.wait_timeout),
            ("create_timeout", self.create_timeout),
            ("recycle_timeout", self.recycle_timeout),
        ] {
            if timeout.is_zero() {
                return Err(BuildError::new(field, "must be longer than zero"));
            }
        }
        for (field, duration) in [
            ("conn_max_lifetime", self.conn_max_lifetime),
            ("conn_max_idle_time", self.conn_max_idle_time),
            ("reaper_interval", self.reaper_interval),
        ] {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(BuildError::new(
                    field,
                    "must be longer than zero (leave it unset to turn the limit off)",
                ));
            }
        }
        if let Some(timeout) = self.statement_timeout {
            // Added to the URL's own `options`, which carry the user's settings (a search
            // path, a role): replacing them would drop those silently.
            let ours = format!("-c statement_timeout={}", timeout.as_millis());
            let options = match pg.get_options() {
                Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
                _ => ours,
            };
            pg.options(options);
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &self.metrics_prefix)?;
        pg.connect_timeout(self.create_timeout);
        Ok(pg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_timeout_is_added_to_the_urls_options() {
        let config =
            PgPoolConfig::new("postgres://u@localhost/db?options=-c%20search_path%3Dtenant_7");
        let pg = config.validate().unwrap();
        assert_eq!(
            pg.get_options(),
            Some("-c search_path=tenant_7 -c statement_timeout=30000")
        );
        let plain = PgPoolConfig::new("postgres://u@localhost/db")
            .validate()
            .unwrap();
        assert_eq!(plain.get_options(), Some("-c statement_timeout=30000"));
        let off = PgPoolConfig {
            statement_timeout: None,
            ..PgPoolConfig::new("host=localhost options='-c work_mem=64MB'")
        };
        assert_eq!(
            off.validate().unwrap().get_options(),
            Some("-c work_mem=64MB")
        );
    }
}

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{Object, Pool};
use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use perf_core::clock::{Clock, FastClock};
use perf_core::sync::lock;
use tokio::task::AbortHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use super::manager::{Connection, PgManager, Shared};
use super::stats::{PgCounters, PgPoolStats, PgTelemetry};
use super::{PgPoolConfig, PgPoolError};
use crate::BuildError;

/// A PostgreSQL pool on deadpool-postgres with Go's `database/sql` limits; `Clone` shares it.
///
/// See [`PgPoolConfig`] for the knobs. Every wait is bounded (`get()` never hangs), expired
/// connections are refused at checkout and swept by the reaper, the idle surplus is closed,
/// `min_idle_conns` are opened at start and kept, and queries through [`PgConn`] use a
/// bounded statement cache and count slow queries.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<PgManager>,
    config: PgPoolConfig,
    telemetry: PgTelemetry,
    reaper: Mutex<Option<AbortHandle>>,
}

/// Builds a [`PgPool`]: a [`PgPoolConfig`] set field by field, then connected.
#[derive(Debug, Clone)]
#[must_use = "builder does nothing itself, call connect()"]
pub struct PgPoolBuilder {
    config: PgPoolConfig,
}

impl PgPoolBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: PgPoolConfig) -> Self {
        PgPoolBuilder { config }
    }

    /// See [`PgPoolConfig::max_open_conns`].
    pub fn max_open_conns(mut self, conns: usize) -> Self {
        self.config.max_open_conns = conns;
        self
    }

    /// See [`PgPoolConfig::max_idle_conns`].
    pub fn max_idle_conns(mut self, conns: usize) -> Self {
        self.config.max_idle_conns = conns;
        self
    }

    /// See [`PgPoolConfig::min_idle_conns`].
    pub fn min_idle_conns(mut self, conns: usize) -> Self {
        self.config.min_idle_conns = conns;
        self
    }

    /// See [`PgPoolConfig::conn_max_lifetime`].
    pub fn conn_max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.conn_max_lifetime = lifetime;
        self
    }

    /// See [`PgPoolConfig::conn_max_idle_time`].
    pub fn conn_max_idle_time(mut self, idle: Option<Duration>) -> Self {
        self.config.conn_max_idle_time = idle;
        self
    }

    /// See [`PgPoolConfig::wait_timeout`].
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.wait_timeout = timeout;
        self
    }

    /// See [`PgPoolConfig::create_timeout`].
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.config.create_timeout = timeout;
        self
    }

    /// See [`PgPoolConfig::recycle_timeout`].
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.config.recycle_timeout = timeout;
        self
    }

    /// See [`PgPoolConfig::statement_timeout`].
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.statement_timeout = timeout;
        self
    }

    /// See [`PgPoolConfig::statement_cache_size`].
    pub fn statement_cache_size(mut self, statements: usize) -> Self {
        self.config.statement_cache_size = statements;
        self
    }

    /// See [`PgPoolConfig::slow_query_threshold`].
    pub fn slow_query_threshold(mut self, threshold: Duration) -> Self {
        self.config.slow_query_threshold = threshold;
        self
    }

    /// See [`PgPoolConfig::reaper_interval`].
    pub fn reaper_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.reaper_interval = interval;
        self
    }

    /// See [`PgPoolConfig::verify_on_checkout`].
    pub fn verify_on_checkout(mut self, verify: bool) -> Self {
        self.config.verify_on_checkout = verify;
        self
    }

    /// See [`PgPoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`PgPoolConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Validates the configuration and connects; see [`PgPool::connect`].
    ///
    /// # Errors
    ///
    /// As [`PgPool::connect`].
    pub async fn connect(self) -> Result<PgPool, PgPoolError> {
        PgPool::connect(self.config).await
    }
}

impl PgPool {
    /// A builder for a pool of `url` with the defaults of [`PgPoolConfig`].
    pub fn builder(url: impl Into<String>) -> PgPoolBuilder {
        PgPoolBuilder::from_config(PgPoolConfig::new(url))
    }

    /// Validates `config`, opens `min_idle_conns` connections, and starts the reaper (on the
    /// current tokio runtime).
    ///
    /// # Errors
    ///
    /// [`PgPoolError::Config`] for an invalid setting or URL; a connection error when the
    /// warm-up connections cannot be opened (within `create_timeout`).
    pub async fn connect(config: PgPoolConfig) -> Result<Self, PgPoolError> {
        let pg = config.validate().map_err(PgPoolError::Config)?;
        let shared = Arc::new(Shared {
            counters: PgCounters::default(),
            clock: FastClock::new(),
            statement_cache_size: config.statement_cache_size.max(1),
            slow_query_threshold: config.slow_query_threshold,
        });
        // Fast recycling checks the socket: a connection the server closed is noticed by its
        // connection task and not handed out. Verified recycling also catches a socket that
        // died silently, for a round trip per checkout.
        let recycling_method = if config.verify_on_checkout {
            RecyclingMethod::Verified
        } else {
            RecyclingMethod::Fast
        };
        let manager = PgManager {
            inner: deadpool_postgres::Manager::from_config(
                pg,
                NoTls,
                ManagerConfig { recycling_method },
            ),
            lifetime: config.conn_max_lifetime,
            idle_time: config.conn_max_idle_time,
            verify: config.verify_on_checkout,
            shared,
        };
        let pool = Pool::builder(manager)
            .max_size(config.max_open_conns)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.create_timeout))
            .recycle_timeout(Some(config.recycle_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| PgPoolError::Config(BuildError::new("pool", error.to_string())))?;
        let pool = PgPool {
            inner: Arc::new(Inner {
                pool,
                telemetry: PgTelemetry::new(&config.metrics_prefix, &config.name),
                config,
                reaper: Mutex::new(None),
            }),
        };
        pool.warm_up().await?;
        if let Some(interval) = pool.inner.config.reaper_interval {
            pool.spawn_reaper(interval);
        }
        Ok(pool)
    }

    /// A connection, waiting at most `wait_timeout` for one to be free.
    ///
    /// # Errors
    ///
    /// [`PgPoolError::WaitTimeout`] (or the create/recycle timeouts) and connection errors.
    pub async fn get(&self) -> Result<PgConn, PgPoolError> {
        let inner = &*self.inner;
        let shared = &inner.pool.manager().shared;
        // A checkout that is ready on its first poll did not wait, and costs no clock read:
        // the wait is timed from the first time deadpool says "not yet".
        let mut checkout = std::pin::pin!(inner.pool.get());
        let mut waiting_since = None;
        let result = std::future::poll_fn(|cx| {
            let poll = checkout.as_mut().poll(cx);
            if poll.is_pending() && waiting_since.is_none() {
                waiting_since = Some(shared.clock.now_nanos());
            }
            poll
        })
        .await;
        match result {
            Ok(object) => {
                // Dated by the recycle check (or the connection's creation), which reads the
                // clock anyway for the expiry.
                let waited =
                    waiting_since.map_or(0, |since| object.checked_out_nanos.saturating_sub(since));
                shared.counters.checkout(Duration::from_nanos(waited));
                Ok(PgConn {
                    object: Some(object),
                })
            }
            Err(error) => {
                let error = PgPoolError::from(error);
                if matches!(
                    error,
                    PgPoolError::WaitTimeout
                        | PgPoolError::CreateTimeout
                        | PgPoolError::RecycleTimeout
                ) {
                    shared.counters.timeout();
                }
                Err(error)
            }
        }
    }

    /// Runs `SELECT 1` on a connection; returns the round trip.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), or the query's error.
    pub async fn health_check(&self) -> Result<Duration, PgPoolError> {
        let started = Instant::now();
        let connection = self.get().await?;
        connection.client().simple_query("SELECT 1").await?;
        Ok(started.elapsed())
    }

    /// Closes idle connections past their lifetime or idle limit and the idle surplus over
    /// `max_idle_conns`; returns how many were closed. The reaper runs this on its
    /// schedule; call it to trim at once (under memory pressure, say).
    pub fn reap(&self) -> usize {
        let inner = &*self.inner;
        let manager = inner.pool.manager();
        let counters = &manager.shared.counters;
        let now = manager.shared.clock.now_nanos();
        let mut kept = 0;
        let mut surplus = 0;
        let result =
            inner.pool.retain(
                |connection, _metrics| match manager.expiry(connection, now) {
                    Some(super::manager::Expiry::Lifetime) => {
                        counters.closed_lifetime();
                        false
                    }
                    Some(super::manager::Expiry::Idle) => {
                        counters.closed_idle();
                        false
                    }
                    None if kept >= inner.config.max_idle_conns => {
                        surplus += 1;
                        false
                    }
                    None => {
                        kept += 1;
                        true
                    }
                },
            );
        counters.closed_surplus(surplus);
        result.removed.len()
    }

    /// Opens connections until `min_idle_conns` are open.
    async fn warm_up(&self) -> Result<(), PgPoolError> {
        let wanted = self.inner.config.min_idle_conns;
        let missing = wanted.saturating_sub(self.inner.pool.status().size);
        let mut held = Vec::with_capacity(missing);
        for _ in 0..missing {
            held.push(self.get().await?);
        }
        Ok(())
    }

    fn spawn_reaper(&self, interval: Duration) {
        // The task holds a weak reference: dropping the last pool handle ends it.
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let pool = PgPool { inner };
                pool.reap();
                let _ = pool.warm_up().await;
            }
        });
        *lock(&self.inner.reaper) = Some(task.abort_handle());
    }

    /// A snapshot of the pool, also published through the `metrics` facade.
    pub fn stats(&self) -> PgPoolStats {
        let stats = self
            .inner
            .pool
            .manager()
            .shared
            .counters
            .snapshot(self.inner.pool.status());
        self.inner.telemetry.publish(&stats);
        stats
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PgPoolConfig {
        &self.inner.config
    }

    /// Closes the pool: idle connections now, the others when returned; `get` fails after.
    pub fn close(&self) {
        if let Some(reaper) = lock(&self.inner.reaper).take() {
            reaper.abort();
        }
        self.inner.pool.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reaper) = lock(&self.reaper).take() {
            reaper.abort();
        }
    }
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A connection from a [`PgPool`]: queries through it use the bounded statement cache and
/// are timed; it goes back to the pool when dropped.
pub struct PgConn {
    object: Option<Object<PgManager>>,
}

impl PgConn {
    fn connection(&self) -> &Connection {
        self.object.as_ref().expect("present until dropped")
    }

    /// The underlying client, for anything the wrappers do not cover (transactions, copy).
    pub fn client(&self) -> &tokio_postgres::Client {
        self.connection().client.deref()
    }

    /// Prepares `query`, reusing this connection's cached statement; the cache is emptied
    /// when it reaches `statement_cache_size`, so it cannot grow without bound.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, PgPoolError> {
        let connection = self.connection();
        prepare_bounded(
            &connection.client.statement_cache,
            &connection.shared,
            &connection.client,
            query,
        )
        .await
        .map_err(PgPoolError::from)
    }

    /// The statements this connection has cached.
    pub fn cached_statements(&self) -> usize {
        self.connection().client.statement_cache.size()
    }

    /// Runs `query` and returns its rows.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn query(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgPoolError> {
        let statement = self.prepare_cached(query).await?;
        timed(
            &self.connection().shared,
            self.client().query(&statement, params),
        )
        .await
    }

    /// Runs `query` and returns its one row.
    ///
    /// # Errors
    ///
    /// The server's error, or an error when the query does not return exactly one row.
    pub async fn query_one(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgPoolError> {
        let statement = self.prepare_cached(query).await?;
        timed(
            &self.connection().shared,
            self.client().query_one(&statement, params),
        )
        .await
    }

    /// Runs `query` and returns its row, if it returned one.
    ///
    /// # Errors
    ///
    /// The server's error, or an error when the query returns more than one row.
    pub async fn query_opt(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgPoolError> {
        let statement = self.prepare_cached(query).await?;
        timed(
            &self.connection().shared,
            self.client().query_opt(&statement, params),
        )
        .await
    }

    /// Runs `query` and returns how many rows it changed.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn execute(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgPoolError> {
        let statement = self.prepare_cached(query).await?;
        timed(
            &self.connection().shared,
            self.client().execute(&statement, params),
        )
        .await
    }

    /// Starts a transaction on this connection. Its queries are cached and timed like the
    /// connection's; dropped without [`commit`](PgTransaction::commit), it rolls back.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn transaction(&mut self) -> Result<PgTransaction<'_>, PgPoolError> {
        let connection = &mut **self.object.as_mut().expect("present until dropped");
        let shared = &*connection.shared;
        Ok(PgTransaction {
            transaction: connection.client.transaction().await?,
            shared,
        })
    }
}

/// A transaction on a [`PgConn`], from [`PgConn::transaction`]: its queries use the
/// connection's bounded statement cache and are timed; dropped without
/// [`commit`](Self::commit), it is rolled back.
pub struct PgTransaction<'a> {
    transaction: deadpool_postgres::Transaction<'a>,
    shared: &'a Shared,
}

impl PgTransaction<'_> {
    async fn prepare(&self, query: &str) -> Result<Statement, PgPoolError> {
        prepare_bounded(
            &self.transaction.statement_cache,
            self.shared,
            self.transaction.client(),
            query,
        )
        .await
        .map_err(PgPoolError::from)
    }

    /// Runs `query` in the transaction and returns its rows.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn query(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgPoolError> {
        let statement = self.prepare(query).await?;
        timed(self.shared, self.transaction.query(&statement, params)).await
    }

    /// Runs `query` in the transaction and returns its one row.
    ///
    /// # Errors
    ///
    /// The server's error, or an error when the query does not return exactly one row.
    pub async fn query_one(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgPoolError> {
        let statement = self.prepare(query).await?;
        timed(self.shared, self.transaction.query_one(&statement, params)).await
    }

    /// Runs `query` in the transaction and returns its row, if it returned one.
    ///
    /// # Errors
    ///
    /// The server's error, or an error when the query returns more than one row.
    pub async fn query_opt(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgPoolError> {
        let statement = self.prepare(query).await?;
        timed(self.shared, self.transaction.query_opt(&statement, params)).await
    }

    /// Runs `query` in the transaction and returns how many rows it changed.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn execute(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgPoolError> {
        let statement = self.prepare(query).await?;
        timed(self.shared, self.transaction.execute(&statement, params)).await
    }

    /// Commits.
    ///
    /// # Errors
    ///
    /// The server's error; the transaction is rolled back.
    pub async fn commit(self) -> Result<(), PgPoolError> {
        timed(self.shared, self.transaction.commit()).await
    }

    /// Rolls back now. Dropping the transaction rolls back too, but only once the
    /// connection's task sends it: this waits for the server to have done it, so no lock
    /// the transaction took outlives the call.
    ///
    /// # Errors
    ///
    /// The server's error.
    pub async fn rollback(self) -> Result<(), PgPoolError> {
        timed(self.shared, self.transaction.rollback()).await
    }
}

impl fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTransaction").finish_non_exhaustive()
    }
}

/// Prepares through `cache`, emptying it first when it holds `statement_cache_size`.
async fn prepare_bounded(
    cache: &deadpool_postgres::StatementCache,
    shared: &Shared,
    client: &tokio_postgres::Client,
    query: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if cache.size() >= shared.statement_cache_size {
        cache.clear();
    }
    cache.prepare(client, query).await
}

/// Runs `query`, counting it (and whether it was slow).
async fn timed<T>(
    shared: &Shared,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgPoolError> {
    let started = Instant::now();
    let result = query.await;
    let slow = started.elapsed() >= shared.slow_query_threshold;
    shared.counters.query(slow);
    Ok(result?)
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(mut object) = self.object.take() {
            // The idle clock starts now; dropping the object returns it to the pool.
            object.returned_nanos = object.shared.clock.now_nanos();
        }
    }
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

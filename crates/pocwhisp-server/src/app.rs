//! [`Application`]: what `main` and the tests both start. `build` opens everything a
//! configuration asks for and binds the listener (port 0 works); `run_until_stopped` serves
//! until the shutdown future completes, then drains.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use perf_breaker::CircuitBreaker;
use perf_cache::response::ResponseCacheLayer;
use perf_cache::warmer::{CacheWarmer, CacheWarmerConfig, WarmupError};
use perf_core::sync::{read, write};
use perf_middleware::body_timeout::BodyTimeoutLayer;
use perf_middleware::compression::CompressionConfig;
use perf_middleware::normalize_path::NormalizePathLayer;
use perf_middleware::performance::{PerformanceConfig, PerformanceLayer};
use perf_middleware::rate_limit::redis::RedisRateLimiter;
use perf_middleware::rate_limit::{ConfiguredKey, KeyValue, Quota, RateLimitLayer, RateLimiter};
use perf_pool::buffer::BufferPool;
use perf_pool::manager::PoolManager;
use perf_pool::task::TaskPool;
use perf_profiler::Profiler;
use perf_profiler::collect::LatencyLayer;
use perf_profiler::cpu::CpuProfiler;
use perf_profiler::health::{AlertRule, Direction, Status, Threshold};
use perf_profiler::optimizer::{ActionKind, ActionOutcome, Optimizer};
use perf_profiler::snapshot::{Snapshot, names};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower::util::Either;

use crate::audio::intake;
use crate::config::{AlertSeverity, Config, Role};
use crate::disk_reserve::DiskReserve;
use crate::http::{
    AuthenticateLayer, Principal, TokenSummary, Tokens, error_body, serve, trace::TraceLayer,
};
use crate::jobs::{Callbacks, Jobs, JobsSetup};
use crate::memory::{MemoryGuard, Relief};
use crate::redis::Redis;
use crate::state::{AppState, Readiness, Shared, UploadLimit};
use crate::store::{GuardedStore, PostgresStore, SqliteStore, Store, StoreError};

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created.
    DataDir(std::io::Error),
    /// The listener could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// Storage could not be opened or migrated.
    Store(StoreError),
    /// A setting a component refused.
    Config(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(error) => write!(f, "cannot create the data directory: {error}"),
            StartError::Bind(address, error) => write!(f, "cannot listen on {address}: {error}"),
            StartError::Store(error) => write!(f, "{error}"),
            StartError::Config(reason) => write!(f, "invalid configuration: {reason}"),
        }
    }
}

impl std::error::Error for StartError {}

fn invalid(error: impl std::fmt::Display) -> StartError {
    StartError::Config(error.to_string())
}

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    tokens: Arc<Tokens>,
    performance: PerformanceLayer,
    /// With Redis, every request's quota, inside the performance stack (which then has none).
    shared_requests: Option<SharedRequestLimit>,
    local_addr: SocketAddr,
    summary: TokenSummary,
    /// The PostgreSQL store still to migrate, handed to its task when serving starts;
    /// `None` for SQLite.
    migration: Option<PendingMigration>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens storage (running its migrations), builds every component and binds the
    /// listener.
    ///
    /// # Errors
    ///
    /// A [`StartError`] saying what could not be opened or bound.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        // The recorder first: every component resolves its metric handles when built.
        let prometheus = crate::telemetry::prometheus();
        let config = Arc::new(config);
        intake::private_data_dir(&config.server.data_dir)
            .await
            .map_err(StartError::DataDir)?;
        let disk_reserve = fill_disk_reserve(DiskReserve::new(
            &config.server.data_dir,
            config.server.disk_reserve.0,
        ))
        .await
        .map_err(StartError::DataDir)?;
        let (store, postgres) = open_store(&config, &disk_reserve).await?;
        let (tokens, summary) = Tokens::from_config(&config.auth, config.environment);
        let renamed_identities = tokens.renamed_identities().to_vec();
        let migration = match postgres {
            Some(store) => Some(PendingMigration {
                store,
                renamed_identities,
            }),
            // SQLite is migrated already.
            None => {
                adopt_renamed_identities(&*store, &renamed_identities)
                    .await
                    .map_err(StartError::Store)?;
                None
            }
        };
        let memory = MemoryGuard::new(config.memory.limit);
        let profiler = Profiler::builder()
            .interval(config.monitoring.metrics_update_interval)
            .retention(config.monitoring.retention)
            .metrics_prefix("pocwhisp")
            .memory_limit_bytes(memory.limit())
            .build()
            .map_err(invalid)?;
        profiler.set_thresholds(thresholds(&config));
        profiler.set_alert_rules(alert_rules(&config));
        let responses = ResponseCacheLayer::builder()
            .name("responses")
            .metrics_prefix("pocwhisp_cache")
            .capacity_bytes(config.cache.capacity.0)
            .default_ttl(config.cache.ttl)
            // Each caller's reads are cached for that caller alone: transcripts are private.
            .key_fn(|head| {
                head.extensions
                    .get::<Principal>()
                    .map(|principal| Cow::Borrowed(&*principal.identity))
            })
            .build()
            .map_err(invalid)?;
        let warmer = CacheWarmer::new(CacheWarmerConfig {
            interval: config.cache.warmup_schedule,
        })
        .map_err(invalid)?;
        let buffers = BufferPool::builder()
            .name("buffers")
            .metrics_prefix("pocwhisp_pool")
            .build()
            .map_err(invalid)?;
        let pools = PoolManager::new(buffers);
        let performance = PerformanceLayer::new(&performance_config(&config))
            .map_err(invalid)?
            .expose_timings_when(|head| {
                head.extensions
                    .get::<Principal>()
                    .is_some_and(|principal| principal.may(Role::Admin))
            });
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|error| StartError::Bind(config.server.listen, error))?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| StartError::Bind(config.server.listen, error))?;
        let workers = config.workers();
        let tasks = TaskPool::builder()
            .max_concurrent(config.request_pool.max_concurrent)
            .queue_size(config.request_pool.queue_size)
            .queue_timeout(config.request_pool.queue_timeout)
            .kind_limit(crate::jobs::KIND, workers)
            .name("requests")
            .metrics_prefix("pocwhisp_task_pool")
            .build()
            .map_err(invalid)?;
        // Loading the engine reads its models (a second or two): off the runtime's threads.
        let (engine_config, models_dir) = (config.engine.clone(), config.models.dir());
        let engine = tokio::task::spawn_blocking(move || {
            crate::engine::select(&engine_config, &models_dir, workers)
        })
        .await
        .map_err(invalid)?;
        let (jobs, engine_problem) = match engine {
            Ok(engine) => {
                engine.register_pools(&pools);
                let setup = JobsSetup {
                    store: Arc::clone(&store),
                    pool: tasks.clone(),
                    workers,
                    jobs: config.jobs.clone(),
                    audio: config.audio.clone(),
                    data_dir: config.server.data_dir.clone(),
                    responses: responses.clone(),
                    callbacks: Callbacks::new(
                        config.jobs.callback_hosts.clone(),
                        config.jobs.callback_secret.clone(),
                    ),
                    memory: memory.clone(),
                };
                (Some(Jobs::new(setup, engine)), None)
            }
            Err(crate::engine::EngineError::Misconfigured(error)) => {
                return Err(StartError::Config(format!(
                    "the speech engine cannot start: {error}"
                )));
            }
            Err(problem) => {
                let problem = problem.to_string();
                tracing::warn!(%problem, "no speech engine: uploads will be refused");
                (None, Some(problem))
            }
        };
        let redis = crate::redis::Redis::new(&config)
            .map_err(StartError::Config)?
            .map(Arc::new);
        let (uploads, shared_requests) = rate_limits(&config, redis.as_deref())?;
        let readiness = match &migration {
            None => {
                let readiness = Readiness::new("starting");
                readiness.set_ready();
                readiness
            }
            Some(_) => Readiness::new("connecting to PostgreSQL and running the migrations"),
        };
        let state = AppState {
            inner: Arc::new(Shared {
                config,
                store,
                profiler,
                optimizer: Optimizer::new(),
                responses,
                warmer,
                pools,
                prometheus,
                cpu: CpuProfiler::new(),
                memory,
                readiness,
                openapi: Default::default(),
                started: Instant::now(),
                shedder: performance.load_shedder().cloned(),
                limiter: match &redis {
                    // Redis's limiter keeps no keys here; its local fallback does.
                    Some(redis) => Some(redis.requests.fallback().clone()),
                    None => performance.rate_limiter().cloned(),
                },
                jobs,
                engine_problem,
                tasks,
                store_stats: Default::default(),
                router: Default::default(),
                uploads,
                redis,
                read_host: RwLock::default(),
                audio_locks: Default::default(),
                upload_sweeper: Default::default(),
                disk_reserve,
            }),
        };
        register_probes(&state);
        register_optimizations(&state);
        register_warmup(&state);
        Ok(Application {
            listener,
            state,
            tokens: Arc::new(tokens),
            performance,
            shared_requests,
            local_addr,
            summary,
            migration,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The tokens configured, and the admin token generated in development if none was.
    pub fn token_summary(&self) -> &TokenSummary {
        &self.summary
    }

    /// Serves until `shutdown` completes, then stops accepting and lets requests in flight
    /// finish within `server.drain_timeout`.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let state = self.state;
        let (router, openapi) = crate::routes::router(&state).split_for_parts();
        let document = openapi.to_json().unwrap_or_default();
        let _ = state.inner.openapi.set(document.into());
        let router = router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state.clone());
        let _ = state.inner.router.set(router.clone());
        let config = Arc::clone(&state.inner.config);
        let service = ServiceBuilder::new()
            // One spelling per path before anything routes, authorises or caches by it: an
            // escaped letter or a doubled slash would otherwise be another cache entry,
            // still served after a delete invalidated the first.
            .layer(NormalizePathLayer::new())
            // A body dripped a byte at a time would hold its handler and load-shedding slot
            // for as long as the client liked.
            .layer(BodyTimeoutLayer::new(
                config.server.body_read_timeout,
                config.server.min_body_rate.0,
            ))
            .layer(error_body::RenderErrorsLayer)
            .layer(TraceLayer::new(config.monitoring.slow_request_threshold))
            .layer(LatencyLayer::new(state.inner.profiler.latency().clone()))
            .layer(AuthenticateLayer::new(self.tokens))
            // The performance stack's response future nests every layer's state around the
            // router's; boxed here, it is moved once into the heap instead of being copied
            // again by each of the four layers above (they each take their inner future by
            // value), which cost more than the allocation.
            .layer(tower::util::BoxCloneSyncService::layer())
            .layer(self.performance)
            .option_layer(self.shared_requests)
            .service(router);
        let background = background_tasks(&state, self.migration);
        tracing::info!(
            address = %self.local_addr,
            environment = %config.environment,
            store = state.inner.store.backend(),
            "serving"
        );
        serve::serve(self.listener, service, &config.server, shutdown).await;
        for task in background {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

async fn not_found(uri: http::Uri) -> crate::http::ApiError {
    crate::http::ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> http::StatusCode {
    // The router adds `Allow`; the error layer writes the body.
    http::StatusCode::METHOD_NOT_ALLOWED
}

/// perf-middleware's stack as the server configures it.
fn performance_config(config: &Config) -> PerformanceConfig {
    PerformanceConfig {
        security_headers: true,
        metrics_prefix: "pocwhisp_http".to_owned(),
        max_routes: 200,
        // With Redis, the shared limit replaces this one (see `rate_limits`).
        rate_limit: config
            .redis
            .url
            .is_none()
            .then(|| config.rate_limit.clone()),
        load_shed: Some(config.load_shed.clone()),
        // Deadlines are per route: uploads and CPU profiles take longer than a lookup.
        timeout: None,
        max_body_bytes: config.audio.max_upload.as_usize(),
        compression: CompressionConfig {
            min_size: config.response.compression_min_size,
            level: config.response.compression_level,
            ..CompressionConfig::default()
        },
        server_timing_for_all: false,
    }
}

/// `jobs.uploads_per_hour` per caller, and with Redis every request's quota too, both keyed
/// as `rate_limit.key` says; through Redis when the instances share them (otherwise the
/// performance stack's in-process limiter counts requests).
fn rate_limits(
    config: &Config,
    redis: Option<&Redis>,
) -> Result<(UploadLimit, Option<SharedRequestLimit>), StartError> {
    let key = ConfiguredKey::new(&config.rate_limit.key)
        .map_err(|error| invalid(error.within("rate_limit.key")))?;
    let headers = config.rate_limit.headers;
    if let Some(redis) = redis {
        let uploads = RateLimitLayer::new(redis.uploads.clone(), key.clone()).headers(headers);
        let requests = RateLimitLayer::new(redis.requests.clone(), key).headers(headers);
        return Ok((Either::Right(uploads), Some(requests)));
    }
    let limiter = RateLimiter::builder(Quota::per_hour(config.jobs.uploads_per_hour))
        .max_keys(config.rate_limit.max_keys)
        .metrics_prefix("pocwhisp_upload_rate_limit")
        .build()
        .map_err(|error| invalid(error.within("jobs.uploads_per_hour")))?;
    Ok((
        Either::Left(RateLimitLayer::new(limiter, key).headers(headers)),
        None,
    ))
}

/// Every request's quota through Redis.
type SharedRequestLimit = RateLimitLayer<ConfiguredKey, RedisRateLimiter<KeyValue>>;

/// The configured alert rules, as the profiler evaluates them.
pub(crate) fn alert_rules(config: &Config) -> Vec<AlertRule> {
    config
        .alerts
        .rules
        .iter()
        .map(|rule| AlertRule {
            name: rule.name.clone(),
            metric: rule.metric.clone(),
            direction: if rule.above.is_some() {
                Direction::Above
            } else {
                Direction::Below
            },
            value: rule.above.or(rule.below).unwrap_or_default(),
            severity: match rule.severity {
                AlertSeverity::Warning => Status::Warning,
                AlertSeverity::Critical => Status::Critical,
            },
            for_at_least: rule.hold,
        })
        .collect()
}

/// The health thresholds, from the configuration.
pub(crate) fn thresholds(config: &Config) -> Vec<Threshold> {
    let levels = &config.thresholds;
    vec![
        Threshold::new(
            names::LATENCY_P95_MS,
            Direction::Above,
            levels.latency_p95_ms.warning,
            levels.latency_p95_ms.critical,
        ),
        Threshold::new(
            names::CPU_USAGE_PERCENT,
            Direction::Above,
            levels.cpu_percent.warning,
            levels.cpu_percent.critical,
        ),
        Threshold::new(
            names::MEMORY_USAGE_PERCENT,
            Direction::Above,
            levels.memory_percent.warning,
            levels.memory_percent.critical,
        ),
        Threshold::new(
            names::CACHE_HIT_RATE,
            Direction::Below,
            levels.cache_hit_rate.warning,
            levels.cache_hit_rate.critical,
        ),
        Threshold::new(
            names::ERROR_RATE,
            Direction::Above,
            levels.error_rate.warning,
            levels.error_rate.critical,
        ),
    ]
}

/// The server's own figures in every snapshot.
fn register_probes(state: &AppState) {
    let probe_state = state.clone();
    state
        .inner
        .profiler
        .register_probe(move |snapshot: &mut Snapshot| {
            let shared = &probe_state.inner;
            for (name, value) in shared.store.figures() {
                snapshot.set(name, value);
            }
            let cache = shared.responses.stats();
            // No lookups yet: no rate (a zero would read as a cache that always misses).
            if cache.hits + cache.stale_hits + cache.misses > 0 {
                snapshot.set(names::CACHE_HIT_RATE, cache.hit_rate);
            }
            snapshot.set("cache_size_bytes", cache.weight as f64);
            let buffers = shared.pools.buffers().stats();
            snapshot.set("pool_buffers_retained_bytes", buffers.retained_bytes as f64);
            if let Some(shedder) = &shared.shedder {
                let shed = shedder.stats();
                snapshot.set("load_shed_in_flight", f64::from(shed.in_flight));
                snapshot.set("load_shed_limit", f64::from(shed.limit));
            }
            snapshot.set(
                "memory_over_limit",
                f64::from(u8::from(shared.memory.is_over())),
            );
            let store = *read(&shared.store_stats);
            snapshot.set("jobs_queued", store.jobs_queued as f64);
            snapshot.set("jobs_running", store.jobs_running as f64);
            let tasks = shared.tasks.stats();
            snapshot.set("task_pool_queued", tasks.queued as f64);
            snapshot.set("task_pool_running", tasks.running as f64);
        });
}

/// The warm-up: the most recently finished sessions, read again for their owners so that
/// their next read is a cache hit.
fn register_warmup(state: &AppState) {
    let warm_state = state.clone();
    state.inner.warmer.register("recent transcripts", move || {
        let state = warm_state.clone();
        async move { warm_recent_sessions(&state).await }
    });
}

/// Sessions the warm-up reads again.
const WARMUP_SESSIONS: u32 = 100;

async fn warm_recent_sessions(state: &AppState) -> Result<usize, WarmupError> {
    use tower::ServiceExt;
    let shared = &state.inner;
    // Entries are keyed by the host clients use; until one has read a session there is
    // nothing to warm for.
    let (Some(router), Some(host)) = (shared.router.get(), read(&shared.read_host).clone()) else {
        return Ok(0);
    };
    let mut warmed = 0;
    for (id, owner) in shared.store.recent_completed(WARMUP_SESSIONS).await? {
        let mut request = http::Request::get(format!("/api/v1/transcribe/{id}"))
            .header(http::header::HOST, host.clone())
            .body(axum::body::Body::empty())?;
        request.extensions_mut().insert(Principal {
            identity: owner.into(),
            role: Role::User,
        });
        let response = router.clone().oneshot(request).await?;
        if response.status().is_success() {
            warmed += 1;
        }
    }
    Ok(warmed)
}

/// What `POST /performance/optimize` can do, each reporting real before and after figures.
fn register_optimizations(state: &AppState) {
    let optimizer = &state.inner.optimizer;
    optimizer.register(ActionKind::Memory, "purge allocator arenas", || async {
        let heap = || {
            let mut snapshot = Snapshot::at(SystemTime::now());
            perf_profiler::collect::collect_allocator(&mut snapshot);
            snapshot.values
        };
        let before = heap();
        perf_profiler::collect::purge_arenas()?;
        Ok(ActionOutcome {
            summary: "returned the allocator's free pages to the operating system".to_owned(),
            before,
            after: heap(),
        })
    });
    let pools = state.inner.pools.clone();
    optimizer.register(ActionKind::Pools, "release idle buffers", move || {
        let pools = pools.clone();
        async move {
            let before = pools.buffers().stats();
            let released = pools.buffers().shrink_to(0);
            let after = pools.buffers().stats();
            Ok(ActionOutcome {
                summary: format!("released {released} bytes of idle buffers"),
                before: [("retained_bytes".to_owned(), before.retained_bytes as f64)].into(),
                after: [("retained_bytes".to_owned(), after.retained_bytes as f64)].into(),
            })
        }
    });
    let responses = state.inner.responses.clone();
    optimizer.register(ActionKind::Cache, "drop expired responses", move || {
        let responses = responses.clone();
        async move {
            let figures = |stats: perf_cache::ttl::CacheStats| {
                [
                    ("entries".to_owned(), stats.entries as f64),
                    ("size_bytes".to_owned(), stats.weight as f64),
                ]
                .into()
            };
            let before = responses.stats();
            let dropped = responses.purge_expired();
            Ok(ActionOutcome {
                summary: format!("dropped {dropped} expired responses"),
                before: figures(before),
                after: figures(responses.stats()),
            })
        }
    });
    let store = Arc::clone(&state.inner.store);
    optimizer.register(ActionKind::Db, "refresh planner statistics", move || {
        let store = Arc::clone(&store);
        async move {
            let before = store.stats().await?;
            let started = Instant::now();
            let summary = store.analyze().await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            Ok(ActionOutcome {
                summary,
                before: [("sessions".to_owned(), before.sessions as f64)].into(),
                after: [
                    ("sessions".to_owned(), before.sessions as f64),
                    ("analyze_ms".to_owned(), took),
                ]
                .into(),
            })
        }
    });
}

/// Gauges published when read (pools, caches, limiter, shedder), refreshed before an
/// exposition.
pub(crate) fn publish_gauges(state: &AppState) {
    let shared = &state.inner;
    let _ = shared.pools.snapshot();
    let _ = shared.responses.stats();
    if let Some(shedder) = &shared.shedder {
        let _ = shedder.stats();
    }
    if let Some(limiter) = &shared.limiter {
        let _ = limiter.stats();
    }
    let _ = shared.tasks.stats();
    // The database pool publishes its gauges when read.
    let _ = shared.store.figures();
    let _ = match &shared.uploads {
        Either::Left(local) => local.limiter().stats(),
        Either::Right(shared) => shared.limiter().fallback().stats(),
    };
    let store = *read(&shared.store_stats);
    metrics::gauge!("pocwhisp_jobs_queued").set(store.jobs_queued as f64);
    metrics::gauge!("pocwhisp_jobs_running").set(store.jobs_running as f64);
    metrics::gauge!("pocwhisp_sessions").set(store.sessions as f64);
}

/// Makes the disk reserve when it is missing and there is room for it (on a blocking thread:
/// it writes `server.disk_reserve` bytes).
async fn fill_disk_reserve(reserve: DiskReserve) -> std::io::Result<DiskReserve> {
    let filling = reserve.clone();
    match tokio::task::spawn_blocking(move || filling.fill()).await {
        Ok(Ok(_)) => Ok(reserve),
        Ok(Err(error)) => Err(error),
        Err(error) => Err(std::io::Error::other(error)),
    }
}

/// Makes the disk reserve again, once the disk has room for it, after a write used it.
fn refill_disk_reserve(state: &AppState) -> JoinHandle<()> {
    let reserve = state.inner.disk_reserve.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(10));
        loop {
            ticks.tick().await;
            if reserve.is_released()
                && let Err(error) = fill_disk_reserve(reserve.clone()).await
            {
                tracing::warn!(%error, "cannot make the disk reserve again");
            }
        }
    })
}

/// Removes the partial uploads a process that ended while receiving them left behind: at
/// start, then every minute.
fn sweep_abandoned_uploads(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let shared = &state.inner;
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            let swept = shared
                .upload_sweeper
                .sweep(&shared.config.server.data_dir, intake::ABANDONED_AFTER)
                .await;
            match swept {
                Ok(0) => {}
                Ok(removed) => tracing::warn!(removed, "removed abandoned partial uploads"),
                Err(error) => tracing::warn!(%error, "cannot sweep abandoned partial uploads"),
            }
        }
    })
}

/// Sampling, cache warm-up, the memory guard, the Prometheus recorder's upkeep, the upload
/// sweeper, and `migration` when one is pending.
fn background_tasks(state: &AppState, migration: Option<PendingMigration>) -> Vec<JoinHandle<()>> {
    let shared = &state.inner;
    let sampler = shared.profiler.spawn();
    let warmer = shared.warmer.spawn();
    let prometheus = shared.prometheus.clone();
    let upkeep = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(5));
        loop {
            ticks.tick().await;
            prometheus.run_upkeep();
        }
    });
    let relief: Arc<dyn Relief> = Arc::new(Shedding {
        state: state.clone(),
    });
    let guard = shared.memory.spawn(Duration::from_secs(1), relief);
    let mut tasks = vec![
        upkeep,
        guard,
        refresh_store_stats(state),
        sweep_abandoned_uploads(state),
        refill_disk_reserve(state),
    ];
    if let Some(url) = &shared.config.alerts.webhook_url {
        tasks.push(crate::alerts::spawn_webhook(&shared.profiler, url.clone()));
    }
    if let Some(pending) = migration {
        tasks.push(migrate_until_ready(pending, shared.readiness.clone()));
    }
    if let Some(redis) = &shared.redis {
        // Another instance deleted a session: its copies here go too, in the response cache
        // as well as in the session cache.
        let responses = shared.responses.clone();
        tasks.push(redis.follow_invalidations(move |session| match session {
            Some(id) => {
                responses.invalidate_path(&format!("/api/v1/transcribe/{id}"));
            }
            None => responses.purge(),
        }));
    }
    if let Some(jobs) = &shared.jobs {
        let (jobs, readiness) = (Arc::clone(jobs), shared.readiness.clone());
        // Jobs are claimed once the store is migrated.
        tasks.push(tokio::spawn(async move {
            readiness.wait_ready().await;
            jobs.claim_forever().await;
        }));
    }
    // The sampler and warmer stop when their handles drop: hold them in a task that lives
    // as long as the others.
    let holder = tokio::spawn(async move {
        let _handles = (sampler, warmer);
        std::future::pending::<()>().await;
    });
    tasks.push(holder);
    tasks
}

/// The store the configuration names, behind the database breaker: SQLite in the data
/// directory, migrated now; or PostgreSQL, returned with the store still to migrate (the
/// server starts while the database is away, and becomes ready when it comes).
async fn open_store(
    config: &Config,
    disk_reserve: &DiskReserve,
) -> Result<(Arc<dyn Store>, Option<PostgresStore>), StartError> {
    let (store, migration): (Arc<dyn Store>, _) = match &config.database.url {
        None => (
            Arc::new(
                SqliteStore::open(&config.server.data_dir)
                    .await
                    .map_err(StartError::Store)?,
            ),
            None,
        ),
        Some(_) => {
            let postgres = PostgresStore::connect(&config.database)
                .await
                .map_err(StartError::Store)?;
            (Arc::new(postgres.clone()), Some(postgres))
        }
    };
    let breaker = CircuitBreaker::new(config.database.breaker.clone())
        .map_err(|error| invalid(error.within("database.breaker")))?;
    let guarded = GuardedStore::new(store, breaker);
    // SQLite's file is on the data directory's disk: the reserve makes room for it there.
    let guarded = match migration {
        None => guarded.with_disk_reserve(disk_reserve.clone()),
        Some(_) => guarded,
    };
    Ok((Arc::new(guarded), migration))
}

/// A PostgreSQL store still to prepare when the server starts.
#[derive(Debug)]
struct PendingMigration {
    store: PostgresStore,
    /// See [`Tokens::renamed_identities`].
    renamed_identities: Vec<(String, Arc<str>)>,
}

/// Gives the sessions stored under each former identity of a token to its identity now
/// (see [`Tokens::renamed_identities`]); a second start finds none left to move.
async fn adopt_renamed_identities(
    store: &dyn Store,
    renamed: &[(String, Arc<str>)],
) -> Result<(), StoreError> {
    for (former, identity) in renamed {
        let moved = store.rename_owner(former, identity).await?;
        if moved > 0 {
            tracing::info!(%former, %identity, moved, "sessions given to their token's stable identity");
        }
    }
    Ok(())
}

/// Runs the PostgreSQL migrations (and renames identities) until they succeed (the database
/// may come up after the server), then says the server is ready.
fn migrate_until_ready(pending: PendingMigration, readiness: Readiness) -> JoinHandle<()> {
    tokio::spawn(async move {
        let PendingMigration {
            store,
            renamed_identities,
        } = pending;
        let mut wait = Duration::from_millis(500);
        loop {
            let prepared = match store.migrate().await {
                Ok(()) => adopt_renamed_identities(&store, &renamed_identities).await,
                Err(error) => Err(error),
            };
            match prepared {
                Ok(()) => {
                    tracing::info!("PostgreSQL migrated; ready");
                    readiness.set_ready();
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL is not ready; retrying");
                    readiness.set_not_ready(format!("PostgreSQL: {error}"));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

/// Keeps [`Shared::store_stats`](crate::state::Shared) current for the probes and gauges,
/// which must not wait on the database.
fn refresh_store_stats(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(2));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match state.inner.store.stats().await {
                Ok(stats) => *write(&state.inner.store_stats) = stats,
                Err(error) => tracing::debug!(%error, "reading the job counts failed"),
            }
        }
    })
}

/// What the memory guard does to the server's caches and pools.
struct Shedding {
    state: AppState,
}

impl Relief for Shedding {
    fn shed(&self) {
        let shared = &self.state.inner;
        if let Err(error) = perf_profiler::collect::purge_arenas() {
            tracing::warn!(%error, "purging allocator arenas failed");
        }
        shared
            .responses
            .set_capacity(shared.config.cache.capacity.0 / 4);
        shared.pools.buffers().shrink_to(0);
    }

    fn restore(&self) {
        self.state.inner.responses.restore_capacity();
    }
}

//! What every route shares: one `Clone` struct of handles.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use perf_cache::response::ResponseCacheLayer;
use perf_cache::warmer::CacheWarmer;
use perf_middleware::load_shed::LoadShedder;
use perf_middleware::rate_limit::redis::RedisRateLimiter;
use perf_middleware::rate_limit::{ConfiguredKey, KeyValue, RateLimitLayer, RateLimiter};
use perf_pool::manager::PoolManager;
use perf_pool::task::TaskPool;
use perf_profiler::Profiler;
use perf_profiler::cpu::CpuProfiler;
use perf_profiler::optimizer::Optimizer;

use crate::config::Config;
use crate::jobs::Jobs;
use crate::memory::MemoryGuard;
use crate::store::{Store, StoreStats};

/// The server's shared state.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

/// The upload quota's layer: the in-process limiter, or Redis's.
pub(crate) type UploadLimit = tower::util::Either<
    RateLimitLayer<ConfiguredKey>,
    RateLimitLayer<ConfiguredKey, RedisRateLimiter<KeyValue>>,
>;

pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) profiler: Profiler,
    pub(crate) optimizer: Optimizer,
    pub(crate) responses: ResponseCacheLayer,
    pub(crate) warmer: CacheWarmer,
    pub(crate) pools: PoolManager,
    pub(crate) prometheus: PrometheusHandle,
    pub(crate) cpu: CpuProfiler,
    pub(crate) memory: MemoryGuard,
    pub(crate) readiness: Readiness,
    pub(crate) openapi: OnceLock<Bytes>,
    pub(crate) started: Instant,
    pub(crate) shedder: Option<LoadShedder>,
    pub(crate) limiter: Option<RateLimiter<KeyValue>>,
    /// The job runner; `None` without a speech engine.
    pub(crate) jobs: Option<Arc<Jobs>>,
    /// Why there is no engine, and how to fix it.
    pub(crate) engine_problem: Option<String>,
    /// The pool jobs run on.
    pub(crate) tasks: TaskPool,
    /// Jobs and sessions in the store, refreshed in the background for the profiler.
    pub(crate) store_stats: RwLock<StoreStats>,
    /// The routes, for warm-up requests made from inside the server.
    pub(crate) router: OnceLock<axum::Router>,
    /// The upload quota per caller (`jobs.uploads_per_hour`): in this instance, or shared
    /// through Redis.
    pub(crate) uploads: UploadLimit,
    /// What instances share through Redis, when `redis.url` is set.
    pub(crate) redis: Option<Arc<crate::redis::Redis>>,
    /// Storing and deleting audio files, one hash at a time.
    pub(crate) audio_locks: crate::audio::intake::AudioLocks,
    /// Partial uploads abandoned by a process that ended while receiving them.
    pub(crate) upload_sweeper: crate::audio::intake::UploadSweeper,
    /// Room kept for deletes and jobs' ends on a full disk; uploads are refused while it is
    /// in use.
    pub(crate) disk_reserve: crate::disk_reserve::DiskReserve,
    /// The `Host` clients last read a session under: cached reads are keyed by it, so the
    /// warm-up reads under it too.
    pub(crate) read_host: RwLock<Option<http::HeaderValue>>,
}

impl AppState {
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The OpenAPI document, serialized once when the router was built.
    pub(crate) fn openapi_json(&self) -> Bytes {
        self.inner.openapi.get().cloned().unwrap_or_default()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

/// Whether the server can take traffic, and if not, why; `Clone` shares it.
#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    not_ready: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Readiness {
    /// Not ready yet, because of `reason`.
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Readiness {
            not_ready: Arc::new(tokio::sync::watch::Sender::new(Some(reason.into()))),
        }
    }

    /// Ready to serve.
    pub(crate) fn set_ready(&self) {
        self.not_ready.send_replace(None);
    }

    /// Not ready, because of `reason`.
    pub(crate) fn set_not_ready(&self, reason: impl Into<String>) {
        self.not_ready.send_replace(Some(reason.into()));
    }

    /// Why the server is not ready, if it is not.
    pub(crate) fn reason(&self) -> Option<String> {
        self.not_ready.borrow().clone()
    }

    /// Returns once the server is ready.
    pub(crate) async fn wait_ready(&self) {
        let mut changes = self.not_ready.subscribe();
        let _ = changes.wait_for(Option::is_none).await;
    }
}

//! `/api/v1/cache/*` (admin): the response cache's figures, a warm-up run now, and a purge.

use axum::Json;
use axum::extract::State;
use perf_cache::warmer::WarmupReport;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use crate::store::rfc3339;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats, purge))
        .routes(routes!(warmup))
}

/// The response cache's counters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CacheFigures {
    /// Answers served from the cache.
    hits: u64,
    /// Answers the origin had to make.
    misses: u64,
    /// `hits / (hits + misses)`.
    hit_rate: f64,
    /// The hit rate the health checks expect.
    hit_rate_target: f64,
    /// Responses stored.
    entries: u64,
    /// Bytes stored.
    size_bytes: u64,
    /// Bytes it may hold now.
    capacity_bytes: u64,
    /// Responses pushed out for room.
    evictions: u64,
    /// The last warm-up run.
    #[schema(value_type = Option<Object>)]
    last_warmup: Option<WarmupSummary>,
    /// The session cache shared through Redis, when `redis.url` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<SharedFigures>,
}

/// The session cache shared through Redis.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SharedFigures {
    /// Sessions this instance did not hold that Redis had (another instance read them).
    l2_hits: u64,
    /// Redis operations that failed or timed out (and were answered without Redis).
    l2_errors: u64,
    /// Sessions held in this instance's memory.
    local_entries: usize,
}

/// A warm-up run, in brief.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WarmupSummary {
    /// When it started, RFC 3339.
    started_at: String,
    /// Milliseconds it took.
    took_ms: f64,
    /// Entries warmed.
    warmed: usize,
    /// Functions that failed.
    failures: usize,
    /// Each function: name, entries, error.
    tasks: Vec<WarmupTask>,
}

/// One warm-up function's run.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WarmupTask {
    name: String,
    warmed: usize,
    error: Option<String>,
    took_ms: f64,
}

impl From<WarmupReport> for WarmupSummary {
    fn from(report: WarmupReport) -> Self {
        WarmupSummary {
            started_at: rfc3339(report.started_at),
            took_ms: report.took.as_secs_f64() * 1000.0,
            warmed: report.warmed,
            failures: report.failures,
            tasks: report
                .tasks
                .into_iter()
                .map(|task| WarmupTask {
                    name: task.name,
                    warmed: task.warmed,
                    error: task.error,
                    took_ms: task.took.as_secs_f64() * 1000.0,
                })
                .collect(),
        }
    }
}

/// The response cache's figures.
#[utoipa::path(get, path = "/api/v1/cache/stats", tag = "cache",
    security(("bearer" = [])),
    responses((status = 200, description = "Counters, size and the last warm-up", body = CacheFigures)))]
async fn stats(State(state): State<AppState>) -> Json<CacheFigures> {
    let stats = state.inner.responses.stats();
    Json(CacheFigures {
        hits: stats.hits + stats.stale_hits,
        misses: stats.misses,
        hit_rate: stats.hit_rate,
        hit_rate_target: state.config().cache.hit_rate_target,
        entries: stats.entries,
        size_bytes: stats.weight,
        capacity_bytes: stats.capacity,
        evictions: stats.evictions,
        last_warmup: state.inner.warmer.last_report().map(WarmupSummary::from),
        shared: state.inner.redis.as_ref().map(|redis| {
            let (l2_hits, l2_errors) = redis.figures();
            SharedFigures {
                l2_hits,
                l2_errors,
                local_entries: redis.sessions.l1().len(),
            }
        }),
    })
}

/// Runs every warm-up function now.
#[utoipa::path(post, path = "/api/v1/cache/warmup", tag = "cache",
    security(("bearer" = [])),
    responses((status = 200, description = "What each warm-up function did", body = WarmupSummary)))]
async fn warmup(State(state): State<AppState>) -> Json<WarmupSummary> {
    Json(state.inner.warmer.run().await.into())
}

/// What a purge dropped.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Purged {
    /// Responses dropped.
    entries: u64,
    /// Bytes freed.
    bytes: u64,
}

/// Drops every cached response.
#[utoipa::path(delete, path = "/api/v1/cache", tag = "cache",
    security(("bearer" = [])),
    responses((status = 200, description = "What was dropped", body = Purged)))]
async fn purge(State(state): State<AppState>) -> Json<Purged> {
    let before = state.inner.responses.stats();
    state.inner.responses.purge();
    Json(Purged {
        entries: before.entries,
        bytes: before.weight,
    })
}

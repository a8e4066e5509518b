//! `/api/v1/performance/*` (admin): the profiler's current figures, health against the
//! guide's thresholds, reports over a period, trends with their samples, and the optimizer.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use perf_profiler::health::HealthReport;
use perf_profiler::optimizer::{ActionReport, Target};
use perf_profiler::trends::Trend;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Role;
use crate::http::{ApiError, Query, RequireRole};
use crate::state::AppState;
use crate::store::rfc3339;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(health))
        .routes(routes!(report))
        .routes(routes!(trends))
        .routes(routes!(optimize))
        .route_layer(RequireRole(Role::Admin))
}

/// The figures of one moment, by the guide's names.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Figures {
    /// When, RFC 3339.
    taken_at: String,
    /// Name to value: `cpu_usage_percent`, `request_latency_p95_ms`, `cache_hit_rate`...
    metrics: BTreeMap<String, f64>,
}

/// The figures now.
#[utoipa::path(get, path = "/api/v1/performance/metrics", tag = "performance",
    security(("bearer" = [])),
    responses((status = 200, description = "A snapshot taken now", body = Figures)))]
async fn metrics(State(state): State<AppState>) -> Json<Figures> {
    let snapshot = state.inner.profiler.snapshot();
    Json(Figures {
        taken_at: rfc3339(snapshot.taken_at),
        metrics: snapshot.values,
    })
}

/// Health and firing alerts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PerformanceHealth {
    /// The checks against the thresholds, and the worst status.
    #[schema(value_type = Object)]
    health: HealthReport,
    /// Alert rules firing now.
    firing_alerts: Vec<String>,
}

/// The latest sample against the thresholds.
#[utoipa::path(get, path = "/api/v1/performance/health", tag = "performance",
    security(("bearer" = [])),
    responses((status = 200, description = "Each check's status and reason", body = PerformanceHealth)))]
async fn health(State(state): State<AppState>) -> Json<PerformanceHealth> {
    let profiler = &state.inner.profiler;
    Json(PerformanceHealth {
        health: profiler.health(),
        firing_alerts: profiler.firing_alerts(),
    })
}

/// A period of history.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub(crate) enum Period {
    /// The last hour.
    #[default]
    #[serde(rename = "1h")]
    Hour,
    /// The last day.
    #[serde(rename = "24h")]
    Day,
    /// The last week.
    #[serde(rename = "7d")]
    Week,
}

impl Period {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Period::Hour => 3600,
            Period::Day => 24 * 3600,
            Period::Week => 7 * 24 * 3600,
        })
    }
}

/// How a report is written.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// JSON.
    #[default]
    Json,
    /// A Markdown document.
    Markdown,
    /// CSV: one row per figure.
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// `1h` (default), `24h` or `7d`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    period: Period,
    /// `json` (default), `markdown` or `csv`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    format: Format,
}

/// Statistics, breaches, trend flags and recommendations over a period.
#[utoipa::path(get, path = "/api/v1/performance/report", tag = "performance",
    security(("bearer" = [])), params(ReportQuery),
    responses(
        (status = 200, description = "The report in the format asked for"),
        (status = 400, description = "An unknown period or format"),
    ))]
async fn report(State(state): State<AppState>, Query(query): Query<ReportQuery>) -> Response {
    let report = state.inner.profiler.report(query.period.duration());
    match query.format {
        Format::Json => ([(CONTENT_TYPE, "application/json")], report.to_json()).into_response(),
        Format::Markdown => (
            [(CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.to_markdown(),
        )
            .into_response(),
        Format::Csv => {
            ([(CONTENT_TYPE, "text/csv; charset=utf-8")], report.to_csv()).into_response()
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrendQuery {
    /// A figure of `/performance/metrics` (`request_latency_p95_ms`, `resident_bytes`...).
    metric: String,
    /// `1h` (default), `24h` or `7d`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    period: Period,
}

/// The samples of one figure and the fitted trend.
#[utoipa::path(get, path = "/api/v1/performance/trends", tag = "performance",
    security(("bearer" = [])), params(TrendQuery),
    responses(
        (status = 200, description = "Samples, slope, EWMA and change point"),
        (status = 400, description = "An unknown metric or period"),
        (status = 404, description = "Fewer than two samples of the metric yet"),
    ))]
async fn trends(
    State(state): State<AppState>,
    Query(query): Query<TrendQuery>,
) -> Result<Json<Trend>, ApiError> {
    let profiler = &state.inner.profiler;
    let known: Vec<String> = profiler.snapshot().values.into_keys().collect();
    if !known.contains(&query.metric) {
        return Err(ApiError::invalid_parameter(
            "metric",
            format!("one of {}", known.join(", ")),
        ));
    }
    profiler
        .trend(&query.metric, query.period.duration())
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "fewer than two samples of `{}` in the period yet; one is taken every {:?}",
                query.metric,
                state.config().monitoring.metrics_update_interval
            ))
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptimizeQuery {
    /// `all` (default), `memory` (or `gc`), `cache`, `pools` or `db`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// What the optimizer did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Optimized {
    /// The target asked for.
    target: String,
    /// Each action run, with its before and after figures.
    #[schema(value_type = Vec<Object>)]
    actions: Vec<ActionReport>,
}

/// Runs the optimizer's actions of a kind, or all.
#[utoipa::path(post, path = "/api/v1/performance/optimize", tag = "performance",
    security(("bearer" = [])), params(OptimizeQuery),
    responses(
        (status = 200, description = "What each action did, with before and after figures", body = Optimized),
        (status = 400, description = "An unknown type"),
    ))]
async fn optimize(
    State(state): State<AppState>,
    Query(query): Query<OptimizeQuery>,
) -> Result<Json<Optimized>, ApiError> {
    let kind = query.kind.unwrap_or_else(|| "all".to_owned());
    let target: Target = kind.parse().map_err(|_| {
        ApiError::invalid_parameter("type", "one of all, memory, gc, cache, pools, db")
    })?;
    let actions = state.inner.optimizer.run(target).await;
    Ok(Json(Optimized {
        target: kind,
        actions,
    }))
}

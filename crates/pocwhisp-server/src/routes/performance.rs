//! `/api/v1/performance/*` (admin): the profiler's current figures, health against the
//! thresholds, reports over a period, trends with their samples, the optimizer, and
//! a server-sent event stream of all of it (the dashboard's feed).

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

use crate::http::{ApiError, Query};
use crate::state::AppState;
use crate::store::rfc3339;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(health))
        .routes(routes!(report))
        .routes(routes!(trends))
        .routes(routes!(optimize))
        .routes(routes!(stream))
}

/// The figures of one moment, by the snapshot's names.
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamParams {
    /// Between two events, as `1s` or `500ms`: 250 ms to 60 s (default 1 s).
    #[param(value_type = Option<String>)]
    interval: Option<String>,
}

/// One event of the stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Tick {
    /// When, RFC 3339.
    at: String,
    /// The snapshot's figures by their names.
    values: BTreeMap<String, f64>,
    /// The worst check: `ok`, `warning` or `critical`.
    health: String,
    /// Each threshold's check.
    #[schema(value_type = Vec<Object>)]
    checks: Vec<perf_profiler::health::Check>,
    /// The levels, to draw on charts.
    #[schema(value_type = Vec<Object>)]
    thresholds: Vec<perf_profiler::health::Threshold>,
    /// The alerts firing now.
    alerts: Vec<FiringAlert>,
    /// Storage and engine: `ok`, `degraded` or `down`, with what was found.
    components: BTreeMap<&'static str, ComponentState>,
}

/// An alert firing now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FiringAlert {
    name: String,
    metric: String,
    /// `warning` or `critical`.
    severity: String,
}

/// A component's state, read without a round trip.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ComponentState {
    status: &'static str,
    detail: String,
}

fn tick(state: &AppState, thresholds: &[perf_profiler::health::Threshold]) -> Tick {
    let shared = &state.inner;
    let snapshot = shared.profiler.snapshot();
    let report = perf_profiler::health::check(&snapshot, thresholds);
    let rules = &state.config().alerts.rules;
    let alerts = shared
        .profiler
        .firing_alerts()
        .into_iter()
        .map(|name| {
            let rule = rules.iter().find(|rule| rule.name == name);
            FiringAlert {
                metric: rule.map(|rule| rule.metric.clone()).unwrap_or_default(),
                severity: rule
                    .map(|rule| format!("{:?}", rule.severity).to_lowercase())
                    .unwrap_or_else(|| "warning".to_owned()),
                name,
            }
        })
        .collect();
    let mut components = BTreeMap::new();
    let breaker = shared
        .store
        .figures()
        .into_iter()
        .find(|(name, _)| *name == "breaker_state")
        .map_or(0.0, |(_, value)| value);
    let storage = match (shared.readiness.reason(), breaker) {
        (Some(reason), _) => ComponentState {
            status: "down",
            detail: reason,
        },
        (None, state) if state == 1.0 || state == 3.0 => ComponentState {
            status: "down",
            detail: format!("{}: circuit open", shared.store.backend()),
        },
        (None, _) => ComponentState {
            status: "ok",
            detail: shared.store.backend().to_owned(),
        },
    };
    components.insert("storage", storage);
    let engine = match (&shared.jobs, &shared.engine_problem) {
        (Some(jobs), _) => {
            let status = jobs.engine().status();
            ComponentState {
                status: status.status,
                detail: status.detail,
            }
        }
        (None, problem) => ComponentState {
            status: "down",
            detail: problem.clone().unwrap_or_default(),
        },
    };
    components.insert("engine", engine);
    Tick {
        at: rfc3339(snapshot.taken_at),
        values: snapshot.values,
        health: report.status.to_string(),
        checks: report.checks,
        thresholds: thresholds.to_vec(),
        alerts,
        components,
    }
}

/// The figures, health, alerts and components, as server-sent events: one `tick` event now
/// and every `interval` after.
#[utoipa::path(get, path = "/api/v1/performance/stream", tag = "performance",
    security(("bearer" = [])), params(StreamParams),
    responses(
        (status = 200, description = "text/event-stream of `tick` events, each a JSON Tick", body = Tick),
        (status = 400, description = "An interval out of range"),
    ))]
async fn stream(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let interval = match params.interval.as_deref() {
        None => Duration::from_secs(1),
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|interval| {
                (Duration::from_millis(250)..=Duration::from_secs(60)).contains(interval)
            })
            .ok_or_else(|| ApiError::invalid_parameter("interval", "250ms to 60s, as `1s`"))?,
    };
    let thresholds = crate::app::thresholds(state.config());
    let ticks = tokio::time::interval(interval);
    let events = futures_util::stream::unfold(
        (ticks, state, thresholds),
        |(mut ticks, state, thresholds)| async move {
            ticks.tick().await;
            let event = axum::response::sse::Event::default()
                .event("tick")
                .json_data(tick(&state, &thresholds))
                .map_err(|error| std::io::Error::other(error.to_string()));
            Some((event, (ticks, state, thresholds)))
        },
    );
    Ok(axum::response::sse::Sse::new(events)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

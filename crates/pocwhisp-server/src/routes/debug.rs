//! `/debug/pprof/*` (admin): a CPU profile of the running server, as a pprof protobuf
//! (readable by `go tool pprof`) or a flamegraph SVG. One capture at a time (409 otherwise);
//! `seconds` from 1 to 60.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use perf_profiler::cpu::{CaptureError, CpuProfile, MAX_DURATION};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiError, Query};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(profile))
        .routes(routes!(flamegraph))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaptureQuery {
    /// How long to sample, 1 to 60 (default 10).
    seconds: Option<u64>,
}

/// Samples the process at 99 Hz for the time asked.
async fn capture(state: &AppState, query: CaptureQuery) -> Result<CpuProfile, ApiError> {
    let seconds = query.seconds.unwrap_or(10);
    if !(1..=MAX_DURATION.as_secs()).contains(&seconds) {
        return Err(ApiError::invalid_parameter(
            "seconds",
            format!("a whole number from 1 to {}", MAX_DURATION.as_secs()),
        ));
    }
    state
        .inner
        .cpu
        .capture(Duration::from_secs(seconds), 99)
        .await
        .map_err(|error| match error {
            CaptureError::Busy => ApiError::Conflict(
                "a CPU profile is already being captured; try again when it ends".to_owned(),
            ),
            other => ApiError::internal(other),
        })
}

/// A CPU profile in pprof's protobuf format.
#[utoipa::path(get, path = "/debug/pprof/profile", tag = "operations",
    security(("bearer" = [])), params(CaptureQuery),
    responses(
        (status = 200, description = "pprof protobuf", content_type = "application/octet-stream"),
        (status = 409, description = "Another capture is running"),
    ))]
async fn profile(
    State(state): State<AppState>,
    Query(query): Query<CaptureQuery>,
) -> Result<Response, ApiError> {
    let profile = capture(&state, query).await?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream"),
            (CONTENT_DISPOSITION, "attachment; filename=\"cpu.pb\""),
        ],
        profile.pprof,
    )
        .into_response())
}

/// A CPU profile drawn as a flamegraph.
#[utoipa::path(get, path = "/debug/pprof/flamegraph", tag = "operations",
    security(("bearer" = [])), params(CaptureQuery),
    responses(
        (status = 200, description = "SVG", content_type = "image/svg+xml"),
        (status = 409, description = "Another capture is running"),
    ))]
async fn flamegraph(
    State(state): State<AppState>,
    Query(query): Query<CaptureQuery>,
) -> Result<Response, ApiError> {
    let seconds = query.seconds.unwrap_or(10);
    let profile = capture(&state, query).await?;
    let svg = if profile.samples == 0 {
        // Nothing ran on a CPU while sampling: say so rather than send an empty picture.
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
             <text x=\"10\" y=\"25\" font-family=\"sans-serif\" font-size=\"14\">\
             No CPU samples in {seconds} s: the server was idle.</text></svg>"
        )
        .into_bytes()
    } else {
        profile.flamegraph_svg
    };
    Ok(([(CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

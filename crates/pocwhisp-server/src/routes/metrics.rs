//! `GET /metrics` (admin): every metric of every crate, as Prometheus text exposition.

use axum::extract::State;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(exposition))
}

/// Prometheus text exposition of every `pocwhisp_` metric.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn exposition(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges that are published on reading (pools, caches, limiters) are fresh.
    crate::app::publish_gauges(&state);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.inner.prometheus.render(),
    )
}

//! The routes, one module per family, each with its own `router()`; [`router`] merges them
//! and collects their OpenAPI descriptions from the same annotations.

pub(crate) mod cache;
mod dashboard;
pub(crate) mod debug;
pub(crate) mod health;
pub(crate) mod metrics;
mod openai;
pub(crate) mod openapi;
pub(crate) mod performance;
pub(crate) mod transcribe;
mod upload;

use openapi::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use perf_middleware::timeout::TimeoutLayer;

use crate::http::RouteLabelLayer;
use crate::state::AppState;

/// The OpenAPI document's frame; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PocWhisp",
        description = "Transcription API: upload audio, get speaker-labelled segments; performance, cache, health and metrics endpoints.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "transcription", description = "Upload audio and read the transcripts (user)"),
        (name = "openai", description = "OpenAI-compatible transcription and models (user)"),
        (name = "dashboard", description = "The monitoring page (asks for an admin token)"),
        (name = "health", description = "Liveness, readiness and dependencies; no token needed"),
        (name = "performance", description = "The profiler's figures, health, reports, trends and optimizer (admin)"),
        (name = "cache", description = "The response cache (admin)"),
        (name = "operations", description = "Prometheus metrics, CPU profiles and this document"),
    )
)]
pub(crate) struct ApiDoc;

/// Every route family, with the document describing them. Each request gets the deadline
/// of its family (`server.request_timeout`, longer for CPU profiles, which take as long as
/// they are asked to), and every response its route template for the metrics and logs.
pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let config = state.config();
    let deadline = TimeoutLayer::new(config.server.request_timeout);
    let profile_deadline =
        TimeoutLayer::new(perf_profiler::cpu::MAX_DURATION + config.server.request_timeout);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Uploads take as long as the client sends; the routes set their own limits.
        .merge(transcribe::router(state))
        .merge(openai::router(state))
        .merge(dashboard::router().route_layer(deadline))
        .merge(health::router().route_layer(deadline))
        .merge(performance::router().route_layer(deadline))
        .merge(cache::router().route_layer(deadline))
        .merge(metrics::router().route_layer(deadline))
        .merge(openapi::router().route_layer(deadline))
        .merge(debug::router().route_layer(profile_deadline))
        .route_layer(RouteLabelLayer)
}

//! The routes, one module per family, each with its own `router()`; [`router`] merges them
//! and collects their OpenAPI descriptions from the same annotations.

mod assets;
pub(crate) mod cache;
mod dashboard;
pub(crate) mod debug;
pub(crate) mod health;
pub(crate) mod metrics;
mod openai;
pub(crate) mod openapi;
mod page;
pub(crate) mod performance;
pub(crate) mod transcribe;
mod upload;

use openapi::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use perf_middleware::timeout::TimeoutLayer;

use crate::config::Role;
use crate::http::{RequireRole, RouteLabelLayer};
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
        (name = "page", description = "The transcription page for people (asks for a token)"),
        (name = "dashboard", description = "The monitoring page (asks for an admin token)"),
        (name = "health", description = "Liveness, readiness and dependencies; no token needed"),
        (name = "performance", description = "The profiler's figures, health, reports, trends and optimizer (admin)"),
        (name = "cache", description = "The response cache (admin)"),
        (name = "operations", description = "Prometheus metrics, CPU profiles and this document"),
    )
)]
pub(crate) struct ApiDoc;

/// Every route family, with the document describing them, each behind its guard: the role
/// it needs, its deadline (`server.request_timeout`, longer for CPU profiles, which take as
/// long as they are asked to; none for uploads, which take as long as the client sends and
/// set their own limits), and the route template every response carries for the metrics and
/// logs.
///
/// Each family's guard is one tuple of layers given to `route_layer` once: axum boxes a route
/// again for each `route_layer` call and clones the boxes on every request, so one call per
/// family is one box per request instead of three.
pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let config = state.config();
    let deadline = TimeoutLayer::new(config.server.request_timeout);
    let profile_deadline =
        TimeoutLayer::new(perf_profiler::cpu::MAX_DURATION + config.server.request_timeout);
    let (user, admin) = (RequireRole(Role::User), RequireRole(Role::Admin));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(transcribe::router(state).route_layer((RouteLabelLayer, user)))
        .merge(openai::router(state).route_layer((RouteLabelLayer, user)))
        .merge(page::router().route_layer((RouteLabelLayer, deadline)))
        .merge(dashboard::router().route_layer((RouteLabelLayer, deadline)))
        .merge(health::router().route_layer((RouteLabelLayer, deadline)))
        .merge(performance::router().route_layer((RouteLabelLayer, deadline, admin)))
        .merge(cache::router().route_layer((RouteLabelLayer, deadline, admin)))
        .merge(metrics::router().route_layer((RouteLabelLayer, deadline, admin)))
        .merge(openapi::router().route_layer((RouteLabelLayer, deadline)))
        .merge(debug::router().route_layer((RouteLabelLayer, profile_deadline, admin)))
}

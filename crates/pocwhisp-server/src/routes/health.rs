//! `GET /api/v1/live`, `/ready` and `/health`: no token needed, never shed.
//!
//! - live: the process answers.
//! - ready: storage is open and migrated; 503 with the reason (and `Retry-After`) until then;
//!   `degraded` with the reason when there is no speech engine (reads still work).
//! - health: each dependency (storage, engine, disk space of the data directory, Redis when
//!   configured) with its status; 503 when one is down (Redis is at worst degraded). What
//!   was found (paths, hosts, errors) only for an admin token: it maps the deployment.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Role;
use crate::http::{ApiError, Principal};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(health))
}

/// A status and, when it is not fine, why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    /// `alive`, `ready`, `degraded` (serving, but uploads are refused) or `not_ready`.
    status: &'static str,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The process answers.
#[utoipa::path(get, path = "/api/v1/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = Status)))]
async fn live() -> Json<Status> {
    Json(Status {
        status: "alive",
        reason: None,
    })
}

/// Storage is open and migrated.
#[utoipa::path(get, path = "/api/v1/ready", tag = "health",
    responses(
        (status = 200, description = "Ready for traffic", body = Status),
        (status = 503, description = "Not ready; with an admin token, why"),
    ))]
async fn ready(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Result<Json<Status>, ApiError> {
    match state.inner.readiness.reason() {
        // Without an engine the server still serves reads; it says why uploads are refused.
        None => Ok(Json(Status {
            status: if state.inner.jobs.is_some() {
                "ready"
            } else {
                "degraded"
            },
            reason: state
                .inner
                .engine_problem
                .as_ref()
                .map(|problem| format!("uploads are refused: {problem}")),
        })),
        Some(reason) => Err(ApiError::Unavailable {
            // The storage's error names hosts and databases: for admins only.
            message: if principal.is_some_and(|Extension(principal)| principal.may(Role::Admin)) {
                format!("not ready: {reason}")
            } else {
                "not ready: storage is not ready yet (an admin token shows why)".to_owned()
            },
            retry_after: Duration::from_secs(2),
        }),
    }
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Component {
    /// `ok`, `degraded` or `down`.
    status: &'static str,
    /// What was checked and found; shown to admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Every dependency.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` when every component is; `degraded`; `down` when one is down.
    status: &'static str,
    /// The server's version.
    version: &'static str,
    /// Seconds since start.
    uptime_seconds: u64,
    /// Storage, engine, disk, Redis.
    components: std::collections::BTreeMap<&'static str, Component>,
}

/// Free space under which the disk is degraded, and down.
const DISK_DEGRADED: f64 = 10.0;
const DISK_DOWN: f64 = 2.0;

/// Each dependency checked now; with an admin token, what was found.
#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    responses(
        (status = 200, description = "Every dependency up (some may be degraded)", body = Health),
        (status = 503, description = "A dependency is down", body = Health),
    ))]
async fn health(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Response {
    let mut components = std::collections::BTreeMap::new();
    let store = &state.inner.store;
    let storage = match state.inner.readiness.reason() {
        Some(reason) => Component {
            status: "down",
            detail: Some(reason),
        },
        None => match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
            Ok(Ok(())) => Component {
                status: "ok",
                detail: Some(format!("{} answers", store.backend())),
            },
            Ok(Err(error)) => Component {
                status: "down",
                detail: Some(error.to_string()),
            },
            Err(_) => Component {
                status: "down",
                detail: Some(format!("{} did not answer within 2 s", store.backend())),
            },
        },
    };
    components.insert("storage", storage);
    components.insert("disk", disk(&state));
    let engine = match (&state.inner.jobs, &state.inner.engine_problem) {
        (Some(jobs), _) => {
            let engine = jobs.engine().status();
            Component {
                status: engine.status,
                detail: Some(format!(
                    "{}, {} jobs running here",
                    engine.detail,
                    jobs.running()
                )),
            }
        }
        (None, problem) => Component {
            status: "down",
            detail: problem.clone(),
        },
    };
    components.insert("engine", engine);
    if let Some(redis) = &state.inner.redis {
        // Degraded, never down: without Redis the server works on, each instance alone.
        let (status, detail) = redis.health().await;
        components.insert(
            "redis",
            Component {
                status,
                detail: Some(detail),
            },
        );
    }
    let worst = components
        .values()
        .map(|component| component.status)
        .max_by_key(|status| match *status {
            "ok" => 0,
            "degraded" => 1,
            _ => 2,
        })
        .unwrap_or("ok");
    let code = if worst == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    if !principal.is_some_and(|Extension(principal)| principal.may(Role::Admin)) {
        for component in components.values_mut() {
            component.detail = None;
        }
    }
    let body = Health {
        status: worst,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.inner.started.elapsed().as_secs(),
        components,
    };
    (code, Json(body)).into_response()
}

/// Free space of the data directory's file system.
fn disk(state: &AppState) -> Component {
    let dir = &state.config().server.data_dir;
    match rustix::fs::statvfs(dir) {
        Ok(stats) => {
            let free = stats.f_bavail.saturating_mul(stats.f_frsize);
            let total = stats.f_blocks.saturating_mul(stats.f_frsize).max(1);
            let percent = free as f64 * 100.0 / total as f64;
            let reserve_in_use = state.inner.disk_reserve.is_released();
            let status = if percent < DISK_DOWN || reserve_in_use {
                "down"
            } else if percent < DISK_DEGRADED {
                "degraded"
            } else {
                "ok"
            };
            Component {
                status,
                detail: Some(format!(
                    "{:.1} % free ({} MiB) in {}; {} abandoned partial uploads removed{}",
                    percent,
                    free >> 20,
                    dir.display(),
                    state.inner.upload_sweeper.removed(),
                    if reserve_in_use {
                        "; the disk filled and its reserve is in use: uploads are refused until there is room"
                    } else {
                        ""
                    }
                )),
            }
        }
        Err(error) => Component {
            status: "down",
            detail: Some(format!("cannot read {}: {error}", dir.display())),
        },
    }
}

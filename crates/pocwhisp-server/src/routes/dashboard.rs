//! `GET /dashboard`: the monitoring page, served by the server itself with no build step and
//! nothing fetched from elsewhere. The page and its script and style carry no data, so they
//! need no token; the page asks for an admin token once, keeps it in the tab's session
//! storage, and sends it on every call (the stream, the optimizer, the warm-up, reports).

use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::assets::asset;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../assets/dashboard/app.css");
const ICON: &str = include_str!("../../assets/dashboard/icon.svg");

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style))
        .routes(routes!(icon))
}

/// The monitoring page.
#[utoipa::path(get, path = "/dashboard", tag = "dashboard",
    responses((status = 200, description = "The page (HTML); it asks for an admin token")))]
async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/dashboard/app.js", tag = "dashboard",
    responses((status = 200, description = "JavaScript")))]
async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's icon.
#[utoipa::path(get, path = "/dashboard/icon.svg", tag = "dashboard",
    responses((status = 200, description = "SVG")))]
async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// The page's style.
#[utoipa::path(get, path = "/dashboard/app.css", tag = "dashboard",
    responses((status = 200, description = "CSS")))]
async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

//! `GET /`: the transcription page for people, served by the server itself with no build
//! step and nothing fetched from elsewhere. Like the dashboard, its files carry no data and
//! need no token; the page asks for the user's token, keeps it in the tab's session storage
//! and sends it with every call: uploads (`mode=stream`, whose events show the words as they
//! are decoded), the user's sessions, downloads and deletes.

use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::assets::asset;
use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/page/index.html");
const SCRIPT: &str = include_str!("../../assets/page/app.js");
const STYLE: &str = include_str!("../../assets/page/app.css");

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style))
}

/// The transcription page.
#[utoipa::path(get, path = "/", tag = "page",
    responses((status = 200, description = "The page (HTML); it asks for a token")))]
async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/page/app.js", tag = "page",
    responses((status = 200, description = "JavaScript")))]
async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's style.
#[utoipa::path(get, path = "/page/app.css", tag = "page",
    responses((status = 200, description = "CSS")))]
async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

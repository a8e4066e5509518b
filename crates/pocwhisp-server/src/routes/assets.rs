//! The pages the binary serves (the transcription page, the dashboard): their files are
//! compiled in, and every one goes out with the same headers.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};

/// Scripts and styles from this server only, no inline code, no framing. The microphone
/// needs no directive: the browser asks the user.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `body` as a page file: revalidated on every load (a new binary serves new files), under
/// the policy.
pub(super) fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
        .into_response()
}

//! The outermost layer: every 4xx and 5xx leaves as the one JSON shape of DESIGN.md,
//! `{"error", "message", "request_id"}`, whichever layer produced it: a route's
//! [`ApiError`](super::ApiError), the router's 404 and 405, or a perf layer's 413, 429, 503 or
//! 504 (which answer with an empty body). The request id is the `X-Request-Id` the request-id
//! layer put on the response.

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::Body as HttpBody;
use serde::Serialize;

use super::error::{ErrorBody, code_for};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    message: &'a str,
    request_id: &'a str,
}

/// Turns any response into one with an [`axum::body::Body`], writing the JSON error body for
/// error statuses that carry none yet.
pub(crate) fn render<B>(response: Response<B>) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response.map(Body::new);
    }
    let chosen = response.extensions().get::<ErrorBody>().cloned();
    // A body written on purpose (an OpenAI-shaped error, say) is left alone.
    if chosen.is_none() && response.body().size_hint().exact() != Some(0) {
        return response.map(Body::new);
    }
    let (code, message) = match &chosen {
        Some(body) => (body.code, body.message.as_str()),
        None => code_for(status),
    };
    let (mut parts, _) = response.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let json = serde_json::to_vec(&ErrorJson {
        error: code,
        message,
        request_id,
    })
    .expect("strings serialize");
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_ENCODING);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(json.len()));
    Response::from_parts(parts, Body::from(json))
}

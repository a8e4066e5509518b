//! The outermost layer: every 4xx and 5xx leaves as JSON, whichever layer produced it: a
//! route's [`ApiError`](super::ApiError), the router's 404 and 405, or a perf layer's 413,
//! 429, 503 or 504 (which answer with an empty body). Under `/v1/` (the OpenAI-compatible
//! routes) the body is OpenAI's `{"error": {"message", "type", "param", "code"}}`, which the
//! OpenAI SDKs parse; elsewhere it is `{"error", "message", "request_id"}` (docs/ARCHITECTURE.md). The
//! request id is the `X-Request-Id` the request-id layer put on the response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
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

#[derive(Serialize)]
struct OpenAiJson<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: &'a str,
}

/// Which error body a route family speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Ours,
    OpenAi,
}

/// OpenAI's error `type` for a status.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// [`tower::Layer`] writing every error body in the shape of the route family.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RenderErrorsLayer;

impl<S> tower::Layer<S> for RenderErrorsLayer {
    type Service = RenderErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RenderErrors { inner }
    }
}

/// See [`RenderErrorsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RenderErrors<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RenderErrors<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Rendering<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shape = if request.uri().path().starts_with("/v1/") {
            Shape::OpenAi
        } else {
            Shape::Ours
        };
        Rendering {
            inner: self.inner.call(request),
            shape,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RenderErrors`].
    pub(crate) struct Rendering<F> {
        #[pin]
        inner: F,
        shape: Shape,
    }
}

impl<F, B, E> Future for Rendering<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let shape = *this.shape;
        this.inner
            .poll(cx)
            .map(|result| result.map(|response| render(response, shape)))
    }
}

/// Turns any response into one with an [`axum::body::Body`], writing the JSON error body for
/// error statuses that carry none yet.
fn render<B>(response: Response<B>, shape: Shape) -> Response<Body>
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
    let json = match shape {
        Shape::Ours => serde_json::to_vec(&ErrorJson {
            error: code,
            message,
            request_id,
        }),
        Shape::OpenAi => serde_json::to_vec(&OpenAiJson {
            error: OpenAiError {
                message,
                kind: openai_type(status),
                param: chosen.as_ref().and_then(|body| body.param.as_deref()),
                code,
            },
        }),
    }
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

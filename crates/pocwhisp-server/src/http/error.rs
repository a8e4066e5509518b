//! Every error answer: [`ApiError`] for the routes, and the JSON body every 4xx and 5xx gets,
//! whichever layer produced it (see [`super::error_body`]).

use std::fmt;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

/// What a route answers when it cannot do what was asked. Each becomes a status and the JSON
/// body `{"error", "message", "request_id"}`; a 5xx body stays generic and its cause is logged
/// once, inside the request's span.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: input that cannot be understood; `code` names the kind (`invalid_parameter`,
    /// `invalid_json`, `missing_file`, `invalid_audio`).
    BadRequest {
        /// The error code.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// 400 naming the parameter at fault (`invalid_parameter`).
    InvalidParameter {
        /// The parameter.
        param: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// 401: no token, or one that is not valid.
    Unauthorized(&'static str),
    /// 403: a valid token without the role the route needs.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 408: the request body came too slowly (`server.body_read_timeout`, `min_body_rate`).
    RequestTimeout(String),
    /// 409: the resource is busy (a CPU profile already being captured).
    Conflict(String),
    /// 413.
    PayloadTooLarge(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 422: understood, but outside what the server accepts (`audio_constraints`).
    Unprocessable {
        /// The error code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// 429 with `Retry-After`: the caller has enough in flight already.
    TooManyRequests {
        /// What the caller has, and the limit.
        message: String,
        /// When to come back.
        retry_after: Duration,
    },
    /// 503 with `Retry-After`: a dependency is down or the server is shedding.
    Unavailable {
        /// Why, and what fixes it.
        message: String,
        /// When to come back.
        retry_after: Duration,
    },
    /// 507: the disk is full; nothing was stored.
    InsufficientStorage(String),
    /// 500: a bug or an unexpected failure; the message is logged, never sent.
    Internal(String),
}

/// Shorthand for route results.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// A 400 naming `field` and what it accepts.
    pub fn invalid_parameter(field: &str, expected: impl fmt::Display) -> Self {
        ApiError::InvalidParameter {
            param: field.to_owned(),
            message: format!("invalid `{field}`: expected {expected}"),
        }
    }

    /// A 500 from any error; the cause is logged.
    pub fn internal(error: impl fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }

    /// The status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::InvalidParameter { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told (a 5xx's cause stays in the log).
    pub fn message(&self) -> String {
        self.body().message
    }

    fn body(&self) -> ErrorBody {
        let (code, message) = match self {
            ApiError::InvalidParameter { param, message } => {
                return ErrorBody {
                    code: "invalid_parameter",
                    message: message.clone(),
                    param: Some(param.clone()),
                };
            }
            ApiError::BadRequest { code, message } | ApiError::Unprocessable { code, message } => {
                (*code, message.clone())
            }
            ApiError::Unauthorized(message) => ("unauthorized", (*message).to_owned()),
            ApiError::Forbidden(message) => ("forbidden", message.clone()),
            ApiError::NotFound(message) => ("not_found", message.clone()),
            ApiError::RequestTimeout(message) => ("timeout", message.clone()),
            ApiError::Conflict(message) => ("conflict", message.clone()),
            ApiError::PayloadTooLarge(message) => ("file_too_large", message.clone()),
            ApiError::UnsupportedMediaType(message) => ("invalid_file_type", message.clone()),
            ApiError::TooManyRequests { message, .. } => ("rate_limited", message.clone()),
            ApiError::Unavailable { message, .. } => ("unavailable", message.clone()),
            ApiError::InsufficientStorage(message) => ("insufficient_storage", message.clone()),
            ApiError::Internal(_) => (
                "internal",
                "the server failed to handle the request; it has been logged".to_owned(),
            ),
        };
        ErrorBody {
            code,
            message,
            param: None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Internal(cause) => write!(f, "internal error: {cause}"),
            other => write!(f, "{}: {}", other.status(), other.body().message),
        }
    }
}

impl std::error::Error for ApiError {}

/// An error's code and message, carried in the response's extensions to the layer that
/// writes every error body with the request id.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    /// The error code (`not_found`).
    pub code: &'static str,
    /// The message for a person.
    pub message: String,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        if let ApiError::Internal(cause) = &self {
            // Logged once, with the request's id, by the trace layer.
            response
                .extensions_mut()
                .insert(super::trace::ErrorCause(cause.clone()));
        }
        match &self {
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable { retry_after, .. }
            | ApiError::TooManyRequests { retry_after, .. } => {
                let seconds = retry_after.as_secs().max(1);
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response.extensions_mut().insert(self.body());
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("invalid query: {}", rejection.body_text()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return ApiError::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge(
                "the body is larger than the server accepts".to_owned(),
            );
        }
        ApiError::BadRequest {
            code: "invalid_json",
            message: rejection.body_text(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_parameter",
            message: format!("invalid path: {}", rejection.body_text()),
        }
    }
}

/// The error code of a status that no route chose (a layer's refusal, axum's 405).
pub(crate) fn code_for(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "the request could not be understood"),
        401 => ("unauthorized", "a valid bearer token is required"),
        403 => ("forbidden", "this token may not use this route"),
        404 => ("not_found", "no such route"),
        405 => (
            "method_not_allowed",
            "the route does not accept this method; see `Allow`",
        ),
        408 => ("timeout", "the request was not received in time"),
        409 => ("conflict", "the resource is busy"),
        413 => (
            "file_too_large",
            "the body is larger than the server accepts",
        ),
        415 => (
            "invalid_file_type",
            "the content type is not one the route accepts",
        ),
        422 => (
            "unprocessable",
            "the request was understood but cannot be processed",
        ),
        429 => (
            "rate_limited",
            "too many requests; wait for `Retry-After` seconds",
        ),
        503 => (
            "unavailable",
            "the server is busy or a dependency is down; retry after `Retry-After`",
        ),
        504 => ("timeout", "the request took longer than the server allows"),
        _ if status.is_server_error() => ("internal", "the server failed to handle the request"),
        _ => ("error", "the request failed"),
    }
}

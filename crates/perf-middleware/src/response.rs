//! Responses the layers answer themselves.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

/// An empty response with `status`.
pub(crate) fn empty<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// An empty response with `status` and `Retry-After`.
pub(crate) fn retry_later<B: Default>(status: StatusCode, after: Duration) -> Response<B> {
    let mut response = empty(status);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_seconds(after)),
    );
    response
}

/// Whole seconds, rounded up, and at least 1: `Retry-After: 0` invites an immediate retry
/// into the same refusal.
pub(crate) fn retry_after_seconds(after: Duration) -> u64 {
    ceil_seconds(after).max(1)
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

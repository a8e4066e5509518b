use http::{Response, StatusCode};

use crate::classify::Classify;

/// The default HTTP classification: an inner error, a 5xx or a `408 Request Timeout` is a
/// failure; any other status, 4xx included, is a success, since a client's bad request says
/// nothing about the health of the service behind the breaker.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier;

impl HttpClassifier {
    /// Whether a response with `status` counts as a failure.
    pub fn is_failure_status(status: StatusCode) -> bool {
        status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    #[inline]
    fn is_failure(&self, result: &Result<Response<B>, E>) -> bool {
        result
            .as_ref()
            .map_or(true, |response| Self::is_failure_status(response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_timeouts_fail_client_errors_do_not() {
        let classify = |status: u16| {
            let response = Response::builder().status(status).body(()).unwrap();
            HttpClassifier.is_failure(&Ok::<_, ()>(response))
        };
        for failing in [500, 502, 503, 504, 408] {
            assert!(classify(failing), "{failing} should fail");
        }
        for passing in [200, 204, 301, 304, 400, 401, 403, 404, 409, 422, 429] {
            assert!(!classify(passing), "{passing} should not fail");
        }
        assert!(HttpClassifier.is_failure(&Err::<Response<()>, _>("connection reset")));
    }
}

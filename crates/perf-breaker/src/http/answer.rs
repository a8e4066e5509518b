use http::{HeaderValue, Response, StatusCode, header};

use crate::error::CircuitOpen;
use crate::service::Answer;

/// The HTTP layer's answer: the inner service's response and error types unchanged, and a
/// rejection answered with `503 Service Unavailable`, `Retry-After` in whole seconds (rounded
/// up, at least 1: 0 would invite an immediate retry into the same open circuit) and an empty
/// body of the body type's [`Default`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RespondUnavailable;

impl<B, E> Answer<Response<B>, E> for RespondUnavailable
where
    B: Default,
{
    type Response = Response<B>;
    type Error = E;

    #[inline]
    fn admitted(result: Result<Response<B>, E>) -> Result<Response<B>, E> {
        result
    }

    fn rejected(&self, open: CircuitOpen) -> Result<Response<B>, E> {
        let retry_after = open.retry_after();
        let seconds = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        Ok(response)
    }

    fn not_ready(error: E) -> E {
        error
    }
}

//! A stored response and the responses built from it.

use bytes::Bytes;
use http::header::{AGE, CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use super::policy::Scope;
use super::validators;

/// A cached response: head and body, when it was stored (for `Age`), in nanoseconds on the
/// layer's clock, and whether it may answer a request with credentials.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) stored_at: u64,
    /// `public`, `s-maxage` or `must-revalidate`: see [`Scope::SharedWithCredentials`].
    pub(crate) answers_credentials: bool,
}

pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What the cache did, in `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Miss,
    Stale,
}

impl Outcome {
    pub(crate) fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
        })
    }
}

impl Stored {
    /// Whether this entry may answer a request of `scope`.
    pub(crate) fn serves(&self, scope: Scope) -> bool {
        scope != Scope::SharedWithCredentials || self.answers_credentials
    }

    /// The answer to a request from this stored response at `now` (nanoseconds on the
    /// layer's clock): `304` if its validators match, the full response otherwise (without
    /// a body for `HEAD`).
    pub(crate) fn answer(
        &self,
        request: &HeaderMap,
        head_only: bool,
        outcome: Outcome,
        now: u64,
    ) -> (Response<()>, Option<Bytes>) {
        let mut response = Response::new(());
        *response.status_mut() = self.status;
        let mut headers = self.headers.clone();
        // A clone is sized to what it holds, so each header the layers above add (`Age`,
        // `X-Cache`, rate-limit fields, request id, security headers...) would otherwise
        // grow and rehash the map again; one reservation here sizes it once.
        headers.reserve(HEADERS_ADDED_ABOVE);
        *response.headers_mut() = headers;
        let age = now.saturating_sub(self.stored_at) / 1_000_000_000;
        response.headers_mut().insert(AGE, HeaderValue::from(age));
        response.headers_mut().insert(X_CACHE, outcome.header());
        if validators::not_modified(request, self.status, &self.headers) {
            return (not_modified(response), None);
        }
        let body = (!head_only).then(|| self.body.clone());
        (response, body)
    }
}

/// Room reserved for headers added to an answer after the cache: `Age` and `X-Cache` here,
/// and what a usual tower stack adds outside (six rate-limit fields, a request id, two
/// security headers, `Vary`, `Server-Timing`...).
const HEADERS_ADDED_ABOVE: usize = 16;

/// Turns a response head into its `304 Not Modified`: same validators and caching headers,
/// no body and so no length.
pub(crate) fn not_modified(mut response: Response<()>) -> Response<()> {
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().remove(CONTENT_LENGTH);
    response
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_TYPE, ETAG};

    use super::*;

    #[test]
    fn an_answer_has_room_for_the_headers_added_above_it() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ETAG, HeaderValue::from_static("\"1\""));
        let stored = Stored {
            status: StatusCode::OK,
            headers: headers.clone(),
            body: Bytes::new(),
            stored_at: 0,
            answers_credentials: false,
        };
        let (response, _) = stored.answer(&HeaderMap::new(), false, Outcome::Hit, 0);
        assert!(
            response.headers().capacity() >= headers.len() + HEADERS_ADDED_ABOVE,
            "{} headers of room",
            response.headers().capacity()
        );
    }
}

use http::{HeaderMap, HeaderName};

use super::Decision;
use crate::response;

/// Which rate-limit fields a response carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// None: a 429 still carries `Retry-After`.
    None,
    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF
    /// draft-ietf-httpapi-ratelimit-headers).
    Standard,
    /// The standard fields and the same under the `X-RateLimit-*` names that older clients
    /// (and the original PocWhisp) use.
    #[default]
    StandardAndLegacy,
}

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const LEGACY_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const LEGACY_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const LEGACY_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

impl RateLimitHeaders {
    /// Writes `decision`'s fields, unless the response already reports a limit with fewer
    /// requests remaining: with a general limit outside and a route's stricter one inside,
    /// the client learns about the one it will hit first (as the IETF draft asks of several
    /// policies).
    pub(crate) fn write(self, headers: &mut HeaderMap, decision: &Decision) {
        if self == RateLimitHeaders::None {
            return;
        }
        let closer = [REMAINING, LEGACY_REMAINING].iter().find_map(|name| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u32>().ok())
        });
        if closer.is_some_and(|remaining| remaining < decision.remaining()) {
            return;
        }
        let limit = response::number(u64::from(decision.limit()));
        let remaining = response::number(u64::from(decision.remaining()));
        let reset = response::number(response::ceil_seconds(decision.reset()));
        if self == RateLimitHeaders::StandardAndLegacy {
            headers.insert(LEGACY_LIMIT, limit.clone());
            headers.insert(LEGACY_REMAINING, remaining.clone());
            headers.insert(LEGACY_RESET, reset.clone());
        }
        headers.insert(LIMIT, limit);
        headers.insert(REMAINING, remaining);
        headers.insert(RESET, reset);
    }
}

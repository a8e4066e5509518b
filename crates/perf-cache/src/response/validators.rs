//! ETags and conditional requests.

use foldhash::fast::FixedState;
use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue};
use std::hash::{BuildHasher, Hasher};

/// A fixed seed: the same body gets the same ETag in every process and on every instance
/// behind a load balancer.
const SEED: u64 = 0x706f_6377_6869_7370;

/// A strong ETag derived from the body: its length and a 64-bit hash.
pub(crate) fn etag_of(body: &[u8]) -> HeaderValue {
    let mut hasher = FixedState::with_seed(SEED).build_hasher();
    hasher.write(body);
    let value = format!("\"{:x}-{:016x}\"", body.len(), hasher.finish());
    HeaderValue::try_from(value).expect("hex digits and quotes are a valid header value")
}

/// Whether the request's validators say the client's copy is current, so a `304 Not
/// Modified` answers it. `If-None-Match` wins over `If-Modified-Since` when both are sent.
pub(crate) fn not_modified(request: &HeaderMap, response: &HeaderMap) -> bool {
    if let Some(candidates) = request.get(IF_NONE_MATCH) {
        let Some(etag) = response.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return candidates.to_str().is_ok_and(|candidates| {
            candidates
                .split(',')
                .map(str::trim)
                .any(|candidate| candidate == "*" || weak_eq(candidate, etag))
        });
    }
    let since = request
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = response
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Weak comparison (RFC 9110 8.8.3.2): equal opaque tags, `W/` prefixes ignored.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn http_date(time: SystemTime) -> String {
        httpdate::fmt_http_date(time)
    }

    fn map(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn etags_are_stable_and_content_sensitive() {
        assert_eq!(etag_of(b"hello"), etag_of(b"hello"));
        assert_ne!(etag_of(b"hello"), etag_of(b"hellp"));
        assert!(etag_of(b"").to_str().unwrap().starts_with("\"0-"));
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let response = map(&[(ETAG, "\"abc\"")]);
        for candidates in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(
                not_modified(&map(&[(IF_NONE_MATCH, candidates)]), &response),
                "{candidates}"
            );
        }
        assert!(!not_modified(
            &map(&[(IF_NONE_MATCH, "\"abd\"")]),
            &response
        ));
        assert!(!not_modified(
            &map(&[(IF_NONE_MATCH, "\"abc\"")]),
            &HeaderMap::new()
        ));
    }

    #[test]
    fn if_modified_since_compares_dates_and_yields_to_if_none_match() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let response = map(&[(LAST_MODIFIED, &http_date(modified))]);
        let later = http_date(modified + Duration::from_secs(60));
        let earlier = http_date(modified - Duration::from_secs(60));
        assert!(not_modified(
            &map(&[(IF_MODIFIED_SINCE, &later)]),
            &response
        ));
        assert!(!not_modified(
            &map(&[(IF_MODIFIED_SINCE, &earlier)]),
            &response
        ));
        assert!(!not_modified(
            &map(&[(IF_MODIFIED_SINCE, "garbage")]),
            &response
        ));
        let both = map(&[(IF_MODIFIED_SINCE, &later), (IF_NONE_MATCH, "\"other\"")]);
        assert!(!not_modified(&both, &response));
    }
}

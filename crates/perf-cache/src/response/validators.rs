//! ETags and conditional requests.

use std::fmt::Write as _;

use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

/// A strong ETag derived from the body: its SHA-256, in hex.
///
/// A digest rather than a fast hash, because an ETag decides whether a client keeps what it
/// holds: with a 64-bit non-cryptographic hash, a body crafted to collide with another
/// user's would be answered `304` with the other's bytes still in the client's cache.
/// Unkeyed, so the same body gets the same ETag in every process and on every instance
/// behind a load balancer. Computed once per stored response, not per hit.
pub(crate) fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut value = String::with_capacity(66);
    value.push('"');
    for byte in digest.iter() {
        let _ = write!(value, "{byte:02x}");
    }
    value.push('"');
    HeaderValue::try_from(value).expect("hex digits and quotes are a valid header value")
}

/// Whether the request's validators say the client's copy of a response with `status` and
/// `response` headers is current, so a `304 Not Modified` answers it. Only a 2xx can become
/// a 304 (RFC 9110 13.2.1): `If-None-Match: *` must not turn a stored 404 into "you have
/// it". `If-None-Match` wins over `If-Modified-Since` when both are sent.
pub(crate) fn not_modified(request: &HeaderMap, status: StatusCode, response: &HeaderMap) -> bool {
    if !status.is_success() {
        return false;
    }
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

    fn not_modified(request: &HeaderMap, response: &HeaderMap) -> bool {
        super::not_modified(request, StatusCode::OK, response)
    }

    #[test]
    fn etags_are_stable_and_content_sensitive() {
        assert_eq!(etag_of(b"hello"), etag_of(b"hello"));
        assert_ne!(etag_of(b"hello"), etag_of(b"hellp"));
        assert_eq!(
            etag_of(b"hello"),
            "\"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\""
        );
    }

    #[test]
    fn only_a_success_becomes_not_modified() {
        let response = map(&[(ETAG, "\"abc\"")]);
        for candidates in ["*", "\"abc\""] {
            let request = map(&[(IF_NONE_MATCH, candidates)]);
            assert!(super::not_modified(&request, StatusCode::OK, &response));
            for status in [
                StatusCode::NOT_FOUND,
                StatusCode::MOVED_PERMANENTLY,
                StatusCode::GONE,
            ] {
                assert!(
                    !super::not_modified(&request, status, &response),
                    "{status}"
                );
            }
        }
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

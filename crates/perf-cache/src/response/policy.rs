//! What `Cache-Control` (and friends) allow.

use std::time::Duration;

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, PRAGMA, SET_COOKIE};
use http::{HeaderMap, StatusCode};

/// The directives this cache acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
}

impl CacheControl {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut control = CacheControl::default();
        let directives = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        for directive in directives {
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || value.and_then(|v| v.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "no-store" => control.no_store = true,
                "no-cache" => control.no_cache = true,
                "private" => control.private = true,
                "public" => control.public = true,
                "must-revalidate" => control.must_revalidate = true,
                "max-age" => control.max_age = seconds().or(Some(0)),
                "s-maxage" => control.s_maxage = seconds().or(Some(0)),
                _ => {}
            }
        }
        // HTTP/1.0 clients say no-cache this way.
        if headers
            .get(PRAGMA)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("no-cache"))
        {
            control.no_cache = true;
        }
        control
    }
}

/// Whether a request lets the cache answer from storage, and whether it lets the response be
/// stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestPolicy {
    pub(crate) lookup: bool,
    pub(crate) store: bool,
}

pub(crate) fn request_policy(headers: &HeaderMap) -> RequestPolicy {
    let control = CacheControl::of(headers);
    RequestPolicy {
        // `no-cache` and `max-age=0` ask for a fresh answer from the origin; it may be stored.
        lookup: !(control.no_store || control.no_cache || control.max_age == Some(0)),
        store: !control.no_store,
    }
}

/// Whose entry a request reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The key function gave this request a key (a user, a tenant): its entries are its own,
    /// so `private` responses may be stored.
    Keyed,
    /// A shared entry, for a request without credentials.
    Shared,
    /// A shared entry, for a request carrying `Authorization` or a `Cookie`: RFC 9111 3.5
    /// lets a shared cache store or reuse its answer only when the response says so.
    SharedWithCredentials,
}

impl Scope {
    /// The scope of a request: keyed when the key function gave it a key, else shared, and
    /// then whether it carries credentials.
    pub(crate) fn of(keyed: bool, headers: &HeaderMap) -> Self {
        if keyed {
            Scope::Keyed
        } else if headers.contains_key(AUTHORIZATION) || headers.contains_key(COOKIE) {
            Scope::SharedWithCredentials
        } else {
            Scope::Shared
        }
    }
}

/// Whether a stored response may answer a request with credentials from a shared entry:
/// it said `public`, `s-maxage` or `must-revalidate` (RFC 9111 3.5).
pub(crate) fn answers_credentials(headers: &HeaderMap) -> bool {
    let control = CacheControl::of(headers);
    control.public || control.s_maxage.is_some() || control.must_revalidate
}

/// How long a response may be stored in `scope`, or `None` if it may not be: a shared
/// cache's rules, except that `private` responses are allowed in keyed entries.
pub(crate) fn response_ttl(
    status: StatusCode,
    headers: &HeaderMap,
    default_ttl: Duration,
    scope: Scope,
) -> Option<Duration> {
    let cacheable_status = matches!(status.as_u16(), 200 | 203 | 300 | 301 | 308 | 404 | 410);
    if !cacheable_status || headers.contains_key(SET_COOKIE) {
        return None;
    }
    let control = CacheControl::of(headers);
    if control.no_store || control.no_cache {
        return None;
    }
    let keyed = scope == Scope::Keyed;
    if control.private && !keyed {
        return None;
    }
    if scope == Scope::SharedWithCredentials
        && !(control.public || control.s_maxage.is_some() || control.must_revalidate)
    {
        return None;
    }
    let seconds = if keyed {
        control.max_age.or(control.s_maxage)
    } else {
        control.s_maxage.or(control.max_age)
    };
    match seconds {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => Some(default_ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn response_lifetimes_follow_cache_control() {
        let ttl = |pairs: &[(&str, &str)], per_user: bool| {
            let scope = if per_user {
                Scope::Keyed
            } else {
                Scope::Shared
            };
            response_ttl(
                StatusCode::OK,
                &headers(pairs),
                Duration::from_secs(300),
                scope,
            )
        };
        assert_eq!(ttl(&[], false), Some(Duration::from_secs(300)));
        assert_eq!(
            ttl(&[("cache-control", "max-age=60")], false),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=60, s-maxage=10")], false),
            Some(Duration::from_secs(10))
        );
        assert_eq!(ttl(&[("cache-control", "no-store")], false), None);
        assert_eq!(ttl(&[("cache-control", "no-cache")], false), None);
        assert_eq!(ttl(&[("cache-control", "max-age=0")], false), None);
        assert_eq!(
            ttl(&[("cache-control", "private, max-age=300")], false),
            None
        );
        assert_eq!(
            ttl(&[("cache-control", "private, max-age=300")], true),
            Some(Duration::from_secs(300))
        );
        assert_eq!(ttl(&[("set-cookie", "session=1")], false), None);
        let teapot = response_ttl(
            StatusCode::IM_A_TEAPOT,
            &HeaderMap::new(),
            Duration::from_secs(1),
            Scope::Shared,
        );
        assert_eq!(teapot, None);
    }

    #[test]
    fn answers_to_credentials_are_shared_only_when_the_response_allows_it() {
        let ttl = |pairs: &[(&str, &str)]| {
            response_ttl(
                StatusCode::OK,
                &headers(pairs),
                Duration::from_secs(300),
                Scope::SharedWithCredentials,
            )
        };
        assert_eq!(ttl(&[]), None);
        assert_eq!(ttl(&[("cache-control", "max-age=60")]), None);
        assert_eq!(ttl(&[("cache-control", "private, public")]), None);
        assert_eq!(
            ttl(&[("cache-control", "public")]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            ttl(&[("cache-control", "s-maxage=30")]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            ttl(&[("cache-control", "must-revalidate, max-age=20")]),
            Some(Duration::from_secs(20))
        );
        assert!(answers_credentials(&headers(&[(
            "cache-control",
            "public"
        )])));
        assert!(!answers_credentials(&headers(&[(
            "cache-control",
            "max-age=9"
        )])));
    }

    #[test]
    fn scopes() {
        let plain = HeaderMap::new();
        let bearer = headers(&[("authorization", "Bearer t")]);
        let cookie = headers(&[("cookie", "s=1")]);
        assert_eq!(Scope::of(false, &plain), Scope::Shared);
        assert_eq!(Scope::of(false, &bearer), Scope::SharedWithCredentials);
        assert_eq!(Scope::of(false, &cookie), Scope::SharedWithCredentials);
        assert_eq!(Scope::of(true, &bearer), Scope::Keyed);
    }

    #[test]
    fn request_directives() {
        assert_eq!(
            request_policy(&headers(&[("cache-control", "no-cache")])),
            RequestPolicy {
                lookup: false,
                store: true
            }
        );
        assert_eq!(
            request_policy(&headers(&[("cache-control", "no-store")])),
            RequestPolicy {
                lookup: false,
                store: false
            }
        );
        assert!(!request_policy(&headers(&[("pragma", "no-cache")])).lookup);
        assert!(request_policy(&HeaderMap::new()).lookup);
    }
}

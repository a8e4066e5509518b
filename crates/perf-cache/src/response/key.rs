//! Cache keys: the resource, then the variant the `Vary` headers select.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::header::{ACCEPT_ENCODING, HOST, HeaderName};
use http::{HeaderMap, Uri};

/// The resource: scheme and host (so two virtual hosts behind one process never share an
/// entry), path, query parameters in sorted order (so `?a=1&b=2` and `?b=2&a=1` are one
/// entry), and the configured extra key (a user, a tenant).
///
/// The parts are separated by newlines, which neither a URI nor a header value can hold,
/// so no host, path or query can be written to look like another's key; the extra key,
/// which the application chooses, goes last with its length in front.
pub(crate) fn primary(uri: &Uri, headers: &HeaderMap, extra: Option<&str>) -> String {
    let query = uri.query().unwrap_or_default();
    let mut pairs: Vec<&str> = query.split('&').filter(|pair| !pair.is_empty()).collect();
    pairs.sort_unstable();
    let host = uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| headers.get(HOST).and_then(|value| value.to_str().ok()))
        .unwrap_or_default();
    let scheme = uri.scheme_str().unwrap_or("-");
    // Room for every part and its separator, so the key is allocated once; the extra key's
    // length takes at most 20 digits.
    let extra_room = extra.map_or(0, |extra| 1 + 20 + 1 + extra.len());
    let mut key = String::with_capacity(
        scheme.len() + 1 + host.len() + 1 + uri.path().len() + 1 + query.len() + extra_room,
    );
    key.push_str(scheme);
    key.push('\n');
    let host_start = key.len();
    key.push_str(host);
    key[host_start..].make_ascii_lowercase();
    key.push('\n');
    key.push_str(uri.path());
    for (index, pair) in pairs.iter().enumerate() {
        key.push(if index == 0 { '?' } else { '&' });
        key.push_str(pair);
    }
    if let Some(extra) = extra {
        // Writing to a String cannot fail.
        let _ = write!(key, "\n{}:{extra}", extra.len());
    }
    key
}

/// The variant: the primary key plus the request's value of each header the stored response
/// varies on. `Accept-Encoding` is normalised (lower case, tokens sorted, q-values kept), so
/// `gzip, br` and `br,gzip` share the compressed variant. A response that varies on nothing
/// is its own variant: the primary key, borrowed.
pub(crate) fn variant<'a>(
    primary: &'a str,
    vary: &[HeaderName],
    headers: &HeaderMap,
) -> Cow<'a, str> {
    if vary.is_empty() {
        return Cow::Borrowed(primary);
    }
    let mut key = String::with_capacity(primary.len() + 32);
    key.push_str(primary);
    for name in vary {
        key.push('\n');
        key.push_str(name.as_str());
        key.push('=');
        let values = headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        if *name == ACCEPT_ENCODING {
            let mut tokens: Vec<String> = values
                .split(',')
                .map(|token| {
                    token
                        .split_whitespace()
                        .collect::<String>()
                        .to_ascii_lowercase()
                })
                .filter(|token| !token.is_empty())
                .collect();
            tokens.sort_unstable();
            key.push_str(&tokens.join(","));
        } else {
            key.push_str(values.trim());
        }
    }
    Cow::Owned(key)
}

/// The header names a response varies on; `None` for `Vary: *` (never reusable).
pub(crate) fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(http::header::VARY) {
        for name in value.to_str().ok()?.split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::try_from(name)
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, name.parse().unwrap());
        headers
    }

    #[test]
    fn query_order_does_not_matter_but_values_do() {
        let none = HeaderMap::new();
        let a = primary(&"/s?b=2&a=1".parse().unwrap(), &none, None);
        let b = primary(&"/s?a=1&b=2&".parse().unwrap(), &none, None);
        assert_eq!(a, b);
        assert_ne!(a, primary(&"/s?a=1&b=3".parse().unwrap(), &none, None));
        assert_ne!(
            a,
            primary(&"/s?b=2&a=1".parse().unwrap(), &none, Some("user-7"))
        );
    }

    #[test]
    fn a_key_spells_out_each_part_on_its_own_line() {
        let key = primary(
            &"/s?b=2&a=1".parse().unwrap(),
            &host("A.Example"),
            Some("user-7"),
        );
        assert_eq!(key, "-\na.example\n/s?a=1&b=2\n6:user-7");
    }

    #[test]
    fn hosts_and_schemes_are_apart() {
        let path: Uri = "/s/1".parse().unwrap();
        assert_ne!(
            primary(&path, &host("a.example"), None),
            primary(&path, &host("b.example"), None)
        );
        assert_eq!(
            primary(&path, &host("A.example"), None),
            primary(&path, &host("a.example"), None)
        );
        let https: Uri = "https://a.example/s/1".parse().unwrap();
        let http: Uri = "http://a.example/s/1".parse().unwrap();
        assert_ne!(
            primary(&https, &HeaderMap::new(), None),
            primary(&http, &HeaderMap::new(), None)
        );
    }

    #[test]
    fn a_host_cannot_pose_as_a_path() {
        // Host `a` with path `/b/x` against host `a/b` with path `/x`: the same text run
        // together, two resources.
        let one = primary(&"/b/x".parse().unwrap(), &host("a"), None);
        let two = primary(&"/x".parse().unwrap(), &host("a/b"), None);
        assert_ne!(one, two);
    }

    #[test]
    fn accept_encoding_spellings_share_a_variant() {
        let vary = [ACCEPT_ENCODING];
        let key = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, value.parse().unwrap());
            variant("/s", &vary, &headers)
        };
        assert_eq!(key("gzip, br"), key("BR,gzip"));
        assert_ne!(key("gzip"), key("br"));
    }

    #[test]
    fn a_response_varying_on_nothing_is_looked_up_by_its_primary_key_without_a_copy() {
        let variant = variant("/s", &[], &host("a.example"));
        assert!(matches!(variant, Cow::Borrowed("/s")), "{variant:?}");
    }

    #[test]
    fn vary_star_is_never_reusable() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::VARY,
            "Accept-Encoding, Origin".parse().unwrap(),
        );
        assert_eq!(vary_names(&headers).unwrap().len(), 2);
        headers.append(http::header::VARY, "*".parse().unwrap());
        assert_eq!(vary_names(&headers), None);
    }
}

//! Cache keys: the resource, then the variant the `Vary` headers select.

use http::header::{ACCEPT_ENCODING, HeaderName};
use http::{HeaderMap, Uri};

/// The resource: path, query parameters in sorted order (so `?a=1&b=2` and `?b=2&a=1` are
/// one entry), and the configured extra key (a user, a tenant).
pub(crate) fn primary(uri: &Uri, extra: Option<&str>) -> String {
    let mut pairs: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .collect();
    pairs.sort_unstable();
    let mut key = String::with_capacity(uri.path().len() + 32);
    key.push_str(uri.path());
    if !pairs.is_empty() {
        key.push('?');
        key.push_str(&pairs.join("&"));
    }
    if let Some(extra) = extra {
        key.push('#');
        key.push_str(extra);
    }
    key
}

/// The variant: the primary key plus the request's value of each header the stored response
/// varies on. `Accept-Encoding` is normalised (lower case, tokens sorted, q-values kept), so
/// `gzip, br` and `br,gzip` share the compressed variant.
pub(crate) fn variant(primary: &str, vary: &[HeaderName], headers: &HeaderMap) -> String {
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
    key
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

    #[test]
    fn query_order_does_not_matter_but_values_do() {
        let a = primary(&"/s?b=2&a=1".parse().unwrap(), None);
        let b = primary(&"/s?a=1&b=2&".parse().unwrap(), None);
        assert_eq!(a, b);
        assert_ne!(a, primary(&"/s?a=1&b=3".parse().unwrap(), None));
        assert_ne!(a, primary(&"/s?b=2&a=1".parse().unwrap(), Some("user-7")));
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

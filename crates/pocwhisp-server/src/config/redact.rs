//! URLs as they may be shown: in `check-config`, logs, health and metric labels.
//!
//! A URL can carry a secret in two places: the password of its userinfo
//! (`https://user:secret@host`) and a query parameter (`?password=...`, `?sslpassword=...`,
//! `?token=...`). Both are replaced by `****`; the rest (scheme, user, host, path, other
//! parameters) stays, so an operator can still tell one endpoint from another.

/// Query parameters whose value is a secret: any whose name contains one of these.
const SECRET_PARAMETERS: &[&str] = &["pass", "secret", "token", "key", "auth", "sig"];

/// `url` with its secrets replaced by `****`; a string that is not a URL (`host=db
/// password=x`, a libpq keyword list) is all `****`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (tail, None),
    };
    let tail = match before_fragment.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((name, _)) if is_secret_parameter(name) => format!("{name}=****"),
                    _ => parameter.to_owned(),
                })
                .collect();
            format!("{path}?{}", parameters.join("&"))
        }
        None => before_fragment.to_owned(),
    };
    match fragment {
        Some(fragment) => format!("{scheme}://{authority}{tail}#{fragment}"),
        None => format!("{scheme}://{authority}{tail}"),
    }
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|word| name.contains(word))
}

/// Every string in `value` that is a URL, redacted in place.
pub(crate) fn redact_urls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.contains("://") => *text = redacted_url(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_urls),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(redact_urls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secret_parameters_are_masked_and_the_rest_kept() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/pocwhisp",
                "postgres://app:****@db:5432/pocwhisp",
            ),
            (
                "postgres://app@db/pocwhisp?sslmode=require&password=s3cret&sslpassword=k",
                "postgres://app@db/pocwhisp?sslmode=require&password=****&sslpassword=****",
            ),
            (
                "https://hooks.example/alert?Token=abc&channel=ops#top",
                "https://hooks.example/alert?Token=****&channel=ops#top",
            ),
            (
                "https://user:p%40ss@engine.example:8443/",
                "https://user:****@engine.example:8443/",
            ),
            // An `@` in the path is not userinfo.
            ("http://engine.example/a@b", "http://engine.example/a@b"),
            ("redis://:pw@cache:6379/0", "redis://:****@cache:6379/0"),
            ("host=db password=s3cret", "****"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
    }

    #[test]
    fn every_url_in_a_document_is_redacted() {
        let mut value = serde_json::json!({
            "alerts": {"webhook_url": "https://u:pw@hooks.example/x"},
            "engine": {"endpoints": [{"url": "http://k:pw@e1"}, {"url": "http://e2?api_key=k"}]},
            "name": "not a url: pw",
        });
        redact_urls(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "alerts": {"webhook_url": "https://u:****@hooks.example/x"},
                "engine": {"endpoints": [{"url": "http://k:****@e1"}, {"url": "http://e2?api_key=****"}]},
                "name": "not a url: pw",
            })
        );
    }
}

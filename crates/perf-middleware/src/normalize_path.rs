//! One spelling per path: the request's path is rewritten to its normal form before the
//! inner service routes, authorises or caches by it.
//!
//! A path has many spellings: `/s/%61bc` is `/s/abc` (RFC 3986, 6.2.2.2: percent-encoded
//! unreserved characters are the characters themselves), `/s/./abc` and `/x/../s/abc` are
//! `/s/abc` (5.2.4, dot segments), and `/s//abc` reaches the same handler through most
//! routers. A cache or an access rule keyed by the raw path sees each spelling as another
//! resource: an entry invalidated under one spelling is still served under the others. The
//! normal form decodes percent-encoded unreserved characters (and writes the hex digits of
//! the other escapes in upper case, 6.2.2.1), removes dot segments and merges repeated
//! slashes; the query is kept as it is. A path already in normal form, the usual case, is
//! checked in one pass and not copied.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use perf_middleware::normalize_path::NormalizePathLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(NormalizePathLayer::new())
//!     .service(service_fn(|request: Request<()>| async move {
//!         Ok::<_, Infallible>(Response::new(request.uri().to_string()))
//!     }));
//!
//! let request = Request::get("/api//v1/./s/%61b%2fc?x=%61").body(()).unwrap();
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(response.body(), "/api/v1/s/ab%2Fc?x=%61");
//! # }
//! ```

use std::borrow::Cow;
use std::task::{Context, Poll};

use http::Request;
use http::uri::{PathAndQuery, Uri};
use tower_layer::Layer;
use tower_service::Service;

/// Rewrites request paths to their normal form; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizePathLayer;

impl NormalizePathLayer {
    /// The layer.
    pub const fn new() -> Self {
        NormalizePathLayer
    }
}

impl<S> Layer<S> for NormalizePathLayer {
    type Service = NormalizePath<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NormalizePath { inner }
    }
}

/// A service that hands `inner` requests with normal paths; built by
/// [`NormalizePathLayer`].
#[derive(Debug, Clone)]
pub struct NormalizePath<S> {
    inner: S,
}

impl<S> NormalizePath<S> {
    /// Normalises the paths of requests to `inner`.
    pub fn new(inner: S) -> Self {
        NormalizePath { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for NormalizePath<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Cow::Owned(path) = normalize(request.uri().path())
            && let Some(uri) = with_path(request.uri(), &path)
        {
            *request.uri_mut() = uri;
        }
        self.inner.call(request)
    }
}

/// `uri` with its path replaced by `path` (its query kept), or `None` if that is no URI
/// (it always is: the normal form only drops bytes or turns escapes into the unreserved
/// characters they stand for).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}")),
        None => PathAndQuery::try_from(path),
    }
    .ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// The normal form of `path` (see the [module docs](self)); borrowed when `path` is in it.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path.as_bytes());
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut ends_in_directory = false;
    for segment in decoded.split(|&byte| byte == b'/') {
        ends_in_directory = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            name => {
                segments.push(name);
                ends_in_directory = false;
            }
        }
    }
    let mut normal = Vec::with_capacity(decoded.len() + 1);
    for segment in &segments {
        normal.push(b'/');
        normal.extend_from_slice(segment);
    }
    if ends_in_directory || segments.is_empty() {
        normal.push(b'/');
    }
    // Only ASCII escapes were decoded; other bytes were copied whole.
    String::from_utf8(normal).map_or(Cow::Borrowed(path), Cow::Owned)
}

/// Whether `path` starts with a slash and holds no escape, no empty segment inside it and
/// no dot segment.
fn is_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut previous = b'/';
    let mut dots = 0;
    for &byte in &path[1..] {
        match byte {
            b'%' => return false,
            b'/' if previous == b'/' => return false,
            b'/' if dots > 0 => return false,
            b'/' => dots = 0,
            b'.' if previous == b'/' || dots > 0 => dots += 1,
            _ => dots = 0,
        }
        previous = byte;
    }
    // A path ending in `/.` or `/..`.
    !(1..=2).contains(&dots) || previous != b'.'
}

/// `path` with every escape of an unreserved character decoded and every other escape's hex
/// digits in upper case.
fn decode_unreserved(path: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut at = 0;
    while at < path.len() {
        if path[at] == b'%'
            && let (Some(high), Some(low)) = (
                path.get(at + 1).and_then(|&digit| hex(digit)),
                path.get(at + 2).and_then(|&digit| hex(digit)),
            )
        {
            let byte = (high << 4) | low;
            if is_unreserved(byte) {
                decoded.push(byte);
            } else {
                decoded.extend_from_slice(&[
                    b'%',
                    path[at + 1].to_ascii_uppercase(),
                    path[at + 2].to_ascii_uppercase(),
                ]);
            }
            at += 3;
        } else {
            decoded.push(path[at]);
            at += 1;
        }
    }
    decoded
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986's unreserved characters: letters, digits, `-`, `.`, `_` and `~`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/api/v1/transcribe/abc",
            "/a/b/",
            "/a.b/.c/..d/e..",
            "/v1/x.json",
        ] {
            assert!(
                matches!(normalize(path), Cow::Borrowed(_)),
                "{path} is normal"
            );
        }
    }

    #[test]
    fn every_spelling_of_a_path_has_one_normal_form() {
        for (path, normal) in [
            ("/api/v1/transcribe/%61bc", "/api/v1/transcribe/abc"),
            ("/api/v1/transcribe/%41%42%2d%7E", "/api/v1/transcribe/AB-~"),
            ("/api/v1/./transcribe/abc", "/api/v1/transcribe/abc"),
            ("/api/v2/../v1/transcribe/abc", "/api/v1/transcribe/abc"),
            ("/api//v1///transcribe/abc", "/api/v1/transcribe/abc"),
            ("/api/v1/transcribe/abc/.", "/api/v1/transcribe/abc/"),
            ("/api/v1/transcribe/abc/..", "/api/v1/transcribe/"),
            ("/api/%2e%2E/api/v1", "/api/v1"),
            ("/../../etc", "/etc"),
            ("/..", "/"),
            ("//", "/"),
            ("", "/"),
        ] {
            assert_eq!(normalize(path), normal, "{path}");
        }
    }

    #[test]
    fn reserved_escapes_stay_escaped_in_upper_case() {
        // `%2f` is a slash inside a segment, not a separator.
        assert_eq!(normalize("/a/b%2fc"), "/a/b%2Fc");
        assert_eq!(normalize("/a/%3f%25"), "/a/%3F%25");
        // A stray percent sign is kept as it is.
        assert_eq!(normalize("/a/%zz/%4"), "/a/%zz/%4");
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        let uri: Uri = "http://h.example/a/%62/../c?q=%62&r".parse().unwrap();
        let normal = with_path(&uri, &normalize(uri.path())).unwrap();
        assert_eq!(normal.to_string(), "http://h.example/a/c?q=%62&r");
    }
}

//! Label values: bounded, and free of per-request allocation where possible.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use http::{Method, StatusCode};
use metrics::SharedString;

use crate::rate_limit::RequestHead;

/// The route template of a request (`/api/v1/transcribe/{id}`), as a request extension set
/// by the router, so that metrics are labelled by route rather than by raw path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteTemplate(pub Cow<'static, str>);

/// Labels a request with its route.
///
/// Implemented for closures `Fn(&RequestHead<'_>) -> Option<Cow<'static, str>>`.
pub trait RouteLabel {
    /// The route of `request`, if known.
    fn route(&self, request: &RequestHead<'_>) -> Option<Cow<'static, str>>;
}

impl<F> RouteLabel for F
where
    F: Fn(&RequestHead<'_>) -> Option<Cow<'static, str>>,
{
    fn route(&self, request: &RequestHead<'_>) -> Option<Cow<'static, str>> {
        self(request)
    }
}

/// Reads the [`RouteTemplate`] extension. Requests without one are labelled `unmatched`:
/// using the raw path instead would give every id in a URL its own series.
#[derive(Debug, Clone, Copy, Default)]
pub struct FromExtension;

impl RouteLabel for FromExtension {
    fn route(&self, request: &RequestHead<'_>) -> Option<Cow<'static, str>> {
        request
            .extensions
            .get::<RouteTemplate>()
            .map(|template| template.0.clone())
    }
}

/// Caps the number of distinct route labels: past the cap, new routes are labelled
/// `other`, so a router bug or a scan of random paths cannot create unbounded series.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    seen: RwLock<HashSet<Arc<str>>>,
    max: usize,
}

const UNMATCHED: &str = "unmatched";
const OTHER: &str = "other";

impl RouteGuard {
    pub(crate) fn new(max: usize) -> Self {
        RouteGuard {
            seen: RwLock::new(HashSet::new()),
            max,
        }
    }

    pub(crate) fn label(&self, route: Option<Cow<'static, str>>) -> SharedString {
        let Some(route) = route else {
            return SharedString::const_str(UNMATCHED);
        };
        if let Some(known) = self
            .seen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route.as_ref())
        {
            return SharedString::from_shared(Arc::clone(known));
        }
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = seen.get(route.as_ref()) {
            return SharedString::from_shared(Arc::clone(known));
        }
        if seen.len() >= self.max {
            return SharedString::const_str(OTHER);
        }
        let route: Arc<str> = Arc::from(route.as_ref());
        seen.insert(Arc::clone(&route));
        SharedString::from_shared(route)
    }
}

/// The method as a label; extension methods share `other`.
pub(crate) fn method(method: &Method) -> SharedString {
    SharedString::const_str(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER,
    })
}

/// The status code as a label, from a table of static strings built once.
pub(crate) fn status(status: StatusCode) -> SharedString {
    static TABLE: OnceLock<Box<[&'static str]>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (100..1000u16)
            .map(|code| &*Box::leak(code.to_string().into_boxed_str()))
            .collect()
    });
    SharedString::const_str(table[usize::from(status.as_u16() - 100)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_past_the_cap_are_other() {
        let guard = RouteGuard::new(2);
        assert_eq!(&*guard.label(Some("/a".into())), "/a");
        assert_eq!(&*guard.label(Some("/b".into())), "/b");
        assert_eq!(&*guard.label(Some("/c".into())), "other");
        assert_eq!(&*guard.label(Some("/a".into())), "/a");
        assert_eq!(&*guard.label(None), "unmatched");
    }

    #[test]
    fn status_and_method_labels() {
        assert_eq!(&*status(StatusCode::OK), "200");
        assert_eq!(&*status(StatusCode::from_u16(999).unwrap()), "999");
        assert_eq!(&*method(&Method::from_bytes(b"PURGE").unwrap()), "other");
    }
}

//! Label values: bounded, and free of per-request allocation where possible.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use http::{Method, StatusCode};
use metrics::SharedString;
use perf_core::sync::{read, write};

use crate::rate_limit::RequestHead;

/// The route template of a request (`/api/v1/transcribe/{id}`), so that metrics are
/// labelled by route rather than by raw path. Set it as a request extension before the
/// metrics layer runs, or, when routing happens inside the wrapped service, as a response
/// extension on the way out.
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
/// `other`, so a router bug or a scan of random paths cannot create unbounded series. Each
/// label gets a small id, which keys the cache of metric handles.
#[derive(Debug)]
pub(crate) struct RouteGuard {
    seen: RwLock<HashMap<Arc<str>, u32>>,
    max: usize,
}

/// A route label and its id.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) id: u32,
    pub(crate) label: SharedString,
}

const UNMATCHED: &str = "unmatched";
const OTHER: &str = "other";
const UNMATCHED_ID: u32 = u32::MAX;
const OTHER_ID: u32 = u32::MAX - 1;

impl RouteGuard {
    pub(crate) fn new(max: usize) -> Self {
        RouteGuard {
            seen: RwLock::new(HashMap::new()),
            max: max.min(OTHER_ID as usize),
        }
    }

    pub(crate) fn label(&self, route: Option<Cow<'static, str>>) -> Route {
        let Some(route) = route else {
            return Route {
                id: UNMATCHED_ID,
                label: SharedString::const_str(UNMATCHED),
            };
        };
        let known = |seen: &HashMap<Arc<str>, u32>| {
            seen.get_key_value(route.as_ref()).map(|(label, id)| Route {
                id: *id,
                label: SharedString::from_shared(Arc::clone(label)),
            })
        };
        if let Some(route) = known(&read(&self.seen)) {
            return route;
        }
        let mut seen = write(&self.seen);
        if let Some(route) = known(&seen) {
            return route;
        }
        if seen.len() >= self.max {
            return Route {
                id: OTHER_ID,
                label: SharedString::const_str(OTHER),
            };
        }
        let id = seen.len() as u32;
        let label: Arc<str> = Arc::from(route.as_ref());
        seen.insert(Arc::clone(&label), id);
        Route {
            id,
            label: SharedString::from_shared(label),
        }
    }
}

/// The method as a label and a small index; extension methods share `other`.
pub(crate) fn method(method: &Method) -> (u8, SharedString) {
    let (index, name) = match *method {
        Method::GET => (0, "GET"),
        Method::POST => (1, "POST"),
        Method::PUT => (2, "PUT"),
        Method::DELETE => (3, "DELETE"),
        Method::HEAD => (4, "HEAD"),
        Method::OPTIONS => (5, "OPTIONS"),
        Method::PATCH => (6, "PATCH"),
        Method::CONNECT => (7, "CONNECT"),
        Method::TRACE => (8, "TRACE"),
        _ => (9, OTHER),
    };
    (index, SharedString::const_str(name))
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
        let label = |route: Option<&'static str>| {
            let route = guard.label(route.map(Cow::Borrowed));
            (route.id, route.label.to_string())
        };
        assert_eq!(label(Some("/a")), (0, "/a".to_owned()));
        assert_eq!(label(Some("/b")), (1, "/b".to_owned()));
        assert_eq!(label(Some("/c")), (OTHER_ID, "other".to_owned()));
        assert_eq!(label(Some("/a")), (0, "/a".to_owned()));
        assert_eq!(label(None), (UNMATCHED_ID, "unmatched".to_owned()));
    }

    #[test]
    fn status_and_method_labels() {
        assert_eq!(&*status(StatusCode::OK), "200");
        assert_eq!(&*status(StatusCode::from_u16(999).unwrap()), "999");
        assert_eq!(&*method(&Method::from_bytes(b"PURGE").unwrap()).1, "other");
    }
}

//! Labels each response with its route template (`/api/v1/transcribe/{id}`) for the metrics
//! and log layers outside the router, which only see raw paths.
//!
//! The template comes from axum's `MatchedPath`, interned once per route as a `&'static str`:
//! a route is labelled without an allocation, and after its first request without a lookup
//! (each route's service remembers its template, recognised by the address of axum's copy).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, ready};

use axum::extract::MatchedPath;
use http::{Request, Response};
use perf_core::sync::{read, write};
use perf_middleware::metrics::RouteTemplate;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The templates seen, leaked once each: a router has a fixed, small set.
fn intern(template: &str) -> &'static str {
    static TEMPLATES: OnceLock<RwLock<HashMap<Box<str>, &'static str>>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(Default::default);
    if let Some(interned) = read(templates).get(template) {
        return interned;
    }
    write(templates)
        .entry(template.into())
        .or_insert_with(|| Box::leak(template.into()))
}

/// Adds [`RouteTemplate`] to every response of the routes it wraps (as a `route_layer`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RouteLabelLayer;

impl<S> Layer<S> for RouteLabelLayer {
    type Service = RouteLabel<S>;

    fn layer(&self, inner: S) -> RouteLabel<S> {
        RouteLabel {
            inner,
            remembered: Arc::default(),
        }
    }
}

/// See [`RouteLabelLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RouteLabel<S> {
    inner: S,
    /// The template this route's requests carry, with the address of axum's copy of it.
    /// axum clones a route's service for every request, so the clones share this.
    remembered: Arc<OnceLock<(usize, &'static str)>>,
}

impl<S> RouteLabel<S> {
    /// The interned template of `path`: the remembered one when `path` is axum's copy of
    /// it (one per route, so one pointer comparison), else through the intern table.
    fn template(&self, path: &MatchedPath) -> &'static str {
        let address = path.as_str().as_ptr() as usize;
        match self.remembered.get() {
            Some(&(remembered, template)) if remembered == address => template,
            _ => {
                let template = intern(path.as_str());
                let _ = self.remembered.set((address, template));
                template
            }
        }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RouteLabel<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = LabelFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map(|path| self.template(path));
        LabelFuture {
            inner: self.inner.call(request),
            template,
        }
    }
}

pin_project! {
    /// Response future of [`RouteLabel`].
    pub(crate) struct LabelFuture<F> {
        #[pin]
        inner: F,
        template: Option<&'static str>,
    }
}

impl<F, B, E> Future for LabelFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(template)) = (&mut result, this.template.take()) {
            response
                .extensions_mut()
                .insert(RouteTemplate(Cow::Borrowed(template)));
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn each_route_keeps_its_own_template_request_after_request() {
        let router = Router::new()
            .route("/a/{id}", get(|| async { "a" }))
            .route("/b", get(|| async { "b" }))
            .route_layer(RouteLabelLayer);
        for path in ["/a/1", "/b", "/a/2", "/b", "/a/3"] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let label = response.extensions().get::<RouteTemplate>().unwrap();
            let wanted = if path.starts_with("/a/") {
                "/a/{id}"
            } else {
                "/b"
            };
            assert_eq!(label.0, wanted, "{path}");
        }
    }
}

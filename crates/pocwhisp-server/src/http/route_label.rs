//! Labels each response with its route template (`/api/v1/transcribe/{id}`) for the metrics
//! and log layers outside the router, which only see raw paths.
//!
//! The template comes from axum's `MatchedPath`, interned once per route as a `&'static str`:
//! a route is labelled without an allocation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{OnceLock, RwLock};
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
        RouteLabel { inner }
    }
}

/// See [`RouteLabelLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RouteLabel<S> {
    inner: S,
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
            .map(|path| intern(path.as_str()));
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

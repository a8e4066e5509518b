use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_service::Service;

use super::future::{InFlight, ResponseFuture};
use super::labels::{self, FromExtension, RouteLabel};
use super::{CountedBody, RequestMetricsLayer};
use crate::clock::{Clock, FastClock};
use crate::rate_limit::RequestHead;

/// A service recording request metrics; built by [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S, R = FromExtension, C = FastClock> {
    inner: S,
    layer: RequestMetricsLayer<R, C>,
}

impl<S> RequestMetrics<S> {
    /// Records `http_*` metrics for `inner`.
    pub fn new(inner: S) -> Self {
        RequestMetrics::with_parts(inner, RequestMetricsLayer::new())
    }

    /// A layer doing the same.
    pub fn layer() -> RequestMetricsLayer {
        RequestMetricsLayer::new()
    }
}

impl<S, R, C> RequestMetrics<S, R, C> {
    pub(crate) fn with_parts(inner: S, layer: RequestMetricsLayer<R, C>) -> Self {
        RequestMetrics { inner, layer }
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

impl<S, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for RequestMetrics<S, R, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RouteLabel,
    C: Clock,
{
    type Response = Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.layer.shared;
        let method = labels::method(request.method());
        let route = self.layer.route.route(&RequestHead::of(&request));
        // The declared length: counting the streamed request body would mean changing its
        // type, which routers such as axum do not accept.
        let request_bytes = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let in_flight = InFlight::enter(std::sync::Arc::clone(shared));
        ResponseFuture::new(
            self.inner.call(request),
            in_flight,
            self.layer.clock.clone(),
            method,
            route,
            request_bytes,
        )
    }
}

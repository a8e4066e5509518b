//! One log line per request: its id, method, route, status and latency, at debug; server
//! errors (with their cause) and slow requests at warn. With debug logging on, a span wraps
//! the request, so whatever the routes log carries its method and id; off, it costs a
//! disabled span.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{Request, Response};
use perf_middleware::metrics::RouteTemplate;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

/// The cause of a server error, carried on the response to the one line that logs it with
/// the request's id; it never reaches the client.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCause(pub(crate) String);

/// Logs every request; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceLayer {
    slow: Duration,
}

impl TraceLayer {
    /// Logs requests slower than `slow` at warn.
    pub(crate) fn new(slow: Duration) -> Self {
        TraceLayer { slow }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            slow: self.slow,
        }
    }
}

/// A service whose requests are logged; built by [`TraceLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Trace<S> {
    inner: S,
    slow: Duration,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Trace<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let span = tracing::debug_span!(
            "request",
            method = %request.method(),
            request_id = tracing::field::Empty,
        );
        ResponseFuture {
            inner: self.inner.call(request).instrument(span.clone()),
            span,
            started: Instant::now(),
            slow: self.slow,
        }
    }
}

pin_project! {
    /// Response future of [`Trace`].
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        span: Span,
        started: Instant,
        slow: Duration,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let latency = this.started.elapsed();
            let cause = response.extensions().get::<ErrorCause>();
            let warn =
                cause.is_some() || response.status().is_server_error() || latency >= *this.slow;
            // Most requests log nothing (debug is off in production): their route and id are
            // not looked up.
            if !warn && !tracing::enabled!(tracing::Level::DEBUG) {
                return Poll::Ready(result);
            }
            let status = response.status().as_u16();
            let route = response
                .extensions()
                .get::<RouteTemplate>()
                .map_or("unmatched", |route| &route.0);
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            this.span.record("request_id", request_id);
            let _entered = this.span.enter();
            let millis = latency.as_secs_f64() * 1000.0;
            if let Some(ErrorCause(cause)) = cause {
                tracing::warn!(request_id, route, status, latency_ms = millis, error.cause = %cause, "request failed");
            } else if warn {
                tracing::warn!(
                    request_id,
                    route,
                    status,
                    latency_ms = millis,
                    "request finished"
                );
            } else {
                tracing::debug!(
                    request_id,
                    route,
                    status,
                    latency_ms = millis,
                    "request finished"
                );
            }
        }
        Poll::Ready(result)
    }
}

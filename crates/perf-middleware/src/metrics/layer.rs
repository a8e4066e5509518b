use std::sync::Arc;

use metrics::SharedString;
use tower_layer::Layer;

use super::RequestMetrics;
use super::handles::{HandleCache, Names};
use super::labels::{FromExtension, RouteGuard};
use crate::BuildError;
use crate::clock::FastClock;

/// Records request metrics; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer<R = FromExtension, C = FastClock> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) route: R,
    pub(crate) clock: C,
}

/// Metric handles and the route-cardinality guard, shared by every clone.
#[derive(Debug)]
pub(crate) struct Shared {
    prefix: String,
    pub(crate) handles: HandleCache,
    pub(crate) routes: RouteGuard,
}

/// Distinct route labels before new routes are labelled `other`.
const DEFAULT_MAX_ROUTES: usize = 200;

impl RequestMetricsLayer {
    /// Metrics named `http_*`, routes from the [`RouteTemplate`](super::RouteTemplate)
    /// extension.
    pub fn new() -> Self {
        Self::with_prefix("http").expect("`http` is a valid prefix")
    }

    /// Metrics named `{prefix}_*` (`pocwhisp_http` gives `pocwhisp_http_requests_total`).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when `prefix` is not a valid metric name.
    pub fn with_prefix(prefix: &str) -> Result<Self, BuildError> {
        perf_core::metric_name::validate_prefix("prefix", prefix)?;
        Ok(RequestMetricsLayer {
            shared: Arc::new(Shared::new(prefix, DEFAULT_MAX_ROUTES)),
            route: FromExtension,
            clock: FastClock::new(),
        })
    }
}

impl Default for RequestMetricsLayer {
    fn default() -> Self {
        RequestMetricsLayer::new()
    }
}

impl Shared {
    fn new(prefix: &str, max_routes: usize) -> Self {
        let name =
            |suffix: &str| SharedString::from_shared(Arc::from(format!("{prefix}_{suffix}")));
        metrics::describe_counter!(
            name("requests_total"),
            "HTTP requests, by method, route and status"
        );
        metrics::describe_histogram!(
            name("request_duration_seconds"),
            metrics::Unit::Seconds,
            "Time to the response head, by method, route and status"
        );
        metrics::describe_gauge!(name("requests_in_flight"), "HTTP requests in progress");
        metrics::describe_counter!(
            name("request_body_bytes_total"),
            metrics::Unit::Bytes,
            "Request body bytes received"
        );
        metrics::describe_counter!(
            name("response_body_bytes_total"),
            metrics::Unit::Bytes,
            "Response body bytes sent, after compression"
        );
        Shared {
            prefix: prefix.to_owned(),
            handles: HandleCache::new(Names {
                requests: name("requests_total"),
                duration: name("request_duration_seconds"),
                in_flight: name("requests_in_flight"),
                request_bytes: name("request_body_bytes_total"),
                response_bytes: name("response_body_bytes_total"),
            }),
            routes: RouteGuard::new(max_routes),
        }
    }
}

impl<R, C> RequestMetricsLayer<R, C> {
    /// Labels routes with `route` instead of the `RouteTemplate` extension.
    pub fn route_label<R2>(self, route: R2) -> RequestMetricsLayer<R2, C> {
        RequestMetricsLayer {
            shared: self.shared,
            route,
            clock: self.clock,
        }
    }

    /// At most `max_routes` distinct route labels (default 200); later ones are `other`.
    #[must_use]
    pub fn max_routes(self, max_routes: usize) -> Self {
        RequestMetricsLayer {
            shared: Arc::new(Shared::new(&self.shared.prefix, max_routes)),
            route: self.route,
            clock: self.clock,
        }
    }

    /// Times requests with `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2>(self, clock: C2) -> RequestMetricsLayer<R, C2> {
        RequestMetricsLayer {
            shared: self.shared,
            route: self.route,
            clock,
        }
    }
}

impl<S, R: Clone, C: Clone> Layer<S> for RequestMetricsLayer<R, C> {
    type Service = RequestMetrics<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics::with_parts(inner, self.clone())
    }
}

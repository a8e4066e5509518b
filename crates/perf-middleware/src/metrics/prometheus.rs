//! Prometheus exposition: install the recorder with real histogram buckets, and serve the
//! text format from a tower service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tower_service::Service;

/// Latency buckets in seconds, from 1 ms to a minute: fine where APIs live (1 ms to 1 s)
/// and coarse beyond, up to the long transcriptions.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A builder that gives every `*_seconds` histogram [`LATENCY_BUCKETS`], so they are
/// exported as histograms (with `_bucket` series a dashboard can aggregate) rather than
/// summaries.
///
/// # Errors
///
/// The exporter's own error, which for these constant buckets does not happen.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
}

/// Installs [`prometheus_builder`]'s recorder as the global `metrics` recorder and returns
/// the handle to render it; do this before building layers (see the crate docs).
///
/// # Errors
///
/// When a global recorder is already installed.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    prometheus_builder()?.install_recorder()
}

/// A tower service answering every request with the Prometheus text exposition of a
/// recorder: mount it at `/metrics`.
#[derive(Debug, Clone)]
pub struct PrometheusService {
    handle: PrometheusHandle,
}

impl PrometheusService {
    /// Serves `handle`'s metrics.
    pub fn new(handle: PrometheusHandle) -> Self {
        PrometheusService { handle }
    }
}

const TEXT_FORMAT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

impl<B> Service<Request<B>> for PrometheusService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        // The recorder has no task of its own here; draining histogram samples on scrape
        // keeps memory flat without one.
        self.handle.run_upkeep();
        let mut response = Response::new(Full::new(Bytes::from(self.handle.render())));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, TEXT_FORMAT);
        ready(Ok(response))
    }
}

//! Every layer of this crate in one, stacked from a configuration struct in a fixed order.
//!
//! From the outside in:
//!
//! 1. **request id**: outermost, so every response carries `X-Request-Id`, including the
//!    refusals of the layers below;
//! 2. **security headers**: likewise on every response;
//! 3. **metrics**: counts and times everything, refusals included, so a spike of 429s or
//!    503s shows on the dashboard; it sees the bytes that go on the wire, after
//!    compression;
//! 4. **Server-Timing**: its `total` spans all the work below;
//! 5. **compression**: compresses what the application and the layers below answered;
//! 6. **rate limiting**: a client over its quota is refused first and cheaply, with the
//!    most useful answer (429 and when to come back) before it takes a load-shedding slot;
//! 7. **load shedding**: admitted requests count against the service's capacity; health
//!    checks are exempt;
//! 8. **timeout**: inside load shedding, so a request that times out frees its slot at
//!    once;
//! 9. **body limit**: innermost, next to the service that reads the body.
//!
//! Because the body limit hands the service a [`Limited`](http_body_util::Limited) body,
//! wrap a whole router with this layer (axum's `Router` accepts any body) rather than
//! passing it to a router's per-route `layer`.

use std::time::Duration;

use tower::util::{Either, option_layer};
use tower_layer::Layer;

use crate::BuildError;
use crate::body_limit::{BodyLimit, BodyLimitLayer};
use crate::compression::{Compression, CompressionConfig, CompressionLayer};
use crate::load_shed::{LoadShed, LoadShedConfig, LoadShedLayer, LoadShedder, PathPriorities};
use crate::metrics::{RequestMetrics, RequestMetricsLayer};
use crate::rate_limit::{
    ConfiguredKey, KeyValue, RateLimit, RateLimitConfig, RateLimitLayer, RateLimiter, RequestHead,
};
use crate::request_id::{RequestIdLayer, SetRequestId};
use crate::security_headers::{SecurityHeaders, SecurityHeadersLayer};
use crate::server_timing::{ServerTiming, ServerTimingLayer};
use crate::timeout::{Timeout, TimeoutLayer};

/// Settings of the whole stack, each section with its own defaults. The rate-limit,
/// load-shedding and compression settings are those layers' own configuration types.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PerformanceConfig {
    /// Add `X-Content-Type-Options`, `X-Frame-Options` and drop `Server`.
    pub security_headers: bool,
    /// Prefix of the request metrics (`http` gives `http_requests_total`).
    pub metrics_prefix: String,
    /// Distinct route labels before new ones are `other`.
    pub max_routes: usize,
    /// Rate limiting, or `None` for none.
    pub rate_limit: Option<RateLimitConfig>,
    /// Load shedding, or `None` for none.
    pub load_shed: Option<LoadShedConfig>,
    /// The deadline of a whole request (answered 504), or `None`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Option<Duration>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Compression; turn every coding off to disable it.
    pub compression: CompressionConfig,
    /// Give `Server-Timing` to every request sent with `X-Trace: true`. Off by default,
    /// since stage timings are an oracle; [`PerformanceLayer::expose_timings_when`] gives
    /// them to the requests a predicate allows instead.
    pub server_timing_for_all: bool,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            security_headers: true,
            metrics_prefix: "http".to_owned(),
            max_routes: 200,
            rate_limit: Some(RateLimitConfig::default()),
            load_shed: Some(LoadShedConfig::default()),
            timeout: Some(Duration::from_secs(30)),
            max_body_bytes: 16 * 1024 * 1024,
            compression: CompressionConfig::default(),
            server_timing_for_all: false,
        }
    }
}

/// The whole stack as one layer; see the [module docs](self) for the order.
#[derive(Debug, Clone)]
pub struct PerformanceLayer {
    request_id: RequestIdLayer,
    security_headers: Option<SecurityHeadersLayer>,
    metrics: RequestMetricsLayer,
    server_timing: ServerTimingLayer,
    compression: CompressionLayer,
    rate_limit: Option<RateLimitLayer<ConfiguredKey>>,
    load_shed: Option<LoadShedLayer<PathPriorities>>,
    timeout: Option<TimeoutLayer>,
    body_limit: BodyLimitLayer,
}

impl PerformanceLayer {
    /// Builds every layer `config` asks for.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn new(config: &PerformanceConfig) -> Result<Self, BuildError> {
        let rate_limit = config
            .rate_limit
            .as_ref()
            .map(RateLimitLayer::from_config)
            .transpose()
            .map_err(|error| error.within("rate_limit"))?;
        let load_shed = config
            .load_shed
            .as_ref()
            .map(LoadShedLayer::from_config)
            .transpose()
            .map_err(|error| error.within("load_shed"))?;
        if config.timeout == Some(Duration::ZERO) {
            return Err(BuildError::new("timeout", "must be longer than zero"));
        }
        let server_timing = if config.server_timing_for_all {
            ServerTimingLayer::new().expose_to_all()
        } else {
            ServerTimingLayer::new()
        };
        Ok(PerformanceLayer {
            request_id: RequestIdLayer::new(),
            security_headers: config.security_headers.then(SecurityHeadersLayer::new),
            metrics: RequestMetricsLayer::with_prefix(&config.metrics_prefix)?
                .max_routes(config.max_routes),
            server_timing,
            compression: CompressionLayer::from_config(config.compression.clone())
                .map_err(|error| error.within("compression"))?,
            rate_limit,
            load_shed,
            timeout: config.timeout.map(TimeoutLayer::new),
            body_limit: BodyLimitLayer::new(config.max_body_bytes),
        })
    }

    /// Gives `Server-Timing` to requests sent with `X-Trace: true` for which `allow` is
    /// true (an admin identity that an authentication layer outside this one put in the
    /// extensions, say), instead of what the configuration said.
    #[must_use]
    pub fn expose_timings_when<F>(mut self, allow: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.server_timing = ServerTimingLayer::new().expose_when(allow);
        self
    }

    /// The load shedder, to read its stats (in-flight requests, current limit, refusals).
    pub fn load_shedder(&self) -> Option<&LoadShedder> {
        self.load_shed.as_ref().map(LoadShedLayer::shedder)
    }

    /// The rate limiter, to read its stats (keys, refusals).
    pub fn rate_limiter(&self) -> Option<&RateLimiter<KeyValue>> {
        self.rate_limit.as_ref().map(RateLimitLayer::limiter)
    }
}

/// The service [`PerformanceLayer`] builds around `S`.
pub type PerformanceService<S> = SetRequestId<Either<SecurityHeaders<Measured<S>>, Measured<S>>>;

/// The stack from metrics inwards.
pub type Measured<S> = RequestMetrics<ServerTiming<Compression<Limited<S>>>>;

/// The stack from rate limiting inwards.
pub type Limited<S> = Either<RateLimit<Shed<S>, ConfiguredKey>, Shed<S>>;

/// The stack from load shedding inwards.
pub type Shed<S> = Either<LoadShed<Deadline<S>, PathPriorities>, Deadline<S>>;

/// The stack from the timeout inwards.
pub type Deadline<S> = Either<Timeout<BodyLimit<S>>, BodyLimit<S>>;

impl<S> Layer<S> for PerformanceLayer {
    type Service = PerformanceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let service = self.body_limit.layer(inner);
        let service = option_layer(self.timeout).layer(service);
        let service = option_layer(self.load_shed.clone()).layer(service);
        let service = option_layer(self.rate_limit.clone()).layer(service);
        let service = self.compression.layer(service);
        let service = self.server_timing.layer(service);
        let service = self.metrics.layer(service);
        let service = option_layer(self.security_headers).layer(service);
        self.request_id.layer(service)
    }
}

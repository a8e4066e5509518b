//! Request metrics on the `metrics` facade, and Prometheus exposition.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `{prefix}_requests_total` | counter | `method`, `route`, `status` |
//! | `{prefix}_request_duration_seconds` | histogram (time to response head) | `method`, `route`, `status` |
//! | `{prefix}_requests_in_flight` | gauge | |
//! | `{prefix}_request_body_bytes_total` | counter (declared `Content-Length`) | `method`, `route` |
//! | `{prefix}_response_body_bytes_total` | counter (bytes streamed) | `method`, `route`, `status` |
//!
//! The prefix defaults to `http`. `route` is the route template, from the
//! [`RouteTemplate`] extension your router sets or from a function; requests without one are
//! `unmatched`, and past `max_routes` distinct routes new ones are `other`, so the number of
//! series stays bounded. An inner error is counted with `status="error"`.
//!
//! [`install_prometheus`] installs a Prometheus recorder whose `*_seconds` histograms have
//! real buckets ([`LATENCY_BUCKETS`]); [`PrometheusService`] serves its text exposition.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use perf_middleware::metrics::{PrometheusService, RequestMetricsLayer, RouteTemplate, prometheus_builder};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let recorder = prometheus_builder().unwrap().build_recorder();
//! let handle = recorder.handle();
//! metrics::set_global_recorder(recorder).unwrap();
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(RequestMetricsLayer::new())
//!     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::from("hi"))) }));
//! let mut request = Request::get("/users/42").body(()).unwrap();
//! request.extensions_mut().insert(RouteTemplate("/users/{id}".into()));
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! response.into_body().collect().await.unwrap();
//!
//! let scrape = PrometheusService::new(handle).call(Request::new(())).await.unwrap();
//! let text = String::from_utf8(scrape.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
//! assert!(text.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="200"} 1"#));
//! assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/users/{id}",status="200",le="0.001"}"#));
//! assert!(text.contains(r#"http_response_body_bytes_total{method="GET",route="/users/{id}",status="200"} 2"#));
//! # }
//! ```

mod body;
mod future;
mod handles;
mod labels;
mod layer;
mod prometheus;
mod service;

pub use body::CountedBody;
pub use future::ResponseFuture;
pub use labels::{FromExtension, RouteLabel, RouteTemplate};
pub use layer::RequestMetricsLayer;
pub use prometheus::{LATENCY_BUCKETS, PrometheusService, install_prometheus, prometheus_builder};
pub use service::RequestMetrics;

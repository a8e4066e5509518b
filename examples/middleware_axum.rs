//! The whole `PerformanceLayer` stack around an axum Router.
//!
//! The stack wraps the router (its body limit hands the router a limited body, which axum
//! accepts), so it cannot see which route axum matched on the way in; a small route-level
//! middleware puts the matched route on the response instead, and the metrics are labelled
//! by route template rather than by raw path. The example sends a few requests through the
//! app in-process, shows the headers each layer added, goes over a (deliberately tiny) rate
//! limit, and prints the Prometheus exposition at the end.
//!
//! Run: `cargo run -p pocwhisp-examples --example middleware_axum`

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;
use perf_middleware::metrics::{PrometheusService, RouteTemplate, install_prometheus};
use perf_middleware::performance::{PerformanceConfig, PerformanceLayer};
use perf_middleware::rate_limit::RateLimitConfig;
use tower::{Layer, Service, ServiceExt};

/// Tells the metrics layer (outside the router) which route answered.
async fn name_the_route(matched: MatchedPath, request: Request, next: Next) -> Response {
    let route = matched.as_str().to_owned();
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(RouteTemplate(route.into()));
    response
}

async fn session(Path(id): Path<u32>) -> ([(&'static str, &'static str); 1], String) {
    let segments: Vec<String> = (0..40)
        .map(|i| {
            format!(r#"{{"speaker":"left","start_time":{i},"text":"segment {i} of session {id}"}}"#)
        })
        .collect();
    (
        [("content-type", "application/json")],
        format!(
            r#"{{"session_id":{id},"segments":[{}]}}"#,
            segments.join(",")
        ),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The recorder first: layers resolve their metric handles against it.
    let prometheus = install_prometheus()?;

    let router = Router::new()
        .route("/api/v1/transcribe/{id}", get(session))
        .route("/api/v1/health", get(|| async { "ok" }))
        .route_layer(middleware::from_fn(name_the_route));

    let config = PerformanceConfig {
        metrics_prefix: "pocwhisp_http".into(),
        // Three requests a second per client, so the example can show a 429. Requests carry
        // no verified identity here, so they draw from their address's bucket.
        rate_limit: Some(RateLimitConfig {
            requests_per_second: 3,
            burst: 3,
            ..RateLimitConfig::default()
        }),
        timeout: Some(Duration::from_secs(5)),
        // Stage timings for anyone who asks: fine for a demo, an oracle in production.
        server_timing_for_all: true,
        ..PerformanceConfig::default()
    };
    let app = PerformanceLayer::new(&config)?.layer(router);

    for id in [1, 2, 3, 4] {
        let request = http::Request::get(format!("/api/v1/transcribe/{id}"))
            .header("authorization", "Bearer demo-token")
            .header("accept-encoding", "br, gzip")
            .header("x-trace", "true")
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        let headers = response.headers().clone();
        let status = response.status();
        let size = response.into_body().collect().await?.to_bytes().len();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "GET /api/v1/transcribe/{id} -> {status}, {size} bytes, encoding {}, remaining {}, retry-after {}, request id {}",
            header("content-encoding"),
            header("ratelimit-remaining"),
            header("retry-after"),
            header("x-request-id"),
        );
        println!("    server-timing: {}", header("server-timing"));
    }

    let health = app
        .clone()
        .oneshot(http::Request::get("/api/v1/health").body(Body::empty())?)
        .await?;
    // The health check is exempt from load shedding.
    println!("GET /api/v1/health -> {}", health.status());

    let scrape = PrometheusService::new(prometheus)
        .call(http::Request::new(()))
        .await?;
    let text = String::from_utf8(scrape.into_body().collect().await?.to_bytes().to_vec())?;
    println!("\n/metrics (request counters):");
    for line in text
        .lines()
        .filter(|line| line.starts_with("pocwhisp_http_requests_total"))
    {
        println!("    {line}");
    }
    Ok(())
}

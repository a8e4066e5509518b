//! The HTTP circuit breaker on an axum Router, one breaker per route.
//!
//! `/flaky` fails its first three requests with 500; after the third the route's breaker
//! opens and the layer answers 503 with `Retry-After` itself, without running the handler.
//! `/healthy` has its own breaker and is never affected. Once the open period has passed, a
//! probe reaches the (now recovered) handler and closes the circuit.
//!
//! Run: `cargo run -p pocwhisp-examples --example breaker_axum`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use perf_breaker::{CircuitBreaker, HttpBreakerLayer, KeyedCircuitBreaker};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let breakers = KeyedCircuitBreaker::builder()
        .template(
            CircuitBreaker::builder()
                .name("routes")
                .failure_threshold(3)
                .open_duration(Duration::from_millis(500))
                .on_transition(|t| println!("    breaker: {} -> {} ({})", t.from, t.to, t.reason)),
        )
        .max_keys(64)
        .build()?;

    let handler_runs = Arc::new(AtomicUsize::new(0));
    let runs = Arc::clone(&handler_runs);
    let app = Router::new()
        .route(
            "/flaky",
            get(move || async move {
                // Fails three times, then the "dependency" is back.
                if runs.fetch_add(1, Ordering::SeqCst) < 3 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route("/healthy", get(|| async { "ok" }))
        .layer(HttpBreakerLayer::keyed(
            breakers.clone(),
            |request: &Request<Body>| request.uri().path().to_owned(),
        ));

    for step in 1..=7 {
        if step == 6 {
            println!("  (waiting out the open period)");
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        for path in ["/flaky", "/healthy"] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty())?)
                .await?;
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| format!(" (Retry-After: {}s)", value.to_str().unwrap_or("?")))
                .unwrap_or_default();
            println!(
                "request {step} {path:<8} -> {}{retry_after}",
                response.status()
            );
        }
    }

    println!(
        "/flaky handler ran {} times for 7 requests; breaker stats: {:?}",
        handler_runs.load(Ordering::SeqCst),
        breakers.get(&"/flaky".to_owned()).stats()
    );
    Ok(())
}
